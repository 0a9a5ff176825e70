"""The Hydra side of the removal study (Fig. 1): the memorization ranking, computed once per
configuration by a full training + scoring run and cached under ``paths.cache_dir/rankings``, and
the training-split exclusions of one removal job (``removal.strategy`` x ``removal.pct``).

Both caches here (rankings, full-data results) are keyed by everything that makes their content
(data, model and the fingerprint of its pretrained files, trainer settings, solver, scoring batches)
and every entry records its key (rankings: also row count and file hash), checked on read: a bad
entry is recomputed after one warning that names it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict

from ..utils.fingerprint import file_sha1, pretrained_fingerprint, short_hash
from ..utils.io import atomic_write_text, warn_bad_cache_entry
from .removal import DEFAULT_SCORE, JOB_FILE, check_score, min_removed_score, select_removed

log = logging.getLogger("memlab")

# What a ranking depends on (the training seed and the removal settings do not belong here).
RANKING_KEYS = ("data", "model", "solver", "data_seed")
# Trainer settings that change where a run writes or what it shows, not what it computes.
COSMETIC_TRAINER_KEYS = ("default_root_dir", "enable_progress_bar", "enable_model_summary", "enable_checkpointing",
                         "log_every_n_steps", "logger", "callbacks")
RANKING_MANIFEST = "ranking.json"


def ranking_key(cfg: DictConfig, keys=RANKING_KEYS) -> str:
    container = OmegaConf.to_container(cfg, resolve=True)
    part = {k: container.get(k) for k in keys}
    for drop in ("exclude", "shuffle_seed", "seed"):
        part["data"].pop(drop, None)
    part["model"].get("net", {}).pop("seed", None)
    part["weights"] = pretrained_fingerprint(container["model"].get("pretrained"))  # a folder's files, not its name
    part["trainer"] = {k: v for k, v in container["trainer"].items() if k not in COSMETIC_TRAINER_KEYS}
    part["ranking_seed"] = container["removal"]["ranking_seed"] if "solver" in keys else None
    if "solver" in keys:  # the scores also depend on how they are batched (bf16 passes, chunk layout)
        scoring = (container.get("callbacks") or {}).get("memorization") or {}
        part["scoring"] = {k: scoring.get(k) for k in ("batch_size", "batches_per_chunk")}
    return short_hash(part, 12)


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
    key = ranking_key(cfg)
    out_dir = Path(cfg.paths.cache_dir) / "rankings" / key
    scores_file = out_dir / "memorization" / "scores.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir / ".lock")):
        scores = read_verified_ranking(out_dir, key) if scores_file.is_file() else None
        if scores is None:
            from ..train import run

            log.info("computing the memorization ranking once for this configuration -> %s", out_dir)
            run(ranking_run_config(cfg, out_dir), nested=True)  # its failure is this job's
            scores = pd.read_csv(scores_file)
            atomic_write_text(out_dir / RANKING_MANIFEST, json.dumps(
                {"key": key, "rows": len(scores), "sha1": file_sha1(scores_file)}, indent=2))
    return scores, scores_file


def ranking_problem(out_dir: Path, key: str, scores: pd.DataFrame | None) -> str | None:
    """Why a cached ranking is not the finished one for ``key`` (None: it is)."""
    scores_file = out_dir / "memorization" / "scores.csv"
    try:
        manifest = json.loads((out_dir / RANKING_MANIFEST).read_text())
    except (OSError, ValueError):
        return f"no readable {RANKING_MANIFEST} (unfinished or not memlab's)"
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return f"made for key {manifest.get('key') if isinstance(manifest, dict) else None!r}, expected {key!r}"
    if manifest.get("sha1") != file_sha1(scores_file):
        return "the file changed after memlab wrote it"
    if scores is None or len(scores) != manifest.get("rows") or not scores["sample_index"].is_unique:
        return f"{None if scores is None else len(scores)} rows, {manifest.get('rows')} recorded"
    return None


def read_verified_ranking(out_dir: Path, key: str) -> pd.DataFrame | None:
    """The cached scores.csv when whole and made for ``key``; None after one warning naming it."""
    scores_file = out_dir / "memorization" / "scores.csv"
    try:
        scores = pd.read_csv(scores_file)
    except Exception:  # unreadable: recompute
        scores = None
    problem = ranking_problem(out_dir, key, scores)
    if problem is not None:
        warn_bad_cache_entry(scores_file, problem)
        return None
    return scores


def removal_exclusions(cfg: DictConfig, output_dir: Path) -> list[int]:
    """The sample indices this job leaves out, and a removal_job.json marked running."""
    r = cfg.removal
    score = str(r.get("score", DEFAULT_SCORE))
    record = {"strategy": r.strategy, "removal_pct": float(r.pct), "seed": int(cfg.seed),
              "draw_seed": int(r.get("draw_seed", 0)), "score": score, "status": "running"}
    write_job_record(output_dir, record)
    check_score(score)  # a wrong name fails (and is recorded) before any training
    if float(r.pct) == 0:
        removed, lowest = [], None
    else:
        scores, scores_file = load_or_compute_ranking(cfg)
        removed = select_removed(scores, r.strategy, float(r.pct), seed=int(r.get("draw_seed", 0)), score=score)
        lowest = min_removed_score(scores, removed, score)
        record["ranking"] = str(scores_file)
    record.update({"n_removed": len(removed), "min_removed_score": lowest})
    write_job_record(output_dir, record)
    return removed


def full_data_result_file(cfg: DictConfig) -> Path:
    """Where the test accuracy of a full-data (X = 0) job is kept: every strategy shares it per seed."""
    key = ranking_key(cfg, keys=("data", "model", "data_seed"))
    return Path(cfg.paths.cache_dir) / "full_data" / f"{key}-seed{int(cfg.seed)}.json"


def full_data_key(cfg: DictConfig) -> str:
    return f"{ranking_key(cfg, keys=('data', 'model', 'data_seed'))}-seed{int(cfg.seed)}"


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


def write_job_record(output_dir: Path, record: dict) -> None:
    atomic_write_text(Path(output_dir) / JOB_FILE, json.dumps(record, indent=2))


def finish_job_record(output_dir: Path, metrics: dict | None = None, error: BaseException | None = None,
                      cfg: DictConfig | None = None) -> None:
    """Mark the job's record ok or failed. A job stopped by the config check has none yet: with ``cfg``
    its failure is recorded from the config, so the sweep report names it."""
    file = Path(output_dir) / JOB_FILE
    if not file.is_file():
        if error is None or cfg is None:
            return
        r = cfg.removal
        write_job_record(output_dir, {"strategy": r.get("strategy"), "removal_pct": r.get("pct"), "seed": cfg.get("seed"),
                                      "draw_seed": r.get("draw_seed", 0), "status": "running"})
    record = json.loads(file.read_text())
    if error is not None:
        record.update({"status": "failed", "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"})
    else:
        record.update({"status": "ok", "test_acc": metrics.get("test/acc")})
    write_job_record(output_dir, record)
