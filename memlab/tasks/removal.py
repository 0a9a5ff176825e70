"""A removal job (Fig. 1): retrain without ``removal.pct``% of the training split, chosen by
``removal.strategy`` from the cached memorization ranking (:mod:`memlab.tasks.ranking`):

    python -m memlab -m experiment=sst2_removal    # the sweep; its report: memlab.tasks.sweep_report

``task=train`` with a strategy other than ``none`` runs this. The job's ``removal_job.json``
(:mod:`memlab.tasks.removal_record`) says what it removed and how it ended. A job that would repeat
the sweep's first draw seed skips itself; a full-data job (X = 0) is the same for every strategy,
so its metrics are cached per training seed under ``paths.cache_dir/full_data`` and reused. That
entry is keyed by data, model and data seed, records its key and is checked on read (a bad one is
retrained after one warning that names it).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from ..studies.ranking import memorization_column
from ..studies.removal import DEFAULT_SCORE, check_score, min_removed_score, select_removed
from ..utils.io import atomic_write_text, update_json, warn_bad_cache_entry
from .ranking import load_or_compute_ranking, ranking_key
from .removal_record import finish_job_record, skip_if_duplicate_draw, write_job_record
from .train import fit_and_test, save_metrics

log = logging.getLogger("memlab")

FULL_DATA_KEYS = ("data", "model", "data_seed")  # what a full-data job's result depends on, besides its seed


def run(cfg: DictConfig) -> dict:
    """The removal job of ``cfg``; returns the metrics written to ``metrics.json``."""
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    # all before training: a ranking run must not disturb this job's seeded state
    if skip_if_duplicate_draw(cfg, output_dir):  # top/bottom/X = 0 repeat the sweep's first draw seed
        return {"status": "skipped-duplicate"}
    exclude = removal_exclusions(cfg, output_dir)
    cached = cached_full_data_metrics(cfg)
    if cached is not None:  # X = 0 is the same job for every strategy: train it once per seed
        log.info("full-data result for seed %s reused from the cache", cfg.seed)
        metrics = update_json(output_dir / "metrics.json", {**cached, "removal/reused_full_data": 1})
        finish_job_record(output_dir, metrics)
        return metrics
    metrics = save_metrics(output_dir, fit_and_test(cfg, exclude), started)
    finish_job_record(output_dir, metrics)
    store_full_data_metrics(cfg, metrics)
    return metrics


def removal_exclusions(cfg: DictConfig, output_dir: Path) -> list[int]:
    """The sample indices this job leaves out, and a removal_job.json marked running."""
    r = cfg.removal
    chosen = r.get("score")  # null: the ranking's default column (loo_score where the solver writes it)
    score = str(chosen or DEFAULT_SCORE)
    record = {"strategy": r.strategy, "removal_pct": float(r.pct), "seed": int(cfg.seed),
              "draw_seed": int(r.get("draw_seed", 0)), "score": score, "status": "running"}
    write_job_record(output_dir, record)
    check_score(score)  # a wrong name fails (and is recorded) before any training
    if float(r.pct) == 0:
        removed, lowest = [], None
    else:
        scores, scores_file = load_or_compute_ranking(cfg)
        score = record["score"] = score if chosen else memorization_column(scores)
        removed = select_removed(scores, r.strategy, float(r.pct), seed=int(r.get("draw_seed", 0)), score=score)
        lowest = min_removed_score(scores, removed, score)
        record["ranking"] = str(scores_file)
    record.update({"n_removed": len(removed), "min_removed_score": lowest})
    write_job_record(output_dir, record)
    return removed


# -- the full-data result, shared by every strategy -------------------------------------------------------
def full_data_key(cfg: DictConfig) -> str:
    return f"{ranking_key(cfg, keys=FULL_DATA_KEYS)}-seed{int(cfg.seed)}"


def full_data_result_file(cfg: DictConfig) -> Path:
    """Where the test accuracy of a full-data (X = 0) job is kept: every strategy shares it per seed."""
    return Path(cfg.paths.cache_dir) / "full_data" / f"{full_data_key(cfg)}.json"


def cached_full_data_metrics(cfg: DictConfig) -> dict | None:
    """The stored metrics of this seed's full-data job; None when absent or bad (one warning)."""
    if float(cfg.removal.pct) != 0:
        return None
    file = full_data_result_file(cfg)
    if not file.is_file():
        return None
    try:
        entry = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        warn_bad_cache_entry(file, f"unreadable: {type(err).__name__}")
        return None
    if not isinstance(entry, dict) or entry.get("key") != full_data_key(cfg):
        warn_bad_cache_entry(file, "made for another configuration")
        return None
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test/acc"), (int, float)):
        warn_bad_cache_entry(file, "no test/acc")
        return None
    return metrics


def store_full_data_metrics(cfg: DictConfig, metrics: dict) -> None:
    if float(cfg.removal.pct) == 0:
        atomic_write_text(full_data_result_file(cfg), json.dumps({"key": full_data_key(cfg), "metrics": metrics}))
