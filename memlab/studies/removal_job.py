"""The Hydra side of the removal study (Fig. 1): the memorization ranking, computed once per
configuration by a full training + scoring run and cached under ``paths.cache_dir/rankings``, and
the training-split exclusions of one removal job (``removal.strategy`` x ``removal.pct``).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict

from ..utils.io import atomic_write_text
from .removal import JOB_FILE, min_removed_score, select_removed

log = logging.getLogger("memlab")

# What a ranking depends on (the training seed and the removal settings do not belong here).
RANKING_KEYS = ("data", "model", "solver", "data_seed")


def ranking_key(cfg: DictConfig, keys=RANKING_KEYS) -> str:
    container = OmegaConf.to_container(cfg, resolve=True)
    part = {k: container.get(k) for k in keys}
    for drop in ("exclude", "shuffle_seed", "seed"):
        part["data"].pop(drop, None)
    part["model"].get("net", {}).pop("seed", None)
    part["max_epochs"] = container["trainer"].get("max_epochs")
    part["ranking_seed"] = container["removal"]["ranking_seed"] if "solver" in keys else None
    return hashlib.sha1(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:12]


def ranking_run_config(cfg: DictConfig, out_dir: Path) -> DictConfig:
    """The scoring run behind a ranking: full data, the ranking seed, no logger, scores into out_dir."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    seed = int(cfg.removal.ranking_seed)
    with open_dict(sub):
        sub.seed = seed
        sub.data.shuffle_seed = seed
        if "seed" in sub.model.get("net", {}):
            sub.model.net.seed = seed
        sub.data.exclude = None
        sub.removal = {"strategy": "none", "pct": 0, "ranking_seed": seed}
        sub.task = "train"
        sub.logger = {}
        sub.task_name = "ranking"
        sub.paths.output_dir = str(out_dir)
        sub.trainer.default_root_dir = str(out_dir)
        configured = sub.callbacks.get("memorization") or {}
        sub.callbacks = {k: v for k, v in sub.callbacks.items() if k != "memorization"}
        sub.callbacks.memorization = {"_target_": "memlab.callbacks.memorization.MemorizationScores",
                                      "solver": sub.solver, "output_dir": str(out_dir / "memorization"),
                                      "log_table": False}
        for key in ("batch_size", "batches_per_chunk"):  # the scoring settings of the run, when it has them
            if key in configured:
                sub.callbacks.memorization[key] = configured[key]
    return sub


def load_or_compute_ranking(cfg: DictConfig) -> tuple[pd.DataFrame, Path]:
    """scores.csv of the ranking model for ``cfg`` (computed once; concurrent jobs wait on a lock)."""
    out_dir = Path(cfg.paths.cache_dir) / "rankings" / ranking_key(cfg)
    scores_file = out_dir / "memorization" / "scores.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir / ".lock")):
        if not scores_file.is_file():
            from ..train import run

            log.info("computing the memorization ranking once for this configuration -> %s", out_dir)
            run(ranking_run_config(cfg, out_dir))
    return pd.read_csv(scores_file), scores_file


def removal_exclusions(cfg: DictConfig, output_dir: Path) -> list[int]:
    """The sample indices this job leaves out, and a removal_job.json marked running."""
    r = cfg.removal
    record = {"strategy": r.strategy, "removal_pct": float(r.pct), "seed": int(cfg.seed),
              "draw_seed": int(r.get("draw_seed", 0)), "status": "running"}
    write_job_record(output_dir, record)
    if float(r.pct) == 0:
        removed, lowest = [], None
    else:
        scores, scores_file = load_or_compute_ranking(cfg)
        removed = select_removed(scores, r.strategy, float(r.pct), seed=int(r.get("draw_seed", 0)))
        lowest = min_removed_score(scores, removed)
        record["ranking"] = str(scores_file)
    record.update({"n_removed": len(removed), "min_removed_score": lowest})
    write_job_record(output_dir, record)
    return removed


def full_data_result_file(cfg: DictConfig) -> Path:
    """Where the test accuracy of a full-data (X = 0) job is kept: every strategy shares it per seed."""
    key = ranking_key(cfg, keys=("data", "model", "data_seed"))
    return Path(cfg.paths.cache_dir) / "full_data" / f"{key}-seed{int(cfg.seed)}.json"


def cached_full_data_metrics(cfg: DictConfig) -> dict | None:
    if float(cfg.removal.pct) != 0:
        return None
    file = full_data_result_file(cfg)
    return json.loads(file.read_text()) if file.is_file() else None


def store_full_data_metrics(cfg: DictConfig, metrics: dict) -> None:
    if float(cfg.removal.pct) == 0:
        atomic_write_text(full_data_result_file(cfg), json.dumps(metrics))


def write_job_record(output_dir: Path, record: dict) -> None:
    atomic_write_text(Path(output_dir) / JOB_FILE, json.dumps(record, indent=2))


def finish_job_record(output_dir: Path, metrics: dict | None = None, error: BaseException | None = None) -> None:
    file = Path(output_dir) / JOB_FILE
    if not file.is_file():
        return
    record = json.loads(file.read_text())
    if error is not None:
        record.update({"status": "failed", "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"})
    else:
        record.update({"status": "ok", "test_acc": metrics.get("test/acc")})
    write_job_record(output_dir, record)
