"""Does a score measure memorization? Each candidate score's Spearman correlation with the
Feldman-Zhang reference, over all instances and over the candidate's own top 10%, next to the
ceiling the reference's reliability allows (:func:`memlab.studies.feldman_zhang.attenuation_ceiling`),
and the share of the reference's top 10% that the candidate's top 10% recovers — with, when a ``loss``
candidate is there, the difference to the loss and its 95% interval from a paired bootstrap over
instances (is the score more than the loss?), and what each costs: ``seconds`` beyond the training run and
``cost_epochs``, those seconds in units of the scored model's mean training epoch (``seconds["epoch"]``).
Each Spearman carries its 95% bootstrap interval over
instances, and :func:`spearman_intervals` also gives each candidate's paired-bootstrap difference to the
best one (is it tied with the leader within noise?). Pure pandas (its figures: :mod:`memlab.report.study_figures`).

    table = validation_table(candidates, fz_scores, ceiling, seconds=seconds)
    # score,spearman_vs_fz,spearman_ci_low,spearman_ci_high,spearman_vs_fz_top10,ceiling,fz_top10_recovered,
    # recovered_vs_loss,ci_low,ci_high,seconds,cost_epochs
    spearman_intervals(candidates, fz_scores)  # + diff_vs_best, diff_ci_low, diff_ci_high

The bootstrap ranks once: a resample's Spearman is the Pearson correlation of the full-sample ranks
(average ranks for ties) over the resampled instances, counted with their multiplicity. That differs
from re-ranking each resample by O(1/n) and lets every resample of every candidate be six matrix
products (10k instances x 25 candidates x 200 resamples: well under a second).
"""
from __future__ import annotations

import warnings
from typing import Mapping

import numpy as np
import pandas as pd

from .feldman_zhang import spearman_against
from .ranking import top_count

COLUMNS = ["score", "spearman_vs_fz", "spearman_ci_low", "spearman_ci_high", "spearman_vs_fz_top10", "ceiling",
           "fz_top10_recovered", "recovered_vs_loss", "ci_low", "ci_high",
           "seconds", "cost_epochs"]
BASELINE = "loss"  # the score a memorization score has to beat


def score_columns(candidates: pd.DataFrame) -> list[str]:
    return [c for c in candidates.columns if c != "sample_index"]


