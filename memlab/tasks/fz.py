"""Task ``fz``: the Feldman-Zhang reference, and the cached K subset models behind it:

    python -m memlab experiment=sst2_fz fz.models=64      # fz_scores.csv, fz_reliability.csv/.png, metrics.json

Model k trains the run's recipe with training seed ``seed + k`` on subset k (``fz.subset_fraction`` of
the training split, drawn with ``fz.subset_seed``). Its probabilities on the whole split are cached
(``paths.cache_dir/fz/<key>/model-<k>.npz``, atomic), keyed by the data, model, recipe, data seed,
subset seed and fraction and base seed: a rerun, a run with more models, or another process working
on the same reference (models are claimed by a lock each) reuses every finished model.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ..errors import ConfigError
from ..report.study_figures import plot_fz_reliability
from ..studies.feldman_zhang import (fz_memorization, models_for_reliability, reliability_by_models, sample_subsets,
                                     spearman_against, split_half_reliability)
from ..jobs.data_classes import data_set_name
from ..utils.io import atomic_write_csv, atomic_write_text, update_json
from ..jobs.ranking_cache import load_or_compute_ranking
from ..jobs.subset_training import Predictions, SubsetModel, cached_subset_predictions, training_key, training_split

log = logging.getLogger("memlab")


def fz_models_dir(cfg: DictConfig) -> Path:
    key = training_key(cfg, fz_subset_fraction=float(cfg.fz.subset_fraction), fz_subset_seed=int(cfg.fz.subset_seed),
                       seed=int(cfg.seed))
    return Path(cfg.paths.cache_dir) / "fz" / key


def subset_models(cfg: DictConfig, ids: np.ndarray, subsets: np.ndarray) -> list[Predictions]:
    """Every model's predictions on the whole split, training the missing ones (model k: training
    seed ``seed + k``, trained on ``subsets[k]``)."""
    model_dir = fz_models_dir(cfg)
    model_dir.mkdir(parents=True, exist_ok=True)
    seed, k_models = int(cfg.seed), len(subsets)
    models = [SubsetModel(model_dir / f"model-{k:03d}.npz", seed + k, ids[~subsets[k]],
                          f"Feldman-Zhang model {k + 1}/{k_models} (seed {seed + k}, {int((~subsets[k]).sum())} left out)")
              for k in range(k_models)]
    return cached_subset_predictions(cfg, models, ids)


def check_fz_settings(cfg: DictConfig) -> None:
    """One-line errors for fz.* values that cannot work, before any model is trained."""
    if int(cfg.fz.models) < 1:
        raise ConfigError(f"fz.models={cfg.fz.models} is out of range; allowed: an integer >= 1 (>= 4 for a reliability)")
    if not 0.0 < float(cfg.fz.subset_fraction) < 1.0:
        raise ConfigError(f"fz.subset_fraction={cfg.fz.subset_fraction} is out of range; allowed: between 0 and 1")


def fz_reference(cfg: DictConfig) -> tuple[pd.DataFrame, dict]:
    """(per-instance table ``sample_index, label, fz_mem, fz_se, n_in, n_out, fz_mem_correct,
    fz_se_correct``, summary with ``fz_reliability``, reliability by number of models) from
    ``fz.models`` cached subset models."""
    check_fz_settings(cfg)
    datamodule = training_split(cfg)
    ids = np.asarray(datamodule.full_train.sample_indices(), dtype=np.int64)
    k_models, fraction = int(cfg.fz.models), float(cfg.fz.subset_fraction)
    subsets = sample_subsets(len(ids), k_models, fraction, int(cfg.fz.subset_seed))
    models = subset_models(cfg, ids, subsets)
    prob = np.stack([m.gold_probability() for m in models])
    correct = np.stack([m.correct() for m in models])
    table = fz_memorization(subsets, prob, ids, correct=correct)
    table.insert(1, "label", models[0].labels)
    splits, seed = int(cfg.fz.get("reliability_splits", 20)), int(cfg.fz.subset_seed)
    reliability = split_half_reliability(subsets, prob, splits, seed)
    reliability_correct = split_half_reliability(subsets, correct, splits, seed)
    seconds = [m.seconds for m in models]
    by_models = reliability_by_models(subsets, prob, [k for k in (8, 16, 24, 32, 48, 64, 96, 128) if k < k_models],
                                      splits, seed)
    summary = {"fz_reliability": reliability["reliability"], "fz/reliability_half": reliability["half"],
               "fz/models_for_0.8": models_for_reliability(reliability["reliability"], k_models, 0.8),
               "fz/models_for_0.9": models_for_reliability(reliability["reliability"], k_models, 0.9),
               "fz/reliability_half_sd": reliability["half_sd"],
               "fz/reliability_correct": reliability_correct["reliability"],
               "fz/models": k_models, "fz/subset_fraction": fraction,
               "fz/median_n_out": float(np.median(table["n_out"])), "fz/median_se": float(table["fz_se"].median()),
               "fz/seconds_per_model": float(np.mean(seconds)), "fz/train_seconds": float(np.sum(seconds)),
               "fz/models_dir": str(fz_models_dir(cfg))}
    log.info("Feldman-Zhang reference from %d models: split-half reliability %.3f (0/1 version %.3f)",
             k_models, reliability["reliability"], reliability_correct["reliability"])
    return table, summary, by_models


def write_fz_reference(cfg: DictConfig, out: Path) -> tuple[pd.DataFrame, dict]:
    """:func:`fz_reference`, written: ``fz_scores.csv``, ``fz_reliability.csv`` (reliability by number
    of models) and ``fz_reliability.png``; returns (per-instance table, summary)."""
    table, metrics, by_models = fz_reference(cfg)
    atomic_write_csv(table, out / "fz_scores.csv")
    atomic_write_csv(by_models, out / "fz_reliability.csv")
    if len(by_models):
        plot_fz_reliability(by_models, out / "fz_reliability.png",
                            title=f"{data_set_name(cfg)}: Feldman-Zhang reliability by number of models")
    return table, metrics


def run(cfg: DictConfig) -> dict:
    """Task ``fz``: the reference, and its Spearman against the cached self-influence ranking."""
    out = Path(cfg.paths.output_dir)
    table, metrics = write_fz_reference(cfg, out)
    if cfg.fz.get("compare_self_influence"):
        scores, scores_file = load_or_compute_ranking(cfg)
        rho = {c: spearman_against(scores, table, top_pct=10, score_column=c)
               for c in ("mem_score", "loo_score", "loss") if c in scores}
        for column, r in rho.items():
            metrics[f"fz/spearman_{column}"], metrics[f"fz/spearman_{column}_top10"] = r["overall"], r["top"]
        metrics["fz/ranking"] = str(scores_file)
        atomic_write_text(out / "fz_spearman.json", json.dumps(rho, indent=2))
        log.info("Spearman with FZ: %s", {c: round(r["overall"], 3) for c, r in rho.items()})
    return update_json(out / "metrics.json", metrics)

