"""Task ``train``: train and test one model, metrics.json in the run dir:

    python -m memlab experiment=smoke

(``task=train`` with a removal strategy other than ``none`` is a removal job: :mod:`memlab.tasks.removal`.)
"""
from __future__ import annotations

import time

from omegaconf import DictConfig

from ..jobs.training import fit_and_test, save_metrics


def run(cfg: DictConfig) -> dict:
    """Train and test one model; returns the metrics written to ``metrics.json``."""
    started = time.perf_counter()
    return save_metrics(cfg.paths.output_dir, fit_and_test(cfg), started)
