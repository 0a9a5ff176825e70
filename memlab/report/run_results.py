"""The numbers a run or sweep dir holds, read from the files its study wrote (:mod:`memlab.report.run_dirs`
finds the dirs). Every reader returns None when the dir holds no such result.

    removal_comparison   removal sweep: the paired comparison to random (compare_to_random) from its job
                         records, else removal_summary.csv, else removal_stats.csv
    test_accuracy        metrics.json ``test/acc`` of a full-data training run (task train, no removal)
    top10_train_accuracy memorization/diagnostics.json (or metrics.json) ``top10_train_acc``
    reduction_rates      memorization/reduction_rate.csv: k_percent, method, reduction_rate
    typicality           typicality.csv: group, label, class_name, n, positive_fraction_pct
    seed_spearman        stability.csv: the Spearman matrix between training seeds
    learning_curve       metrics.json ``curve/*`` of a learning-curve run (study=learning_curve), its figure
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..studies.removal_selection import JOB_FILE, collect_sweep
from ..studies.removal_stats import compare_to_random
from .run_dirs import RunDir


def _metrics(run: RunDir) -> dict:
    try:
        value = json.loads((run.path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _csv(path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.is_file() else None
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def removal_comparison(run: RunDir) -> pd.DataFrame | None:
    """``strategy, removal_pct, n_seeds, mean_acc, std_acc, diff_vs_random, ci_low, ci_high, n_pairs``
    (accuracies as fractions); ``n_pairs`` NaN when only removal_stats.csv was left."""
    if run.kind != "sweep":
        return None
    if (run.path / JOB_FILE).is_file() or any(run.path.glob(f"*/{JOB_FILE}")):
        summary, _ = collect_sweep(run.path)
        return compare_to_random(summary) if len(summary) else None
    summary = _csv(run.path / "removal_summary.csv")
    if summary is not None and len(summary):
        return compare_to_random(summary)
    stats = _csv(run.path / "removal_stats.csv")
    if stats is None or not len(stats):
        return None
    return stats.assign(n_pairs=math.nan) if "n_pairs" not in stats else stats


def is_full_data_training(run: RunDir) -> bool:
    """A plain training run (scoring and attribution runs included): no removal, no other task."""
    removal = run.config.get("removal") or {}
    return (run.kind == "run" and run.config.get("task", "train") == "train"
            and removal.get("strategy", "none") in ("none", None) and not (run.path / JOB_FILE).exists())


def test_accuracy(run: RunDir) -> float | None:
    if not is_full_data_training(run):
        return None
    value = _metrics(run).get("test/acc")
    return float(value) if isinstance(value, (int, float)) else None


def top10_train_accuracy(run: RunDir) -> float | None:
    """The trained model's accuracy on its own top-10% memorized training instances (a fraction)."""
    try:
        diagnostics = json.loads((run.path / "memorization" / "diagnostics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        diagnostics = {}
    value = diagnostics.get("top10_train_acc") if isinstance(diagnostics, dict) else None
    if value is None:
        value = _metrics(run).get("memorization/top10_train_acc")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def reduction_rates(run: RunDir) -> pd.DataFrame | None:
    """``k_percent, method, reduction_rate`` (fractions), from reduction_rate.csv or metrics.json."""
    table = _csv(run.path / "memorization" / "reduction_rate.csv")
    if table is not None and {"k_percent", "method", "reduction_rate"} <= set(table.columns):
        return table[["k_percent", "method", "reduction_rate"]]
    rows = []
    for key, value in _metrics(run).items():
        head, _, k = key.rpartition("_")
        if head.startswith("reduction_rate/") and k.isdigit() and isinstance(value, (int, float)):
            rows.append({"k_percent": int(k), "method": head.split("/", 1)[1], "reduction_rate": float(value)})
    return pd.DataFrame(rows) if rows else None


def typicality(run: RunDir) -> pd.DataFrame | None:
    table = _csv(run.path / "typicality.csv")
    needed = {"group", "class_name", "n", "positive_fraction_pct"}
    return table if table is not None and needed <= set(table.columns) else None


def seed_spearman(run: RunDir) -> tuple[float, float, int] | None:
    """(lowest, highest, number of seeds) of the Spearman correlations between different seeds' rankings."""
    table = _csv(run.path / "stability.csv")
    if table is None or len(table) < 2:
        return None
    matrix = table.set_index(table.columns[0]).to_numpy(dtype=float)
    off = matrix[~np.eye(len(matrix), dtype=bool)]
    off = off[np.isfinite(off)]
    return (float(off.min()), float(off.max()), len(matrix)) if off.size else None


def learning_curve(run: RunDir) -> dict | None:
    """A learning-curve run's ``epochs``, ``test_acc`` (else ``val_acc``: fractions), which ``split`` that is,
    and the ``figure`` (learning_curve.png, None when absent); None for any other run."""
    metrics = _metrics(run)
    epochs = metrics.get("curve/epoch")
    split = "test" if metrics.get("curve/test_acc") else "val"
    accs = metrics.get(f"curve/{split}_acc")
    if not isinstance(epochs, list) or not isinstance(accs, list) or len(epochs) != len(accs) or not epochs:
        return None
    figure = run.path / "learning_curve.png"
    return {"epochs": epochs, "acc": accs, "split": split, "figure": figure if figure.is_file() else None}
