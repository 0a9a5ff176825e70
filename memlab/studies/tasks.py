"""Hydra tasks of the studies that are not a single training run. Each reuses the cached
memorization ranking machinery of :mod:`memlab.studies.removal_job`:

    python -m memlab experiment=sst2_typicality   # Table 1, Fig. 4
    python -m memlab experiment=sst2_stability    # Table 5
    python -m memlab experiment=sst2_fz           # Feldman-Zhang reference estimator
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from ..utils.io import atomic_write_csv, atomic_write_text, update_json
from .removal_job import load_or_compute_ranking

log = logging.getLogger("memlab")


def with_ranking_seed(cfg: DictConfig, seed: int) -> DictConfig:
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(sub):
        sub.removal.ranking_seed = int(seed)
    return sub


# -- typicality (Table 1) ---------------------------------------------------------------------------
def read_sst_trees(cfg: DictConfig) -> list:
    from .typicality import parse_tree, read_trees

    trees_dir = cfg.typicality.get("trees_dir")
    if not trees_dir and cfg.data.get("source") == "local" and cfg.data.get("dir"):
        trees_dir = Path(cfg.data.dir) / "trees"  # the study's layout: data/sst2/trees/train.txt
    if trees_dir:
        path = Path(trees_dir) / "train.txt"
        if not path.is_file():
            from ..data.base import DataError

            raise DataError(f"{path} not found; pass typicality.trees_dir=DIR (the SST treebank's PTB files)")
        return read_trees(path)
    try:  # online: the SST treebank from the hub
        from datasets import load_dataset

        ds = load_dataset(cfg.typicality.hub_id, split="train")
        return [parse_tree(t) for t in ds["ptb_tree"]]
    except Exception as e:
        from ..data.base import DataError

        raise DataError(f"could not load the SST trees from the hub ({type(e).__name__}); "
                        "pass typicality.trees_dir=DIR (e.g. ../shared/data/sst2/trees)") from None


def typicality(cfg: DictConfig) -> dict:
    from .typicality import match_trees, plot_typicality_histograms, typicality_table

    out = Path(cfg.paths.output_dir)
    scores, scores_file = load_or_compute_ranking(cfg)
    fractions = match_trees(scores, read_sst_trees(cfg), text_column="text", k=cfg.typicality.k)
    match_rate = float(fractions["matched"].mean())
    table = typicality_table(scores, fractions, cfg.typicality.top_pct, list(cfg.data.class_names))
    atomic_write_csv(table, out / "typicality.csv")
    atomic_write_csv(fractions, out / "positive_fractions.csv")
    plot_typicality_histograms(scores, fractions, out / "typicality.png", cfg.typicality.top_pct,
                               list(cfg.data.class_names))
    metrics = {"typicality/match_rate": match_rate, "typicality/ranking": str(scores_file)}
    log.info("typicality: %.1f%% of train sentences matched a tree\n%s", 100 * match_rate, table.to_string(index=False))
    return update_json(out / "metrics.json", metrics)


# -- seed stability (Table 5) -----------------------------------------------------------------------
def stability(cfg: DictConfig) -> dict:
    from .stability import plot_heatmap, spearman_matrix

    out = Path(cfg.paths.output_dir)
    tables = {}
    for seed in cfg.stability.seeds:
        scores, _ = load_or_compute_ranking(with_ranking_seed(cfg, seed))
        tables[f"seed {seed}"] = scores
    matrix = spearman_matrix(tables)
    atomic_write_csv(matrix.reset_index(names="run"), out / "stability.csv")
    plot_heatmap(matrix, out / "stability.png", title="Spearman between training seeds (Table 5)")
    off = matrix.to_numpy()[~np.eye(len(matrix), dtype=bool)]
    log.info("seed stability:\n%s", matrix.round(3).to_string())
    if not off.size:  # one seed: its ranking is cached for a later run with more seeds
        return update_json(out / "metrics.json", {"stability/seeds": len(matrix)})
    return update_json(out / "metrics.json", {"stability/spearman_min": float(off.min()),
                                              "stability/spearman_mean": float(off.mean())})


# -- Feldman-Zhang reference estimator ----------------------------------------------------------------
def fz(cfg: DictConfig) -> dict:
    """Train K models on seeded random subsets; mem(z) = P[correct | z in] - P[correct | z out]."""

    from ..train import build
    from .feldman_zhang import fz_memorization, sample_subsets, spearman_against

    out = Path(cfg.paths.output_dir)
    model_dir = Path(cfg.paths.cache_dir) / "fz" / _fz_key(cfg)
    model_dir.mkdir(parents=True, exist_ok=True)
    datamodule, _, _ = build(cfg)
    datamodule.setup()
    ids = datamodule.full_train.sample_indices()
    subsets = sample_subsets(ids, cfg.fz.models, cfg.fz.fraction, cfg.fz.subset_seed)
    correct = np.zeros_like(subsets)
    for k in range(cfg.fz.models):
        file = model_dir / f"model-{k:03d}.npy"
        if file.is_file():  # resumable per model
            correct[k] = np.load(file)
            continue
        log.info("Feldman-Zhang model %d/%d", k + 1, cfg.fz.models)
        job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        with open_dict(job):
            job.seed = int(cfg.seed) + k
            job.logger = {}
        dm, model, trainer = build(job)
        dm.set_exclude(np.asarray(ids)[~subsets[k]].tolist())
        trainer.fit(model, datamodule=dm)
        predictions = _predict(model, dm._loader(dm.full_train, False, dm.eval_batch_size))
        labels = np.array([int(e["labels"]) for e in dm.full_train.examples])
        correct[k] = predictions == labels
        np.save(file.with_suffix(".tmp.npy"), correct[k])
        Path(file.with_suffix(".tmp.npy")).replace(file)
    fz_scores = fz_memorization(subsets, correct, ids)
    atomic_write_csv(fz_scores, out / "fz_scores.csv")
    metrics = {"fz/models": int(cfg.fz.models), "fz/fraction": float(cfg.fz.fraction)}
    if cfg.fz.compare_self_influence:
        scores, scores_file = load_or_compute_ranking(cfg)
        rho = spearman_against(scores, fz_scores, top_pct=10)
        loss_rho = spearman_against(scores.assign(mem_score=scores["loss"]), fz_scores, top_pct=10)
        metrics.update({"fz/spearman_self_influence": rho["overall"], "fz/spearman_self_influence_top10": rho["top"],
                        "fz/spearman_loss": loss_rho["overall"], "fz/spearman_loss_top10": loss_rho["top"],
                        "fz/ranking": str(scores_file)})
        by_damping = {}
        for rel in cfg.fz.get("damping_rel") or []:  # how the agreement depends on λ / mean eigenvalue
            sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
            with open_dict(sub):
                sub.solver.damping, sub.solver.damping_rel = None, float(rel)
            other, _ = load_or_compute_ranking(sub)
            by_damping[str(rel)] = spearman_against(other, fz_scores, top_pct=10)
            metrics[f"fz/spearman_self_influence_damping_rel_{rel:g}"] = by_damping[str(rel)]["overall"]
        atomic_write_text(out / "fz_spearman.json", json.dumps(
            {"self_influence": rho, "loss": loss_rho, "self_influence_by_damping_rel": by_damping}, indent=2))
        log.info("Spearman(self-influence, FZ) = %.3f overall, %.3f in the top 10%%", rho["overall"], rho["top"])
    return update_json(out / "metrics.json", metrics)


def _fz_key(cfg: DictConfig) -> str:
    import hashlib

    from .removal_job import ranking_key

    extra = f"{cfg.fz.fraction}|{cfg.fz.subset_seed}|{cfg.seed}"
    # the subset models depend on data, model and training, not on how self-influence is computed
    return hashlib.sha1((ranking_key(cfg, keys=("data", "model", "data_seed")) + extra).encode()).hexdigest()[:12]


def _predict(model, loader) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(b).argmax(-1) for b in loader]).numpy()


TASKS = {"typicality": typicality, "stability": stability, "fz": fz}
