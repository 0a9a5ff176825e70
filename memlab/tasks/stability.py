"""Task ``stability`` (paper Table 5): the Spearman correlation between the memorization rankings of
models trained with different seeds (``stability.seeds``), each the cached ranking of
:mod:`memlab.jobs.ranking_cache`:

    python -m memlab experiment=sst2_stability

Writes ``stability.csv`` and ``stability.png``; with one seed its ranking is cached for a later run.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ..report.study_figures import plot_heatmap
from ..studies.stability import spearman_matrix
from ..utils.io import atomic_write_csv, update_json
from ..jobs.ranking_cache import load_or_compute_ranking, with_ranking_seed

log = logging.getLogger("memlab")


def run(cfg: DictConfig) -> dict:
    """Task ``stability``; returns the metrics written to metrics.json."""
    started = time.perf_counter()
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
        return update_json(out / "metrics.json", {"stability/seeds": len(matrix),
                                                  "job/seconds": time.perf_counter() - started})
    return update_json(out / "metrics.json", {"stability/spearman_min": float(off.min()),
                                              "stability/spearman_mean": float(off.mean()),
                                              "job/seconds": time.perf_counter() - started})
