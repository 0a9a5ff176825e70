"""Does a score measure memorization? Each candidate score's Spearman correlation with the
Feldman-Zhang reference, over all instances and over the candidate's own top 10%, next to the
ceiling the reference's reliability allows (:func:`memlab.studies.feldman_zhang.attenuation_ceiling`),
and the share of the reference's top 10% that the candidate's top 10% recovers — with, when a ``loss``
candidate is there, the difference to the loss and its 95% interval from a paired bootstrap over
instances (is the score more than the loss?). Pure pandas (its figures: :mod:`memlab.report.study_figures`).

    table = validation_table(candidates, fz_scores, ceiling)
    # score,spearman_vs_fz,spearman_vs_fz_top10,ceiling,fz_top10_recovered,recovered_vs_loss,ci_low,ci_high
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .feldman_zhang import spearman_against
from .ranking import top_count

COLUMNS = ["score", "spearman_vs_fz", "spearman_vs_fz_top10", "ceiling",
           "fz_top10_recovered", "recovered_vs_loss", "ci_low", "ci_high"]
BASELINE = "loss"  # the score a memorization score has to beat


def score_columns(candidates: pd.DataFrame) -> list[str]:
    return [c for c in candidates.columns if c != "sample_index"]


def validation_table(candidates: pd.DataFrame, fz: pd.DataFrame, ceiling: float, top_pct: float = 10) -> pd.DataFrame:
    """One row per candidate (a column of ``candidates`` beside ``sample_index``; higher = more
    memorized), in the candidates' order."""
    names = score_columns(candidates)
    recovered = recovery_vs_baseline(candidates, fz, top_pct)
    rows = []
    for name in names:
        rho = spearman_against(candidates[["sample_index", name]], fz, top_pct=top_pct, score_column=name)
        rows.append({"score": name, "spearman_vs_fz": rho["overall"], "spearman_vs_fz_top10": rho["top"],
                     "ceiling": float(ceiling), **recovered[name]})
    return pd.DataFrame(rows, columns=COLUMNS)


def top_recovered(score: np.ndarray, reference: np.ndarray, top_pct: float = 10) -> float:
    """Share of the ``reference``'s top ``top_pct`` % that ``score``'s top ``top_pct`` % holds (ties:
    earlier instances first, as :func:`memlab.studies.ranking.rank_by_memorization` with instances in
    ``sample_index`` order)."""
    k = top_count(len(score), top_pct, at_least_one=True)
    mine = np.argsort(-score, kind="stable")[:k]
    theirs = np.argsort(-reference, kind="stable")[:k]
    return len(np.intersect1d(mine, theirs)) / k


def recovery_vs_baseline(candidates: pd.DataFrame, fz: pd.DataFrame, top_pct: float = 10,
                         resamples: int = 200, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per candidate: ``fz_top10_recovered`` and, when a ``loss`` column is there, ``recovered_vs_loss``
    with the 2.5 / 97.5 percentiles of the same difference over ``resamples`` paired bootstrap draws
    of the instances (``ci_low``, ``ci_high``; the instances the reference has no estimate for are
    left out). A score measures more than the loss where the whole interval lies above 0."""
    merged = candidates.merge(fz[["sample_index", "fz_mem"]], on="sample_index").dropna(subset=["fz_mem"])
    merged = merged.sort_values("sample_index", kind="mergesort")
    names = score_columns(candidates)
    values = {n: merged[n].to_numpy(dtype=float) for n in names}
    reference = merged["fz_mem"].to_numpy(dtype=float)
    point = {n: top_recovered(values[n], reference, top_pct) for n in names}
    nan = float("nan")
    if BASELINE not in values or len(reference) < 3:
        return {n: {"fz_top10_recovered": point[n], "recovered_vs_loss": nan, "ci_low": nan, "ci_high": nan}
                for n in names}
    rng = np.random.default_rng(seed)
    draws = {n: [] for n in names}
    for _ in range(resamples):
        idx = np.sort(rng.integers(0, len(reference), len(reference)))
        base = top_recovered(values[BASELINE][idx], reference[idx], top_pct)
        for n in names:
            draws[n].append(top_recovered(values[n][idx], reference[idx], top_pct) - base)
    out = {}
    for n in names:
        low, high = np.percentile(draws[n], [2.5, 97.5])
        out[n] = {"fz_top10_recovered": point[n], "recovered_vs_loss": point[n] - point[BASELINE],
                  "ci_low": float(low), "ci_high": float(high)}
    return out
