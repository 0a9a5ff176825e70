"""Does a score measure memorization? Each candidate score's Spearman correlation with the
Feldman-Zhang reference, over all instances and over the candidate's own top 10%, next to the
ceiling the reference's reliability allows (:func:`memlab.studies.feldman_zhang.attenuation_ceiling`).
Pure pandas / matplotlib.

    table = validation_table(candidates, fz_scores, ceiling)   # score,spearman_vs_fz,spearman_vs_fz_top10,ceiling
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import new_figure, save_figure
from .feldman_zhang import spearman_against

COLUMNS = ["score", "spearman_vs_fz", "spearman_vs_fz_top10", "ceiling"]


def score_columns(candidates: pd.DataFrame) -> list[str]:
    return [c for c in candidates.columns if c != "sample_index"]


def validation_table(candidates: pd.DataFrame, fz: pd.DataFrame, ceiling: float, top_pct: float = 10) -> pd.DataFrame:
    """One row per candidate (a column of ``candidates`` beside ``sample_index``; higher = more
    memorized), in the candidates' order."""
    rows = []
    for name in score_columns(candidates):
        rho = spearman_against(candidates[["sample_index", name]], fz, top_pct=top_pct, score_column=name)
        rows.append({"score": name, "spearman_vs_fz": rho["overall"], "spearman_vs_fz_top10": rho["top"],
                     "ceiling": float(ceiling)})
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_validation(table: pd.DataFrame, path, title: str = "") -> None:
    """Horizontal bars: Spearman with FZ overall and in the top 10%, the ceiling as a line."""
    fig, axes = new_figure(figsize=(7.0, 0.45 * len(table) + 1.5))
    ax = axes[0, 0]
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["spearman_vs_fz"], height=0.4, label="all instances")
    ax.barh(y + 0.2, table["spearman_vs_fz_top10"], height=0.4, label="its top 10%")
    if len(table):
        ax.axvline(float(table["ceiling"].iloc[0]), color="black", ls="--", lw=1, label="ceiling (sqrt reliability)")
    ax.set_yticks(y, table["score"], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="Spearman with Feldman-Zhang memorization", title=title or "which score measures memorization?")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_scores_vs_fz(candidates: pd.DataFrame, fz: pd.DataFrame, path, bins: int = 20) -> None:
    """One panel per candidate: mean FZ memorization (± its standard error over the bin) per
    percentile bin of the candidate; a score that measures memorization rises to the right."""
    merged = candidates.merge(fz[["sample_index", "fz_mem"]], on="sample_index").dropna(subset=["fz_mem"])
    names = score_columns(candidates)
    cols = min(4, max(1, len(names)))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = new_figure(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharey=True)
    for ax, name in zip(axes.flat, names):
        pct = merged[name].rank(pct=True, method="first")
        grouped = merged["fz_mem"].groupby(np.minimum((pct * bins).astype(int), bins - 1))
        mean, err = grouped.mean(), grouped.sem()
        ax.errorbar((mean.index + 0.5) / bins * 100, mean, yerr=err, fmt="o-", ms=2, lw=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("percentile of the score", fontsize=7)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("mean FZ memorization", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
