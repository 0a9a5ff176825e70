"""TRAK self-influence (Park et al. 2023; :mod:`memlab.influence.trak`) as candidate memorization scores
of the validation and label-noise experiments (:mod:`memlab.jobs.candidate_scores`), set by
``candidates.trak`` (conf/study/validate.yaml):

    trak, trak_loo                 M = 1: the scored model (seed s) alone
    trak@M=<M>, trak_loo@M=<M>     the ensemble of the scored model and M−1 more full-data models
                                   (seeds s+1..s+M−1, trained through train_on_subset)

Seconds: the featurisation and solve for M = 1; for the ensemble, the extra models' training plus every
model's featurisation and solve. Each model's h, h/(1−h), q and sample_index are cached as it finishes
(``<candidates dir>/trak/<settings key>/model_seed<s>_k<k>.npz``), so an interrupted run resumes and a
second call trains nothing. With ``candidates.trak.ablation`` the scored model is featurised at the
largest of ``proj_dim`` and the ablation's ``proj_dims`` (its first ``proj_dim`` columns give the main
columns) and every (k', damping_rel) of the grid's M = 1 score h·q is kept in ``ablation_<key>.csv``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ..influence.trak import ablation_leverages, ensemble, leave_one_out, self_influence
from ..pipeline.trak import trak_features
from ..utils.fingerprint import short_hash
from ..utils.io import atomic_write, atomic_write_csv
from .subset_training import train_on_subset
from .trak_settings import trak_settings

log = logging.getLogger("memlab")


def trak_dir(out_dir: Path, s: dict) -> Path:
    key = short_hash({k: s[k] for k in ("proj_dim", "projection", "damping_rel", "seed")})
    return Path(out_dir) / "trak" / key


def scored_dim(s: dict) -> int:
    """The scored model's projection dimension: the largest the main columns and the ablation need."""
    return max([s["proj_dim"], *s["ablation"].get("proj_dims", [])])


def model_file(out_dir: Path, s: dict, seed: int, dim: int) -> Path:
    return trak_dir(out_dir, s) / f"model_seed{seed}_k{dim}.npz"


def ablation_file(out_dir: Path, s: dict) -> Path:
    return trak_dir(out_dir, s) / f"ablation_{short_hash(s['ablation'], 8)}.csv"


def featurize(s: dict, model, trainer, dim: int, file: Path, train_seconds: float = 0.0,
              ablation: Path | None = None) -> None:
    """Features of a trained model at ``dim``, then h (first ``proj_dim`` columns), h/(1−h), q into ``file``
    and, with ``ablation``, the grid's h·q per instance into that csv."""
    feats = trak_features(model, trainer.datamodule, dim, s["projection"], s["seed"], s["batch_size"])
    solving = time.perf_counter()
    h = self_influence(feats.features[:, :s["proj_dim"]], s["damping_rel"])
    seconds = feats.seconds + time.perf_counter() - solving
    if ablation is not None:
        grid = ablation_leverages(feats.features, s["ablation"]["proj_dims"], s["ablation"]["damping_rels"])
        table = pd.DataFrame({"sample_index": feats.sample_index})
        for (k, rel), hk in grid.items():
            table[ablation_column(k, rel)] = (hk * feats.q).numpy()
        atomic_write_csv(table, ablation)
    arrays = {"sample_index": feats.sample_index, "h": h.numpy(), "h_loo": leave_one_out(h).numpy(),
              "q": feats.q.numpy(), "seconds": np.float64(seconds), "train_seconds": np.float64(train_seconds)}
    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(file, lambda tmp: np.savez(tmp, **arrays))
    log.info("TRAK features of %s (%s projection, k = %d): %.1f s", file.name, feats.projection, dim, seconds)


def ablation_column(proj_dim: int, damping_rel: float) -> str:
    return f"trak@proj_dim={int(proj_dim)},damping_rel={float(damping_rel):g}"