def validation_table(candidates: pd.DataFrame, fz: pd.DataFrame, ceiling: float, top_pct: float = 10,
                     resamples: int = 200, seed: int = 0, seconds: Mapping[str, float] | None = None,
                     intervals: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per candidate (a column of ``candidates`` beside ``sample_index``; higher = more
    memorized), in the candidates' order; ``seconds``: each candidate's cost and ``"epoch"``
    (:func:`cost_columns`); ``intervals``: :func:`spearman_intervals` when the caller has them already."""
    names = score_columns(candidates)
    recovered = recovery_vs_baseline(candidates, fz, top_pct, resamples, seed)
    if intervals is None:
        intervals = spearman_intervals(candidates, fz, resamples, seed)
    intervals = intervals.set_index("score")
    rows = []
    for name in names:
        rho = spearman_against(candidates[["sample_index", name]], fz, top_pct=top_pct, score_column=name)
        rows.append({"score": name, "spearman_vs_fz": rho["overall"],
                     "spearman_ci_low": intervals.loc[name, "spearman_ci_low"],
                     "spearman_ci_high": intervals.loc[name, "spearman_ci_high"], "spearman_vs_fz_top10": rho["top"],
                     "ceiling": float(ceiling), **recovered[name],
                     **cost_columns(name, seconds or {})})
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


INTERVAL_COLUMNS = ["score", "spearman", "spearman_ci_low", "spearman_ci_high", "diff_vs_best", "diff_ci_low",
                    "diff_ci_high"]


def _ranks_and_mask(candidates: pd.DataFrame, fz: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate (columns): its ranks, the reference's ranks over the same instances (both centred;
    average ranks for ties) and the 0/1 mask of instances where both are finite; rows are the instances
    the reference estimates, in ``sample_index`` order."""
    from scipy.stats import rankdata

    merged = candidates.merge(fz[["sample_index", "fz_mem"]], on="sample_index")
    merged = merged[np.isfinite(merged["fz_mem"].to_numpy(dtype=float))].sort_values("sample_index", kind="mergesort")
    names = score_columns(candidates)
    reference = merged["fz_mem"].to_numpy(dtype=float)
    shape = (len(merged), len(names))
    score_ranks, reference_ranks, mask = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for j, name in enumerate(names):
        values = merged[name].to_numpy(dtype=float)
        valid = np.isfinite(values)
        middle = (valid.sum() + 1) / 2  # centred ranks: the sums below stay small (no cancellation)
        score_ranks[valid, j] = rankdata(values[valid]) - middle
        reference_ranks[valid, j] = rankdata(reference[valid]) - middle
        mask[valid, j] = 1.0
    return names, score_ranks, reference_ranks, mask


def _weighted_correlation(weights: np.ndarray, x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x[:, j]`` and ``y[:, j]`` over the rows where ``mask[:, j]``, each row
    counted ``weights[b, row]`` times: ``[B, C]`` (NaN where a side is constant or fewer than 3 rows)."""
    n = weights @ mask
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_x, mean_y = (weights @ (mask * x)) / n, (weights @ (mask * y)) / n
        cov = (weights @ (mask * x * y)) / n - mean_x * mean_y
        var_x = (weights @ (mask * x * x)) / n - mean_x ** 2
        var_y = (weights @ (mask * y * y)) / n - mean_y ** 2
        rho = cov / np.sqrt(var_x * var_y)
    tiny = 1e-12 * np.maximum((weights @ (mask * x * x)) / n, 1.0)  # a constant side: variance is rounding
    return np.where((n >= 3) & (var_x > tiny) & (var_y > tiny), rho, np.nan)


def spearman_bootstrap(candidates: pd.DataFrame, fz: pd.DataFrame, resamples: int = 200,
                       seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The candidates' names, their Spearman with ``fz_mem`` (``[C]``) and the same over ``resamples``
    bootstrap resamples of the instances (``[resamples, C]``): one seeded draw of instance indices,
    ``default_rng(seed).integers(0, n, (resamples, n))``, shared by every candidate (paired)."""
    names, x, y, mask = _ranks_and_mask(candidates, fz)
    n = len(x)
    point = _weighted_correlation(np.ones((1, n)), x, y, mask)[0]
    if n == 0 or resamples < 1:
        return names, point, np.full((0, len(names)), np.nan)
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    counts = np.bincount((draws + n * np.arange(resamples)[:, None]).ravel(), minlength=resamples * n)
    return names, point, _weighted_correlation(counts.reshape(resamples, n).astype(float), x, y, mask)


def _percentiles(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 50 * (1 - level)
    if values.shape[0] == 0:
        empty = np.full(values.shape[1], np.nan)
        return empty, empty.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a candidate with no finite draw: NaN, no warning
        low, high = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return low, high


def spearman_intervals(candidates: pd.DataFrame, fz: pd.DataFrame, resamples: int = 200, seed: int = 0,
                       level: float = 0.95) -> pd.DataFrame:
    """``INTERVAL_COLUMNS``, one row per candidate in their order: its Spearman with the reference and
    the ``level`` percentile interval over the paired bootstrap (:func:`spearman_bootstrap`), and its
    difference to the candidate with the highest Spearman (``diff_vs_best``, 0 for that one) with the
    interval of the same difference over the same resamples: a candidate whose interval holds 0 is tied
    with the best within noise, one whose interval lies below 0 is worse."""
    names, point, draws = spearman_bootstrap(candidates, fz, resamples, seed)
    low, high = _percentiles(draws, level)
    if np.isfinite(point).any():
        best = int(np.nanargmax(point))
        diff_low, diff_high = _percentiles(draws - draws[:, [best]], level)
        diff = point - point[best]
    else:
        diff = diff_low = diff_high = np.full(len(names), np.nan)
    return pd.DataFrame({"score": names, "spearman": point, "spearman_ci_low": low, "spearman_ci_high": high,
                         "diff_vs_best": diff, "diff_ci_low": diff_low, "diff_ci_high": diff_high},
                        columns=INTERVAL_COLUMNS)


def cost_columns(name: str, seconds: Mapping[str, float]) -> dict[str, float]:
    """``seconds`` (the score's cost beyond the training run) and ``cost_epochs`` (the same in units of
    the scored model's mean training-epoch seconds, ``seconds["epoch"]``); NaN where not measured."""
    own, epoch = float(seconds.get(name, np.nan)), float(seconds.get("epoch", np.nan))
    return {"seconds": own, "cost_epochs": own / epoch if epoch > 0 else float("nan")}
