"""Marginal utility of memorized instances (paper Fig. 1): which instances a removal job drops,
and the summary of a sweep of removal jobs.

A removal job retrains without X% of the training set, chosen by ``strategy``:
``top`` (most memorized first), ``bottom`` (least memorized first) or ``random`` (drawn with
``draw_seed``). ``score`` names the scores.csv column that ranks (``loo_score``, ``mem_score`` or
``loss``; by default the table's own ranking column, :func:`memlab.studies.ranking.memorization_column`:
``loo_score`` where the solver wrote it, else ``mem_score``). When it ends, each job writes ``<job dir>/removal_job.json``::

    {"strategy": "top", "removal_pct": 10, "seed": 0, "draw_seed": 0, "score": "loo_score",
     "status": "ok", "test_acc": 0.875, "min_removed_score": 3.2, "n_removed": 692}

with ``"status": "failed"`` and an ``"error"`` message when it did not finish, and
``"skipped-duplicate"`` when it would only repeat the job of another draw seed
(:mod:`memlab.jobs.removal_record`). A job dir without it is still read from its ``metrics.json`` (``test_acc``)
and ``.hydra/overrides.yaml`` (``...strategy=``, ``...removal_pct=`` or ``...pct=``, ``...seed=``,
optionally ``...draw_seed=`` and ``...score=``). X = 0 is the full data set, shared by all
strategies. Ranking is :func:`memlab.studies.ranking.rank_by_memorization`; the statistics (paired
differences to random-removed) are in ``removal_stats``; the figure and the report files in
:mod:`memlab.report.removal_report`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .ranking import DEFAULT_SCORE, memorization_column, rank_by_memorization, top_count  # noqa: F401 (re-exported)

STRATEGIES = ("top", "bottom", "random")
# What a job record that names no ranking score was ranked by: records predate the field, when
# memlab ranked by mem_score (jobs since record the column they used).
LEGACY_SCORE = "mem_score"
RANKING_SCORES = ("mem_score", "loo_score", "loss")  # the scores.csv columns a removal may rank by
JOB_FILE = "removal_job.json"
SKIPPED = "skipped-duplicate"
SUMMARY_COLUMNS = ["strategy", "removal_pct", "seed", "draw_seed", "score", "test_acc", "min_removed_score"]


def n_to_remove(n: int, pct: float) -> int:
    """round(n * pct / 100), within [0, n]."""
    if not 0 <= pct <= 100:
        raise ValueError(f"removal pct must be in [0, 100], got {pct}")
    return top_count(n, pct)


def check_score(score: str) -> str:
    if score not in RANKING_SCORES:
        raise ValueError(f"removal.score must be one of {RANKING_SCORES}, got {score!r}")
    return score


def select_removed(scores_df: pd.DataFrame, strategy: str, pct: float, seed: int = 0,
                   score: str | None = None) -> list[int]:
    """The sample indices a removal job drops, sorted ascending.

    ``top``: the highest ``score`` first; ``bottom``: the lowest first; ties broken by the
    smaller ``sample_index`` (``rank_by_memorization``). ``random``: a uniform draw of the same
    size from ``numpy.random.default_rng(seed)`` over the sorted sample indices, independent of
    the scores.
    """
    score = memorization_column(scores_df) if score is None else check_score(score)
    n = len(scores_df)
    m = n_to_remove(n, pct)
    if strategy == "random":
        ids = np.sort(scores_df["sample_index"].to_numpy())
        chosen = np.random.default_rng(seed).choice(n, size=m, replace=False)
        return sorted(int(i) for i in ids[chosen])
    if strategy not in ("top", "bottom"):
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    ordered = rank_by_memorization(scores_df, score, ascending=strategy == "bottom")
    return sorted(int(i) for i in ordered["sample_index"].head(m))


def min_removed_score(scores_df: pd.DataFrame, removed: Sequence[int], score: str | None = None) -> float:
    """The lowest ``score`` (default: the table's ranking column) among the removed instances (Fig. 1,
    bottom); NaN when none."""
    score = memorization_column(scores_df) if score is None else check_score(score)
    chosen = scores_df.loc[scores_df["sample_index"].isin(list(removed)), score]
    return float(chosen.min()) if len(chosen) else math.nan


def _read_overrides(path: Path) -> dict:
    """``key=value`` lines of Hydra's overrides.yaml, by the last component of the key."""
    import yaml

    items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(items, list):
        raise ValueError("not a list of overrides")
    out = {}
    for item in items:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            out[key.lstrip("+~").rsplit(".", 1)[-1]] = value
    return out


