"""The runs behind docs/estimators.md: find the validate runs (``validation.csv``) and label-noise runs
(``label_noise.csv``) under folders, keep the newest of each data set, and read one data set's estimator
table from their files. Old runs lack some columns (intervals, ``cost_epochs``): those values are NaN.

    groups = find_estimator_runs([Path("docs/results")])   # [DatasetRuns], by data set name
    result = read_dataset(groups[0])                       # DatasetResult: table, reference, scores

The table (``TABLE_COLUMNS``): each candidate's Spearman with Feldman-Zhang and its 95% interval, the same
÷ the ceiling sqrt(reliability), the share of FZ's top 10% in its top 10%, the label-error AUROC from the
label-noise run, its cost in training epochs, and its paired difference to the leader's Spearman. The
intervals come from the run's ``spearman_intervals.csv``, else are recomputed from its ``scores.csv``, else
are the own intervals of ``validation.csv`` (no paired difference).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..studies.feldman_zhang import attenuation_ceiling
from ..studies.validation import spearman_intervals
from .run_dirs import DATASETS, RunDir, find_run_dirs

VALIDATION, LABEL_NOISE, INTERVALS, SCORES = "validation.csv", "label_noise.csv", "spearman_intervals.csv", "scores.csv"
TABLE_COLUMNS = ["score", "spearman", "spearman_ci_low", "spearman_ci_high", "ratio", "ratio_low", "ratio_high",
                 "overlap", "auroc", "cost", "diff_ci_low", "diff_ci_high"]


@dataclasses.dataclass
class DatasetRuns:
    """One data set's newest validate run, the older ones not used, and its newest label-noise run."""
    dataset: str
    validate: RunDir
    older: list[RunDir]
    noise: RunDir | None = None
    older_noise: list[RunDir] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DatasetResult:
    runs: DatasetRuns
    table: pd.DataFrame  # TABLE_COLUMNS, ranked by Spearman (highest first, no Spearman last)
    models: int | None   # K, the reference's models
    reliability: float   # the reference's split-half reliability (NaN unknown)
    ceiling: float       # sqrt(reliability): no score can correlate better with the reference
    instances: int | None
    interval_source: str  # where the intervals came from (said on the page)
    scores: pd.DataFrame | None  # scores.csv: every candidate beside fz_mem, label, ...


def _newest_first(runs: list[RunDir], file: str) -> list[RunDir]:
    """Hydra's ``<date>/<time>`` in the path decides; without one (archived copies), the file's mtime."""
    return sorted(runs, key=lambda r: (r.stamp, (r.path / file).stat().st_mtime, str(r.path)), reverse=True)


def find_estimator_runs(dirs: list[Path]) -> tuple[list[DatasetRuns], list[RunDir]]:
    """Every data set with a validate run under ``dirs`` (the paper's data sets first, in the paper's order,
    then the others by name), and the label-noise runs of data sets without one (not shown)."""
    runs = [r for d in dirs for r in find_run_dirs(d) if r.kind == "run"]
    by_name: dict[str, dict[str, list[RunDir]]] = {}
    for run in runs:
        for kind, file in (("validate", VALIDATION), ("noise", LABEL_NOISE)):
            if (run.path / file).is_file():
                by_name.setdefault(run.dataset or "unknown", {}).setdefault(kind, []).append(run)
    groups, unused = [], []
    for name in sorted(by_name, key=lambda d: (DATASETS.index(d) if d in DATASETS else len(DATASETS), d)):
        found = by_name[name]
        noise = _newest_first(found.get("noise", []), LABEL_NOISE)
        if not found.get("validate"):
            unused += noise
            continue
        validate = _newest_first(found["validate"], VALIDATION)
        groups.append(DatasetRuns(name, validate[0], validate[1:], noise[0] if noise else None, noise[1:]))
    return groups, unused


