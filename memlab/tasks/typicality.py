"""Task ``typicality`` (paper Table 1, Fig. 4): how typical the most memorized SST sentences are, by
the fraction of positive phrases in their parse trees, beside the rest of their class:

    python -m memlab experiment=sst2_typicality [typicality.trees_dir=DIR]

Writes ``typicality.csv``, ``positive_fractions.csv`` and ``typicality.png``; the ranking is the cached
one of :mod:`memlab.jobs.ranking_cache`, the analysis :mod:`memlab.studies.typicality`.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..errors import DataError
from ..report.study_figures import plot_typicality_histograms
from ..data.sst_trees import parse_tree, read_trees
from ..studies.typicality import match_trees, typicality_table
from ..utils.io import atomic_write_csv, update_json
from ..jobs.ranking_cache import load_or_compute_ranking

log = logging.getLogger("memlab")


def read_sst_trees(cfg: DictConfig) -> list:
    """The SST treebank's training trees: ``typicality.trees_dir``, ``<data.dir>/trees`` or the hub."""
    trees_dir = cfg.typicality.get("trees_dir")
    if not trees_dir and cfg.data.get("source") == "local" and cfg.data.get("dir"):
        trees_dir = Path(cfg.data.dir) / "trees"  # the study's layout: data/sst2/trees/train.txt
    if trees_dir:
        path = Path(trees_dir) / "train.txt"
        if not path.is_file():
            raise DataError(f"{path} not found; pass typicality.trees_dir=DIR (the SST treebank's PTB files)")
        return read_trees(path)
    try:  # online: the SST treebank from the hub
        from datasets import load_dataset

        ds = load_dataset(cfg.typicality.hub_id, split="train")
        return [parse_tree(t) for t in ds["ptb_tree"]]
    except Exception as e:
        raise DataError(f"could not load the SST trees from the hub ({type(e).__name__}); "
                        "pass typicality.trees_dir=DIR (e.g. ../shared/data/sst2/trees)") from None


def run(cfg: DictConfig) -> dict:
    """Task ``typicality``; returns the metrics written to metrics.json."""
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
