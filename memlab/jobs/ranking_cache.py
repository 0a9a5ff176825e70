"""The memorization ranking of a configuration: one full-data training run at ``removal.ranking_seed``
whose scoring callback writes ``scores.csv``, computed once and cached under
``paths.cache_dir/rankings/<key>`` for every removal job, study and later sweep that needs it.

The key holds everything that makes the scores (data, and a data=custom or image_folder folder's files,
a backbone weights file's bytes; model and the
fingerprint of its pretrained files, trainer settings, solver, scoring batches, ranking seed), not the
training seed or the removal settings. Every entry records its key, row count and file hash in ``ranking.json``, checked
on read: a bad entry is recomputed after one warning that names it. Concurrent jobs wait on a lock.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
from filelock import FileLock
from omegaconf import DictConfig, OmegaConf, open_dict

from ..config_dir import config_dir
from ..utils.fingerprint import file_sha1, folder_fingerprint, pretrained_fingerprint, short_hash
from ..utils.io import atomic_write_text, warn_bad_cache_entry
from .training import fit_and_test, save_metrics

log = logging.getLogger("memlab")

# What a ranking depends on (the training seed and the removal settings do not belong here).
RANKING_KEYS = ("data", "model", "solver", "data_seed")
# Trainer settings that change where a run writes or what it shows, not what it computes.
COSMETIC_TRAINER_KEYS = ("_target_", "default_root_dir", "enable_progress_bar", "enable_model_summary", "enable_checkpointing",
                         "log_every_n_steps", "logger", "callbacks")
RANKING_MANIFEST = "ranking.json"
# The config group file that names the scoring callback, for runs that do not configure one themselves.
SCORING_CALLBACK_CONFIG = config_dir() / "callbacks" / "memorization.yaml"


def ranking_key(cfg: DictConfig, keys=RANKING_KEYS) -> str:
    container = OmegaConf.to_container(cfg, resolve=True)
    part = {k: container.get(k) for k in keys}
    for drop in ("exclude", "shuffle_seed", "seed"):
        part["data"].pop(drop, None)
    part["model"].get("net", {}).pop("seed", None)
    part["weights"] = pretrained_fingerprint(container["model"].get("pretrained"))  # a folder's files, not its name
    files = data_files_fingerprint(container["data"])
    if files:  # only data=custom and image_folder folders: every other configuration keeps its key
        part["data_files"] = files
    if container["data"].get("backbone_weights"):  # the file's bytes, not its name (only when set)
        part["backbone_weights"] = file_sha1(Path(container["data"]["backbone_weights"]).expanduser())
    part["trainer"] = {k: v for k, v in container["trainer"].items() if k not in COSMETIC_TRAINER_KEYS}
    part["ranking_seed"] = container["removal"]["ranking_seed"] if "solver" in keys else None
    if "solver" in keys:  # the scores also depend on how they are batched (bf16 passes, chunk layout)
        scoring = (container.get("callbacks") or {}).get("memorization") or {}
        part["scoring"] = {k: scoring.get(k) for k in ("batch_size", "batches_per_chunk")}
    return short_hash(part, 12)


def data_files_fingerprint(data: dict) -> str | None:
    """A data=custom or image_folder folder's files (names, sizes, modification times): edited files make
    a new key."""
    path = data.get("path") if data.get("source") in ("custom", "image_folder") else None
    if path and Path(path).expanduser().is_dir():
        return folder_fingerprint(Path(path).expanduser(), content=False)
    return None


def with_ranking_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """A resolved copy of ``cfg`` whose ranking is trained with ``seed``."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(sub):
        sub.removal.ranking_seed = int(seed)
    return sub


def scoring_callback_target(cfg: DictConfig) -> str:
    """The ``_target_`` of the scoring callback: the run's own (``callbacks.memorization``), else the
    one the ``callbacks=memorization`` config group names."""
    configured = (cfg.get("callbacks") or {}).get("memorization") or {}
    return configured.get("_target_") or OmegaConf.load(SCORING_CALLBACK_CONFIG).memorization["_target_"]


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
        scoring = {"_target_": scoring_callback_target(cfg), "solver": sub.solver,
                   "output_dir": str(out_dir / "memorization"), "log_table": False}
        for key in ("batch_size", "batches_per_chunk"):  # the scoring settings of the run, when it has them
            if key in configured:
                scoring[key] = configured[key]
        # in the run's place among its callbacks (those that read the scores come after it), else last
        sub.callbacks = {k: scoring if k == "memorization" else v for k, v in sub.callbacks.items()}
        sub.callbacks.memorization = scoring
    return sub


def load_or_compute_ranking(cfg: DictConfig) -> tuple[pd.DataFrame, Path]:
    """scores.csv of the ranking model for ``cfg`` (computed once; concurrent jobs wait on a lock).
    A failure of the ranking run is the failure of the job that needs it."""
    key = ranking_key(cfg)
    out_dir = Path(cfg.paths.cache_dir) / "rankings" / key
    scores_file = out_dir / "memorization" / "scores.csv"
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out_dir / ".lock")):
        scores = read_verified_ranking(out_dir, key) if scores_file.is_file() else None
        if scores is None:
            log.info("computing the memorization ranking once for this configuration -> %s", out_dir)
            started = time.perf_counter()
            save_metrics(out_dir, fit_and_test(ranking_run_config(cfg, out_dir)), started)
            scores = pd.read_csv(scores_file)
            atomic_write_text(out_dir / RANKING_MANIFEST, json.dumps(
                {"key": key, "rows": len(scores), "sha1": file_sha1(scores_file)}, indent=2))
    return scores, scores_file


def finished_ranking_metrics(cfg: DictConfig, seed: int) -> tuple[dict, Path] | None:
    """The metrics.json of the finished, verified ranking run trained with ``seed`` for ``cfg``'s
    configuration, and its folder; None when there is none (absent, unfinished or bad: no warning here,
    the job that needs the ranking warns). Never waits on a ranking being computed.

    That run is the full-data training of a removal job with X = 0 and training seed ``seed``
    (same data, model, recipe, epochs; ``ranking_run_config`` seeds it as the job is seeded), so such a
    job can take its metrics instead of training again (tests/tasks/test_full_data_reuse.py proves it)."""
    sub = with_ranking_seed(cfg, seed)
    key = ranking_key(sub)
    out_dir = Path(cfg.paths.cache_dir) / "rankings" / key
    scores_file = out_dir / "memorization" / "scores.csv"
    if not (out_dir / RANKING_MANIFEST).is_file() or not scores_file.is_file():
        return None
    try:
        scores = pd.read_csv(scores_file)
        metrics = json.loads((out_dir / "metrics.json").read_text())
    except Exception:
        return None
    if ranking_problem(out_dir, key, scores) is not None or not isinstance(metrics.get("test/acc"), (int, float)):
        return None
    return metrics, out_dir


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