def _csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as err:  # pandas' parser errors are ValueErrors
        raise DataError(f"cannot read {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from err


def _metrics(run: RunDir | None) -> dict:
    try:
        value = json.loads((run.path / "metrics.json").read_text(encoding="utf-8")) if run else {}
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def _column(table: pd.DataFrame | None, scores: pd.Series, column: str) -> pd.Series:
    """``table[column]`` for each name in ``scores`` (NaN where the table, the column or the row is missing)."""
    if table is None or column not in table or "score" not in table:
        return pd.Series(np.nan, index=scores.index)
    values = pd.to_numeric(table.drop_duplicates("score").set_index("score")[column], errors="coerce")
    return scores.map(values).astype(float)


def cost_in_epochs(table: pd.DataFrame | None, metrics: dict, scores: pd.Series) -> pd.Series:
    """``cost_epochs`` where the run wrote it, else ``seconds`` ÷ the run's ``train/epoch_seconds``."""
    cost = _column(table, scores, "cost_epochs")
    epoch = _number(metrics.get("train/epoch_seconds"))
    if epoch > 0:
        cost = cost.fillna(_column(table, scores, "seconds") / epoch)
    return cost


def _intervals(run: RunDir, names: list[str], scores: pd.DataFrame | None, resamples: int) -> tuple[pd.DataFrame | None, str]:
    saved = _csv(run.path / INTERVALS)
    if saved is not None:
        return saved, INTERVALS
    present = [n for n in names if scores is not None and n in scores]
    if scores is not None and "fz_mem" in scores and present:
        return spearman_intervals(scores[["sample_index", *present]], scores[["sample_index", "fz_mem"]],
                                  resamples=resamples), f"{SCORES} (paired bootstrap, {resamples} resamples)"
    return None, VALIDATION


def read_dataset(runs: DatasetRuns, resamples: int = 200) -> DatasetResult:
    """The data set's table and reference from its runs' files (see the module docstring)."""
    validation = _csv(runs.validate.path / VALIDATION)
    if validation is None or "score" not in validation:
        raise DataError(f"{runs.validate.path / VALIDATION} has no 'score' column")
    metrics = _metrics(runs.validate)
    scores = _csv(runs.validate.path / SCORES)
    scores = scores if scores is not None and "sample_index" in scores else None
    names = validation["score"].astype(str)
    intervals, source = _intervals(runs.validate, list(names), scores, resamples)
    if intervals is None:
        intervals = validation.rename(columns={"spearman_vs_fz": "spearman"})
    spearman = _column(intervals, names, "spearman").fillna(_column(validation, names, "spearman_vs_fz"))
    reliability = _number(metrics.get("fz_reliability"))
    ceiling = attenuation_ceiling(reliability) if reliability == reliability else \
        _number(validation["ceiling"].iloc[0] if "ceiling" in validation and len(validation) else None)
    table = pd.DataFrame({"score": names, "spearman": spearman,
                          "spearman_ci_low": _column(intervals, names, "spearman_ci_low"),
                          "spearman_ci_high": _column(intervals, names, "spearman_ci_high")})
    per = ceiling if ceiling > 0 else float("nan")
    table["ratio"], table["ratio_low"], table["ratio_high"] = (table["spearman"] / per, table["spearman_ci_low"] / per,
                                                               table["spearman_ci_high"] / per)
    table["overlap"] = _column(validation, names, "fz_top10_recovered")
    noise = _csv(runs.noise.path / LABEL_NOISE) if runs.noise else None
    table["auroc"] = _column(noise, names, "auroc")
    table["cost"] = cost_in_epochs(validation, metrics, names).fillna(cost_in_epochs(noise, _metrics(runs.noise), names))
    table["diff_ci_low"] = _column(intervals, names, "diff_ci_low")
    table["diff_ci_high"] = _column(intervals, names, "diff_ci_high")
    table = table.sort_values("spearman", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    config_models = (runs.validate.config.get("fz") or {}).get("models")
    models = config_models if isinstance(config_models, int) else metrics.get("fz/models")
    return DatasetResult(runs, table[TABLE_COLUMNS], int(models) if isinstance(models, (int, float)) else None,
                         reliability, ceiling, len(scores) if scores is not None else None, source, scores)


def relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (the page's folder), as the page links it."""
    return Path(os.path.relpath(Path(path).resolve(), Path(start).resolve())).as_posix()
