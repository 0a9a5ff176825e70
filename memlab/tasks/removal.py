"""A removal job (Fig. 1): retrain without ``removal.pct``% of the training split, chosen by
``removal.strategy`` from the cached memorization ranking (:mod:`memlab.jobs.ranking_cache`):

    python -m memlab -m experiment=sst2_removal    # the sweep; its report: memlab.tasks.sweep_report

``task=train`` with a strategy other than ``none`` runs this. The job's ``removal_job.json``
(:mod:`memlab.jobs.removal_record`) says what it removed and how it ended. A job that would repeat
the sweep's first draw seed skips itself. A job that finished before, in this sweep or an earlier run
of it, is not trained again: its stored result (:mod:`memlab.jobs.removal_results`; X = 0 is shared
by every strategy) is copied into the job dir; ``removal.reuse=false`` retrains. An X = 0 job also takes
the metrics of a finished ranking trained with its seed (a stability study trains one per seed): that
ranking run is the same full-data training.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from ..studies.ranking import memorization_column
from ..studies.removal_selection import DEFAULT_SCORE, check_score, min_removed_score, select_removed
from ..utils.io import update_json
from ..jobs.ranking_cache import finished_ranking_metrics, load_or_compute_ranking
from ..jobs.removal_record import finish_job_record, skip_if_duplicate_draw, write_job_record
from ..jobs.removal_results import result_file, store_result, stored_result
from ..jobs.training import fit_and_test, save_metrics

log = logging.getLogger("memlab")


def run(cfg: DictConfig) -> dict:
    """The removal job of ``cfg``; returns the metrics written to ``metrics.json``."""
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    # all before training: a ranking run must not disturb this job's seeded state
    if skip_if_duplicate_draw(cfg, output_dir):  # top/bottom/X = 0 repeat the sweep's first draw seed
        return {"status": "skipped-duplicate"}
    stored = stored_result(cfg)
    if stored is not None:
        return reuse_stored_result(cfg, output_dir, stored)
    ranking = full_data_ranking(cfg)
    if ranking is not None:
        return reuse_ranking_training(cfg, output_dir, *ranking)
    record = {}
    exclude = removal_exclusions(cfg, output_dir, record)
    metrics = save_metrics(output_dir, fit_and_test(cfg, exclude), started)
    finish_job_record(output_dir, metrics)
    store_result(cfg, metrics, record)
    return metrics


def reuse_stored_result(cfg: DictConfig, output_dir: Path, stored: dict) -> dict:
    """This job's earlier result, written into its dir as if it had just trained (``reused`` marked)."""
    r = cfg.removal
    removed = stored.get("removed") or {}
    write_job_record(output_dir, {"strategy": r.strategy, "removal_pct": float(r.pct), "seed": int(cfg.seed),
                                  "draw_seed": int(r.get("draw_seed", 0)),
                                  "score": removed.get("score") or str(r.get("score") or DEFAULT_SCORE),
                                  "status": "running", "reused": str(result_file(cfg)),
                                  **{k: v for k, v in removed.items() if k != "score"}})
    metrics = update_json(output_dir / "metrics.json", {**stored["metrics"], "removal/reused": 1})
    finish_job_record(output_dir, metrics)
    log.info("reused: strategy=%s X=%g%% seed=%d finished before (test/acc %.4f; removal.reuse=false retrains)",
             r.strategy, float(r.pct), int(cfg.seed), float(metrics["test/acc"]))
    return metrics


# what a ranking run adds to its training's metrics: not this job's
RANKING_ONLY_PREFIXES = ("memorization/", "job/")


def full_data_ranking(cfg: DictConfig) -> tuple[dict, Path] | None:
    """For an X = 0 job with reuse on: the metrics and folder of a finished ranking trained with the
    job's seed, the same full-data training; else None."""
    if float(cfg.removal.pct) != 0 or not cfg.removal.get("reuse", True):
        return None
    return finished_ranking_metrics(cfg, int(cfg.seed))


def reuse_ranking_training(cfg: DictConfig, output_dir: Path, ranking_metrics: dict, ranking_dir: Path) -> dict:
    """The X = 0 job's metrics taken from the ranking run of its seed (``reused`` marked), stored as
    this job's result for the next run of the sweep."""
    r = cfg.removal
    write_job_record(output_dir, {"strategy": r.strategy, "removal_pct": 0.0, "seed": int(cfg.seed),
                                  "draw_seed": int(r.get("draw_seed", 0)),
                                  "score": str(r.get("score") or DEFAULT_SCORE), "status": "running",
                                  "reused": str(ranking_dir), "n_removed": 0, "min_removed_score": None})
    trained = {k: v for k, v in ranking_metrics.items() if not k.startswith(RANKING_ONLY_PREFIXES)}
    metrics = update_json(output_dir / "metrics.json", {**trained, "removal/reused": 1})
    finish_job_record(output_dir, metrics)
    store_result(cfg, metrics, {"n_removed": 0, "min_removed_score": None})
    log.info("reused: strategy=%s X=0%% seed=%d is the full-data training of the ranking at seed %d "
             "(test/acc %.4f; %s; removal.reuse=false retrains)", r.strategy, int(cfg.seed), int(cfg.seed),
             float(metrics["test/acc"]), ranking_dir)
    return metrics


def removal_exclusions(cfg: DictConfig, output_dir: Path, record: dict | None = None) -> list[int]:
    """The sample indices this job leaves out, and a removal_job.json marked running (``record``, when
    given, is filled with what the file says)."""
    r = cfg.removal
    chosen = r.get("score")  # null: the ranking's default column (loo_score where the solver writes it)
    score = str(chosen or DEFAULT_SCORE)
    record = {} if record is None else record
    record.update({"strategy": r.strategy, "removal_pct": float(r.pct), "seed": int(cfg.seed),
                   "draw_seed": int(r.get("draw_seed", 0)), "score": score, "status": "running"})
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
