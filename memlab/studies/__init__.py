"""The analyses behind the paper's studies, as plain functions on files and DataFrames.

    typicality     Table 1, Fig. 4, Appendix D: positive-phrase fraction of SST sentences
    feldman_zhang  the subsampling memorization estimator of Feldman & Zhang (2020)
    validation     each score's Spearman with that reference, against its reliability ceiling
    label_noise    the label-error benchmark: seeded flips, AUROC / AP / precision, cleanlab
    removal        Fig. 1: which instances a removal job drops, and the sweep's summary
    stability      Table 5: Spearman between score rankings
    plots          score vs. loss, reduction rate (Fig. 2), Tables 2-4 as Markdown / HTML

No Lightning or Hydra here (the Hydra tasks live in tasks.py, *_task.py, removal_job.py,
candidate_scores.py and subset_training.py). Every writer writes atomically (a temp file in the same folder, then
``os.replace``) with the helpers below, so a reader never sees a half-written file.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd

from ..utils.io import atomic_write


def write_atomic(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then move it onto ``path``."""
    return atomic_write(path, write)


def save_text(text: str, path: str | os.PathLike) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomic(path, write)


def save_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    return write_atomic(path, lambda tmp: df.to_csv(tmp, index=False))


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a ``matplotlib.figure.Figure`` (Agg canvas, no pyplot state) atomically."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), **subplot_kw):
    """A Figure on the Agg canvas and its axes, without touching pyplot's global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def load_scores(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A scores table from a DataFrame, a CSV, or a JSON-lines file (e.g. shared/reference/*.jsonl).

    Columns ``sample_index,label,text,prob,prediction,mem_score,rank`` (rank 1 = most memorized).
    A missing ``rank`` is derived from ``mem_score`` (descending, ties by ``sample_index``); a ``prob``
    given as the whole softmax vector is reduced to the probability of the gold label.
    """
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        path = Path(source)
        df = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".ndjson") else pd.read_csv(path)
    if "prob" in df.columns and len(df) and isinstance(df["prob"].iloc[0], (list, tuple)):
        df["prob"] = [p[int(y)] for p, y in zip(df["prob"], df["label"])]
    if "rank" not in df.columns:
        order = df.sort_values(["mem_score", "sample_index"], ascending=[False, True]).index
        df.loc[order, "rank"] = range(1, len(df) + 1)
        df["rank"] = df["rank"].astype(int)
    return df
