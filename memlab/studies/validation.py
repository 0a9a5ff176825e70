"""Does a score measure memorization? Each candidate score's Spearman correlation with the
Feldman-Zhang reference, over all instances and over the candidate's own top 10%, next to the
ceiling the reference's reliability allows (:func:`memlab.studies.feldman_zhang.attenuation_ceiling`).
Pure pandas (its figures: :mod:`memlab.report.study_figures`).

    table = validation_table(candidates, fz_scores, ceiling)   # score,spearman_vs_fz,spearman_vs_fz_top10,ceiling
"""
from __future__ import annotations

import pandas as pd

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