def _scored_files(out_dir: Path, s: dict, seed: int) -> tuple[Path, Path | None]:
    return model_file(out_dir, s, seed, scored_dim(s)), (ablation_file(out_dir, s) if s["ablation"] else None)


def featurize_scored_model(cfg: DictConfig, out_dir: Path, model, trainer) -> None:
    """The scored model's TRAK files while it is in memory (compute_candidates calls this), unless cached."""
    s = trak_settings(cfg)
    if s is None:
        return
    file, ablation = _scored_files(out_dir, s, int(cfg.seed))
    if not file.is_file() or (ablation is not None and not ablation.is_file()):
        with torch.enable_grad():
            featurize(s, model, trainer, scored_dim(s), file, ablation=ablation)


def _load(file: Path) -> dict:
    with np.load(file) as f:
        return {k: f[k] for k in f.files}


def trak_candidates(cfg: DictConfig, out_dir: Path) -> tuple[pd.DataFrame | None, dict]:
    """(``sample_index`` + the TRAK columns, seconds per column), training and featurising what the
    cache lacks; (None, {}) when TRAK is off."""
    s = trak_settings(cfg)
    if s is None:
        return None, {}
    seed = int(cfg.seed)
    file, ablation = _scored_files(out_dir, s, seed)
    if not file.is_file() or (ablation is not None and not ablation.is_file()):
        log.info("TRAK: retraining the scored model (seed %d) to featurise it", seed)
        _, model, trainer, _ = train_on_subset(cfg, seed, ())
        with torch.enable_grad():
            featurize(s, model, trainer, scored_dim(s), file, ablation=ablation)
    runs = [_load(file)]
    for extra in range(seed + 1, seed + s["models"]):
        extra_file = model_file(out_dir, s, extra, s["proj_dim"])
        if not extra_file.is_file():
            log.info("TRAK ensemble: training full-data model seed %d (%d of %d)", extra, extra - seed + 1, s["models"])
            predictions, model, trainer, _ = train_on_subset(cfg, extra, ())
            with torch.enable_grad():
                featurize(s, model, trainer, s["proj_dim"], extra_file, train_seconds=predictions.seconds)
        runs.append(_load(extra_file))
    index = runs[0]["sample_index"]
    if any(not np.array_equal(r["sample_index"], index) for r in runs):
        raise RuntimeError(f"TRAK models hold other training splits; delete {trak_dir(out_dir, s)} to recompute")
    frame = pd.DataFrame({"sample_index": index})
    one = ensemble([torch.as_tensor(runs[0]["h"])], [torch.as_tensor(runs[0]["q"])])
    frame["trak"], frame["trak_loo"] = one["trak"].numpy(), one["trak_loo"].numpy()
    first_seconds = float(runs[0]["seconds"])
    seconds = {"trak": first_seconds, "trak_loo": first_seconds}
    if s["models"] > 1:
        m = s["models"]
        many = ensemble([torch.as_tensor(r["h"]) for r in runs], [torch.as_tensor(r["q"]) for r in runs])
        frame[f"trak@M={m}"], frame[f"trak_loo@M={m}"] = many["trak"].numpy(), many["trak_loo"].numpy()
        total = sum(float(r["seconds"]) + float(r["train_seconds"]) for r in runs)
        seconds.update({f"trak@M={m}": total, f"trak_loo@M={m}": total})
    return frame, seconds


def trak_ablation(cfg: DictConfig, out_dir: Path) -> tuple[pd.DataFrame, list[tuple[int, float]]] | None:
    """(``sample_index`` + one h·q column per grid point, the grid's (proj_dim, damping_rel) in column
    order) of the scored model, or None without ``candidates.trak.ablation``. Run after
    :func:`trak_candidates`, which writes it."""
    s = trak_settings(cfg)
    if s is None or not s["ablation"]:
        return None
    table = pd.read_csv(ablation_file(out_dir, s))
    grid = [(int(k), float(r)) for k in sorted(set(s["ablation"]["proj_dims"])) for r in s["ablation"]["damping_rels"]]
    return table, grid
