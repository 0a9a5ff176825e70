"""Stability of memorization rankings across checkpoints (paper Table 5): Spearman correlation
between the scores of every pair of score tables (its heat map: :mod:`memlab.report.study_figures`)."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd


def spearman_matrix(score_tables: Mapping[str, pd.DataFrame], column: str = "mem_score") -> pd.DataFrame:
    """Spearman correlation of ``column`` between every pair of tables, names x names.

    Tables are aligned on ``sample_index`` and only instances present in all of them count, so
    each entry compares the same instances (ties get average ranks).
    """
    if not score_tables:
        return pd.DataFrame(dtype=float)
    names = list(score_tables)
    aligned = None
    for name in names:
        table = score_tables[name]
        if table["sample_index"].duplicated().any():
            raise ValueError(f"score table {name!r} has duplicated sample_index values")
        part = table[["sample_index", column]].rename(columns={column: name})
        aligned = part if aligned is None else aligned.merge(part, on="sample_index", how="inner")
    ranks = aligned[names].rank(method="average")
    matrix = np.corrcoef(ranks.to_numpy(dtype=float), rowvar=False) if len(aligned) > 1 else \
        np.full((len(names), len(names)), np.nan)
    matrix = np.atleast_2d(matrix)
    return pd.DataFrame(matrix, index=names, columns=names)
