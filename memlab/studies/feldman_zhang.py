"""The subsampling memorization estimator of Feldman & Zhang (2020), the reference a memorization
score is validated against, with its own error bars.

Train K models, each on a random subset holding ``fraction`` of the training set; then for every
training instance i, with o_k(i) an outcome of model k on i (P(y_i|x_i), or 1 if it predicts y_i),

    mem(i) = E[o_k(i) | i in subset_k] - E[o_k(i) | i not in subset_k],

each expectation the mean over the models that did (did not) see i, with the standard error of the
difference of two means. How far the estimate can be trusted as a whole is its split-half
reliability: the Spearman correlation between the estimates from two disjoint halves of the models,
Spearman-Brown corrected to K models. No score can agree with the reference better than
sqrt(reliability) (the correction for attenuation), which is the ceiling of a validation table.
The training itself is left to the caller: this module draws the subsets and turns the [K, N]
outcomes into scores. numpy / pandas / scipy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .ranking import rank_by_memorization, top_count


def sample_subsets(n_examples_ids: int | Sequence[int], n_models: int, fraction: float = 0.5,
                   seed: int = 0) -> np.ndarray:
    """Bool mask ``[K, N]``: row k marks the ``round(fraction * N)`` instances model k trains on.

    ``n_examples_ids`` is N or the sequence of the N sample indices (only its length matters; the
    columns follow its order). Each row is an independent uniform draw without replacement from
    ``numpy.random.default_rng(seed)``, so a seed gives the same masks on every machine.
    """
    n = int(n_examples_ids) if np.isscalar(n_examples_ids) else len(n_examples_ids)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    rng = np.random.default_rng(seed)
    m = int(round(fraction * n))
    mask = np.zeros((n_models, n), dtype=bool)
    for k in range(n_models):
        mask[k, rng.choice(n, size=m, replace=False)] = True
    return mask


def _as_matrix(x, name: str, dtype=float) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [K, N], got shape {arr.shape}")
    return arr.astype(dtype)


def fz_estimate(in_subset, outcome) -> dict[str, np.ndarray]:
    """Per instance ``mem`` (mean outcome in minus mean outcome out), its standard error ``se``
    (sqrt(var_in/n_in + var_out/n_out), sample variances), ``n_in`` and ``n_out``.

    ``in_subset`` bool and ``outcome`` (probabilities or 0/1) are ``[K, N]``. ``mem`` is NaN where
    n_in or n_out is 0, ``se`` where either is below 2.
    """
    inside = _as_matrix(in_subset, "in_subset", bool)
    values = _as_matrix(outcome, "outcome", float)
    if inside.shape != values.shape:
        raise ValueError(f"in_subset {inside.shape} and outcome {values.shape} differ in shape")
    n_in, n_out = inside.sum(axis=0), (~inside).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_in = np.where(n_in > 0, (values * inside).sum(axis=0) / n_in, np.nan)
        mean_out = np.where(n_out > 0, (values * ~inside).sum(axis=0) / n_out, np.nan)
        var_in = (((values - mean_in) ** 2) * inside).sum(axis=0) / (n_in - 1)
        var_out = (((values - mean_out) ** 2) * ~inside).sum(axis=0) / (n_out - 1)
        se = np.where((n_in > 1) & (n_out > 1), np.sqrt(var_in / n_in + var_out / n_out), np.nan)
    return {"mem": mean_in - mean_out, "se": se, "n_in": n_in.astype(int), "n_out": n_out.astype(int)}


def fz_memorization(in_subset, outcome, sample_index: Sequence[int] | None = None,
                    correct=None) -> pd.DataFrame:
    """Feldman & Zhang memorization of every instance from ``in_subset`` and ``outcome``, both ``[K, N]``.

    ``outcome[k, i]``: model k's P(y_i|x_i) (or its 0/1 correctness). Returns ``sample_index, fz_mem,
    fz_se, n_in, n_out`` (see :func:`fz_estimate`), plus ``fz_mem_correct, fz_se_correct`` from the
    0/1 ``correct`` matrix when given. ``sample_index`` defaults to 0..N-1.
    """
    main = fz_estimate(in_subset, outcome)
    n = len(main["mem"])
    index = np.arange(n) if sample_index is None else np.asarray(sample_index)
    if len(index) != n:
        raise ValueError(f"sample_index has {len(index)} entries for {n} instances")
    table = pd.DataFrame({"sample_index": index, "fz_mem": main["mem"], "fz_se": main["se"],
                          "n_in": main["n_in"], "n_out": main["n_out"]})
    if correct is not None:
        zero_one = fz_estimate(in_subset, correct)
        table["fz_mem_correct"], table["fz_se_correct"] = zero_one["mem"], zero_one["se"]
    return table


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """Reliability of a measurement ``factor`` times as long as one whose reliability is ``r``."""
    denominator = 1 + (factor - 1) * r
    return float(factor * r / denominator) if r == r and factor > 0 and denominator > 0 else float("nan")


def attenuation_ceiling(reliability: float) -> float:
    """The highest correlation any score can reach with a reference of this reliability:
    sqrt(reliability) (Spearman's correction for attenuation, for an error-free score)."""
    return float(np.sqrt(reliability)) if reliability == reliability and reliability > 0 else 0.0


def split_half_reliability(in_subset, outcome, n_splits: int = 20, seed: int = 0) -> dict:
    """Split-half reliability of the Feldman-Zhang estimate from K models.

    For each of ``n_splits`` seeded random splits of the models into two disjoint halves, the
    Spearman correlation of the two halves' estimates over the instances both can estimate; the
    mean of those correlations (``half``) is corrected by Spearman-Brown to the full K models
    (``reliability``). NaN below 4 models. Returns ``dict(reliability, half, half_sd, n_splits, n)``.
    """
    from scipy.stats import spearmanr

    inside = _as_matrix(in_subset, "in_subset", bool)
    values = _as_matrix(outcome, "outcome", float)
    k = inside.shape[0]
    nan = {"reliability": float("nan"), "half": float("nan"), "half_sd": float("nan"), "n_splits": 0, "n": 0}
    if k < 4:
        return nan
    rng = np.random.default_rng(seed)
    halves, counts = [], []
    for _ in range(n_splits):
        order = rng.permutation(k)
        first, second = order[: k // 2], order[k // 2: 2 * (k // 2)]
        a = fz_estimate(inside[first], values[first])["mem"]
        b = fz_estimate(inside[second], values[second])["mem"]
        both = np.isfinite(a) & np.isfinite(b)
        if both.sum() < 3 or np.ptp(a[both]) == 0 or np.ptp(b[both]) == 0:
            continue
        halves.append(float(spearmanr(a[both], b[both]).statistic))
        counts.append(int(both.sum()))
    if not halves:
        return nan
    half = float(np.mean(halves))
    return {"reliability": spearman_brown(half), "half": half, "half_sd": float(np.std(halves)),
            "n_splits": len(halves), "n": int(np.median(counts))}


def models_for_reliability(reliability: float, models: int, target: float) -> float:
    """How many models a reference of ``reliability`` from ``models`` models needs to reach ``target``
    (Spearman-Brown solved for the length factor); NaN when the reliability is not in (0, 1)."""
    if not (0 < reliability < 1 and 0 < target < 1):
        return float("nan")
    return float(models * target * (1 - reliability) / (reliability * (1 - target)))


def reliability_by_models(in_subset, outcome, model_counts: Sequence[int], n_splits: int = 20,
                          seed: int = 0) -> pd.DataFrame:
    """How the reference's split-half reliability grows with the number of models: for each k in
    ``model_counts`` (4 <= k <= K), :func:`split_half_reliability` of the first k models, beside the
    Spearman-Brown projection from all K (``projected``: what k models should give if the K-model
    value holds). Columns ``models, reliability, half, half_sd, projected``."""
    inside = _as_matrix(in_subset, "in_subset", bool)
    values = _as_matrix(outcome, "outcome", float)
    k_all = inside.shape[0]
    full = split_half_reliability(inside, values, n_splits, seed)["reliability"]
    rows = []
    for k in sorted({int(k) for k in model_counts if 4 <= int(k) <= k_all} | ({k_all} if k_all >= 4 else set())):
        r = split_half_reliability(inside[:k], values[:k], n_splits, seed)
        rows.append({"models": k, "reliability": r["reliability"], "half": r["half"], "half_sd": r["half_sd"],
                     "projected": spearman_brown(full, k / k_all) if full == full else float("nan")})
    return pd.DataFrame(rows, columns=["models", "reliability", "half", "half_sd", "projected"])


def spearman_against(scores_df: pd.DataFrame, fz_df: pd.DataFrame, top_pct: float = 10,
                     score_column: str = "mem_score") -> dict:
    """Spearman correlation of a memorization score with the Feldman-Zhang estimate.

    Aligned on ``sample_index``; instances with a NaN on either side are left out. ``overall`` over
    all of them, ``top`` over the top ``top_pct`` % by ``score_column`` (the instances the study
    cares about). Returns ``dict(overall, top, n, n_top)``; a correlation is NaN below 3 instances
    or when one side is constant.
    """
    from scipy.stats import spearmanr

    merged = scores_df[["sample_index", score_column]].merge(
        fz_df[["sample_index", "fz_mem"]], on="sample_index", how="inner").dropna()
    merged = rank_by_memorization(merged, score_column)
    n_top = top_count(len(merged), top_pct, at_least_one=True)
    top = merged.head(n_top)

    def rho(part: pd.DataFrame) -> float:
        if len(part) < 3 or part[score_column].nunique() < 2 or part["fz_mem"].nunique() < 2:
            return float("nan")
        return float(spearmanr(part[score_column], part["fz_mem"]).statistic)

    return {"overall": rho(merged), "top": rho(top), "n": int(len(merged)), "n_top": int(n_top)}