def _job_from_hydra(job_dir: Path) -> dict:
    """A job record from metrics.json + .hydra/overrides.yaml (jobs that wrote no removal_job.json)."""
    overrides = _read_overrides(job_dir / ".hydra" / "overrides.yaml")
    metrics = json.loads((job_dir / "metrics.json").read_text(encoding="utf-8"))
    acc = next((metrics[k] for k in ("test_acc", "test/acc", "test_accuracy", "test/accuracy")
                if k in metrics), None)
    if acc is None:
        raise ValueError("metrics.json has no test_acc")
    pct = overrides.get("removal_pct", overrides.get("pct"))
    if "strategy" not in overrides or pct is None or "seed" not in overrides:
        raise ValueError("overrides.yaml does not name strategy, removal_pct and seed")
    return {"strategy": overrides["strategy"], "removal_pct": pct, "seed": overrides["seed"],
            "draw_seed": overrides.get("draw_seed", 0), "score": overrides.get("score", LEGACY_SCORE),
            "status": "ok", "test_acc": acc, "min_removed_score": metrics.get("min_removed_score")}


def _is_job_dir(path: Path) -> bool:
    return (path / JOB_FILE).exists() or (path / ".hydra").is_dir() or (path / "metrics.json").exists()


def _job_dirs(sweep_dir: Path) -> list[Path]:
    found = []
    for root, dirs, _ in os.walk(sweep_dir):
        if _is_job_dir(Path(root)):
            found.append(Path(root))
            dirs[:] = []  # a job's own sub-folders (checkpoints, logs) are not jobs
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return found


def _read_job(job_dir: Path) -> dict | None:
    """The job's record (removal_job.json, else metrics.json + overrides.yaml); None when neither."""
    if (job_dir / JOB_FILE).exists():
        record = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError(f"{JOB_FILE} is not a JSON object")
        return record
    if (job_dir / "metrics.json").exists() and (job_dir / ".hydra" / "overrides.yaml").exists():
        return _job_from_hydra(job_dir)
    return None


def _summary_row(record: dict) -> dict:
    missing = [k for k in ("strategy", "removal_pct", "seed", "test_acc") if record.get(k) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    lowest = record.get("min_removed_score")
    return {"strategy": str(record["strategy"]), "removal_pct": float(record["removal_pct"]),
            "seed": int(record["seed"]), "draw_seed": int(record.get("draw_seed") or 0),
            # records written before removal.score existed ranked by mem_score
            "score": str(record.get("score") or LEGACY_SCORE), "test_acc": float(record["test_acc"]),
            "min_removed_score": math.nan if lowest is None else float(lowest)}


def collect_sweep(sweep_dir: str | os.PathLike, scores_df: pd.DataFrame | None = None
                  ) -> tuple[pd.DataFrame, list[str]]:
    """Read every removal job under ``sweep_dir`` into a summary, never raising on a bad job.

    Returns ``(summary, problems)``: one row per finished job with columns ``strategy,
    removal_pct, seed, draw_seed, score, test_acc, min_removed_score``, sorted by strategy, X%,
    seed and draw seed; and one line per job dir that is failed, unfinished or unreadable, plus
    duplicated runs. Jobs skipped as duplicates of another draw seed are left out silently. With
    ``scores_df`` a missing ``min_removed_score`` is recomputed from the scores.
    """
    sweep_dir = Path(sweep_dir)
    problems: list[str] = []
    if not sweep_dir.is_dir():
        return pd.DataFrame(columns=SUMMARY_COLUMNS), [f"{sweep_dir}: sweep dir does not exist"]
    rows = []
    for job_dir in _job_dirs(sweep_dir):
        name = str(job_dir.relative_to(sweep_dir)) if job_dir != sweep_dir else "."
        try:
            record = _read_job(job_dir)
            if record is None:
                problems.append(f"{name}: no {JOB_FILE} (job unfinished or crashed before writing it)")
                continue
            status = record.get("status", "ok")
            if status == SKIPPED:
                continue
            if status != "ok":
                problems.append(f"{name}: job {status}: {record.get('error') or 'no error message'}")
                continue
            row = _summary_row(record)
        except Exception as err:  # one unreadable job must not hide the others
            problems.append(f"{name}: unreadable job record ({type(err).__name__}: {err})")
            continue
        if row["strategy"] not in STRATEGIES and row["removal_pct"] != 0:
            problems.append(f"{name}: unknown strategy {row['strategy']!r}")
            continue
        if scores_df is not None and math.isnan(row["min_removed_score"]) and row["removal_pct"] > 0:
            removed = select_removed(scores_df, row["strategy"], row["removal_pct"], row["draw_seed"], row["score"])
            row["min_removed_score"] = min_removed_score(scores_df, removed, row["score"])
        rows.append(row)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    key = ["strategy", "removal_pct", "seed", "draw_seed", "score"]
    summary = summary.sort_values(key, kind="mergesort").reset_index(drop=True)
    for values, _ in summary[summary.duplicated(key, keep=False)].groupby(key):
        problems.append("duplicate runs of " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                         for k, v in zip(key, values)))
    return summary, problems


