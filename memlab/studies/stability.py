"""Stability of memorization rankings across checkpoints (paper Table 5): Spearman correlation
between the scores of every pair of score tables, and its annotated heat map."""
from __future__ import annotations

import math
import os
from typing import Mapping

import numpy as np
import pandas as pd

from memlab.studies import new_figure, save_figure


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


def plot_heatmap(matrix_df: pd.DataFrame, path: str | os.PathLike, title: str = "Spearman ρ",
                 fmt: str = "{:.3f}"):
    """An annotated heat map of a square correlation matrix; writes the image, returns its path."""
    n = len(matrix_df)
    fig, axes = new_figure(1, 1, figsize=(1.2 * n + 2.5, 1.0 * n + 1.5))
    ax = axes[0, 0]
    values = matrix_df.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    # Rankings of checkpoints agree at ~0.98: start the colour scale just below the data so that
    # differences show, on a round step.
    vmin = max(-1.0, math.floor(float(finite.min()) * 10) / 10 - 0.1) if finite.size else 0.0
    image = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks(range(n), [str(c) for c in matrix_df.columns], rotation=30, ha="right")
    ax.set_yticks(range(n), [str(i) for i in matrix_df.index])
    for i in range(n):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "nan" if not np.isfinite(v) else fmt.format(v)
            light = np.isfinite(v) and v < vmin + 0.6 * (1.0 - vmin)
            ax.text(j, i, text, ha="center", va="center", color="white" if light else "black", fontsize=9)
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return save_figure(fig, path)
