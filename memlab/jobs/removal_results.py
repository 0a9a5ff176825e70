"""Finished removal jobs, kept so that a sweep started again trains only what is missing.

Each finished job's metrics are stored under ``paths.cache_dir/removal_jobs/<key>.json``, keyed by
everything that determines its result: the ranking (data, model and recipe, solver, scoring settings,
data seed, ranking seed: :func:`memlab.jobs.ranking_cache.ranking_key`), the epochs and other trainer settings,
the strategy, X, the training seed, the ranking column, and the draw seed where it matters (a random
removal of X > 0). A full-data job (X = 0) is the same job for every strategy, solver and score, so its
key holds only data, model, recipe, data seed and training seed: one training per seed serves them all.

A killed sweep run again with the same command (a new sweep dir) finds the jobs it finished, copies
their metrics into the new job dirs (one log line each: the report covers reused and new jobs alike)
and trains the rest; ``removal.reuse=false`` retrains and replaces the stored result. An entry records
its key and is checked on read: a bad one is retrained after one warning that names it.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from ..studies.removal_selection import DEFAULT_SCORE
from ..utils.io import atomic_write_text, warn_bad_cache_entry
from .ranking_cache import ranking_key
from .removal_record import depends_on_draw

FULL_DATA_KEYS = ("data", "model", "data_seed")  # what a full-data job's result depends on, besides its seed
RESULTS_FOLDER = "removal_jobs"


def job_identity(cfg: DictConfig) -> dict:
    """What makes this removal job's result, in words (stored beside the key, for people and reports)."""
    r = cfg.removal
    pct = float(r.pct)
    if pct == 0:
        return {"removal_pct": 0.0, "seed": int(cfg.seed)}
    identity = {"strategy": str(r.strategy), "removal_pct": pct, "seed": int(cfg.seed),
                "score": str(r.get("score") or DEFAULT_SCORE), "ranking_seed": int(r.get("ranking_seed", 0))}
    if depends_on_draw(r.strategy, pct):
        identity["draw_seed"] = int(r.get("draw_seed", 0))
    return identity


def job_key(cfg: DictConfig) -> str:
    """The stored result's name: what trains the model (and, for X > 0, ranks it) + the job's identity,
    e.g. ``<hash>-seed3`` (X = 0) or ``<hash>-random-x30-seed3-loo_score-rank0-draw1``."""
    job = job_identity(cfg)
    if job["removal_pct"] == 0:
        return f"{ranking_key(cfg, keys=FULL_DATA_KEYS)}-seed{job['seed']}"
    name = (f"{ranking_key(cfg)}-{job['strategy']}-x{job['removal_pct']:g}-seed{job['seed']}-{job['score']}"
            f"-rank{job['ranking_seed']}")
    return name + (f"-draw{job['draw_seed']}" if "draw_seed" in job else "")


def result_file(cfg: DictConfig) -> Path:
    return Path(cfg.paths.cache_dir) / RESULTS_FOLDER / f"{job_key(cfg)}.json"


def stored_result(cfg: DictConfig) -> dict | None:
    """This job's stored result (``metrics``, ``removed``) when it finished before; None when absent,
    turned off (``removal.reuse=false``) or bad (after one warning naming the file)."""
    if not cfg.removal.get("reuse", True):
        return None
    file = result_file(cfg)
    if not file.is_file():
        return None
    try:
        entry = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        warn_bad_cache_entry(file, f"unreadable: {type(err).__name__}")
        return None
    if not isinstance(entry, dict) or entry.get("key") != job_key(cfg):
        warn_bad_cache_entry(file, "made for another configuration")
        return None
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("test/acc"), (int, float)):
        warn_bad_cache_entry(file, "no test/acc")
        return None
    return entry


def store_result(cfg: DictConfig, metrics: dict, record: dict | None = None) -> Path:
    """Keep a finished job's metrics (and what it removed) for the next run of the sweep."""
    entry = {"key": job_key(cfg), "job": job_identity(cfg), "metrics": metrics}
    if record:
        entry["removed"] = {k: record.get(k) for k in ("n_removed", "min_removed_score", "score", "ranking")}
    return atomic_write_text(result_file(cfg), json.dumps(entry, indent=2))