def with_defaults(summary: pd.DataFrame) -> pd.DataFrame:
    """A summary with every SUMMARY_COLUMNS column: tables from before draw seeds and ranking
    scores were recorded had one draw (0) and ranked by mem_score."""
    defaults = {"draw_seed": 0, "score": LEGACY_SCORE, "min_removed_score": math.nan}
    return summary.assign(**{k: v for k, v in defaults.items() if k not in summary.columns})


def arm_labels(summary: pd.DataFrame) -> pd.Series:
    """The curve each row belongs to: its strategy, or e.g. ``top[loo_score]`` when the ranked
    rows of one sweep rank by several scores (random and X = 0 do not depend on the score)."""
    ranked = summary["strategy"].isin(("top", "bottom")) & (summary["removal_pct"] > 0)
    if summary.loc[ranked, "score"].nunique() <= 1:
        return summary["strategy"].astype(str)
    return summary["strategy"].where(~ranked, summary["strategy"] + "[" + summary["score"] + "]")


def ordered_arms(labels) -> list[str]:
    """Arm labels in the study's order (top, bottom, random), then by name."""
    base = {s: i for i, s in enumerate(STRATEGIES)}
    return sorted(set(labels), key=lambda a: (base.get(a.split("[")[0], len(base)), a))


def _aggregate_row(strategy: str, pct: float, g: pd.DataFrame) -> dict:
    acc = g["test_acc"].to_numpy(dtype=float)
    scores = g["min_removed_score"].dropna()
    return {"strategy": strategy, "removal_pct": float(pct), "score": ",".join(sorted(set(g["score"]))),
            "test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "n_runs": int(len(acc)), "n_seeds": int(g["seed"].nunique()), "n_draws": int(g["draw_seed"].nunique()),
            "min_removed_score": float(scores.min()) if len(scores) else math.nan}


def aggregate_removal(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std test accuracy per strategy and X% (Fig. 1, top), with the lowest removed score.

    Mean and std are over all runs of a point: training seeds x random draws (the study's error
    bars); ``removal_stats`` pairs by seed instead. Rows at X = 0 (the full data) are pooled over
    strategies and repeated for each strategy that has a run, so every curve starts from the same
    point. Columns ``strategy, removal_pct, score, test_acc_mean, test_acc_std, n_runs, n_seeds,
    n_draws, min_removed_score``; ``score`` is the ranking score of the point's jobs.
    """
    columns = ["strategy", "removal_pct", "score", "test_acc_mean", "test_acc_std", "n_runs", "n_seeds",
               "n_draws", "min_removed_score"]
    if summary.empty:
        return pd.DataFrame(columns=columns)
    summary = with_defaults(summary)
    summary = summary.assign(strategy=arm_labels(summary))
    # X = 0 is one job per seed whatever the strategy and draw: count each seed once
    full = summary[summary["removal_pct"] == 0].drop_duplicates("seed")
    removed = summary[summary["removal_pct"] != 0]
    strategies = ordered_arms(removed["strategy"]) or sorted(set(full["strategy"]))
    rows = []
    for strategy in strategies:
        parts = [(0.0, full)] if len(full) else []
        parts += list(removed[removed["strategy"] == strategy].groupby("removal_pct"))
        rows += [_aggregate_row(strategy, pct, g) for pct, g in parts]
    return pd.DataFrame(rows, columns=columns)
