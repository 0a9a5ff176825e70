"""The one order by memorization, and reading a scores table.

Every "most memorized first" in memlab is :func:`rank_by_memorization`: removal selections, the
top-X% instances the attribution callback explains, scores.csv's ``rank`` column, the typicality
groups, the top 10% of a validation, the tables a person reads. Ties are broken by the smaller
``sample_index`` first, whatever the direction, so a top-X% and its reported lowest score always
agree, and every table that says "rank 1" means the same instance. Non-finite scores come last in
either direction (:func:`nonfinite_count` counts them for diagnostics.json).

    ordered = rank_by_memorization(scores)                 # loo_score (else mem_score), most memorized first
    ordered = rank_by_memorization(scores, "loss", ascending=True)
    scores["rank"] = memorization_rank(scores)             # 1 = most memorized
    top = rank_by_memorization(scores).head(top_count(len(scores), 10, at_least_one=True))
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

# The column memlab ranks by when none is named: Eq. 2 without the instance's own curvature term,
# the score that agrees best with the Feldman-Zhang reference (README, "Does the score measure
# memorization?"); mem_score, with the own term, follows the loss at small damping. Tables without
# it (solvers that add no own term, the study's published scores) rank by mem_score.
DEFAULT_SCORE = "loo_score"
FALLBACK_SCORE = "mem_score"


def memorization_column(scores: pd.DataFrame) -> str:
    """The column a table is ranked by by default: ``loo_score`` when it has one, else ``mem_score``."""
    return DEFAULT_SCORE if DEFAULT_SCORE in scores.columns else FALLBACK_SCORE


def rank_by_memorization(scores: pd.DataFrame, column: str | None = None,
                         ascending: bool = False) -> pd.DataFrame:
    """``scores`` ordered by ``column`` (default :func:`memorization_column`; most memorized first
    unless ``ascending``), ties broken by the smaller ``sample_index`` first, whatever the direction.
    ``column="rank", ascending=True`` follows a table's own ``rank`` column (1 = most memorized)."""
    column = memorization_column(scores) if column is None else column
    if column not in scores.columns:
        raise ValueError(f"cannot rank by {column!r}: the scores have only {', '.join(map(str, scores.columns))}"
                         + (" (loo_score exists only when the solver adds the own term)" if column == "loo_score" else ""))
    # a non-finite score (inf, NaN: a numerical failure, counted in diagnostics.json) ranks after every
    # finite one in both directions: never "most memorized", nor "least"
    unranked = ~np.isfinite(pd.to_numeric(scores[column], errors="coerce").to_numpy(float))
    if not unranked.any():
        return scores.sort_values([column, "sample_index"], ascending=[ascending, True], kind="mergesort")
    keyed = scores.assign(_unranked=unranked)
    ordered = keyed.sort_values(["_unranked", column, "sample_index"], ascending=[True, ascending, True], kind="mergesort")
    return ordered.drop(columns="_unranked")


def nonfinite_count(scores: pd.DataFrame, columns=("mem_score", "loo_score")) -> int:
    """How many rows have an inf or NaN in any of ``columns`` (those present)."""
    present = [c for c in columns if c in scores.columns]
    if not present or not len(scores):
        return 0
    values = scores[present].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    return int((~np.isfinite(values)).any(axis=1).sum())


def memorization_rank(scores: pd.DataFrame, column: str | None = None) -> pd.Series:
    """Every row's place in :func:`rank_by_memorization` (1 = most memorized), aligned with ``scores``."""
    order = rank_by_memorization(scores.reset_index(drop=True), column).index.to_numpy()
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return pd.Series(ranks, index=scores.index, name="rank")


def top_count(n: int, pct: float, at_least_one: bool = False) -> int:
    """How many of ``n`` instances make a top (or bottom) ``pct`` %: round(n * pct / 100), within
    [0, n]; at least 1 when ``at_least_one`` and n > 0."""
    m = int(round(n * pct / 100.0))
    return min(n, max(1 if at_least_one and n else 0, m))


def load_scores(source: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """A scores table from a DataFrame, a CSV, or a JSON-lines file (e.g. shared/reference/*.jsonl).

    Columns ``sample_index,label,text,prob,prediction,mem_score,rank`` (rank 1 = most memorized).
    A missing ``rank`` is derived by :func:`memorization_rank` (``loo_score``, else ``mem_score``); a ``prob`` given
    as the whole softmax vector is reduced to the probability of the gold label.
    """
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        path = Path(source)
        df = pd.read_json(path, lines=True) if path.suffix in (".jsonl", ".ndjson") else pd.read_csv(path)
    if "prob" in df.columns and len(df) and isinstance(df["prob"].iloc[0], (list, tuple)):
        df["prob"] = [p[int(y)] for p, y in zip(df["prob"], df["label"])]
    if "rank" not in df.columns:
        df["rank"] = memorization_rank(df)
    return df
