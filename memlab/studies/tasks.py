"""Hydra tasks of the studies that are not a single training run. Each reuses the cached
memorization ranking machinery of :mod:`memlab.studies.removal_job`:

    python -m memlab experiment=sst2_typicality   # Table 1, Fig. 4
    python -m memlab experiment=sst2_stability    # Table 5
    python -m memlab experiment=sst2_fz           # Feldman-Zhang reference estimator (fz_task.py)
    python -m memlab experiment=sst2_validate     # every score against FZ (validate_task.py)
    python -m memlab experiment=sst2_label_noise  # label-error benchmark beside cleanlab (label_noise_task.py)
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from ..utils.io import atomic_write_csv, update_json
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


# -- Feldman-Zhang reference, validation and the label-error benchmark: their own modules ----------
def fz(cfg: DictConfig) -> dict:
    from .fz_task import fz as run_fz

    return run_fz(cfg)


def validate(cfg: DictConfig) -> dict:
    from .validate_task import validate as run_validate

    return run_validate(cfg)


def label_noise(cfg: DictConfig) -> dict:
    from .label_noise_task import label_noise as run_label_noise

    return run_label_noise(cfg)


TASKS = {"typicality": typicality, "stability": stability, "fz": fz, "validate": validate, "label_noise": label_noise}
