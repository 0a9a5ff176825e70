"""The subsampling memorization estimator of Feldman & Zhang (2020), as a cross-check of the
self-influence score (the paper verifies on CIFAR-10 that both behave alike, Sec. 3.3).

Train K models, each on a random subset holding ``fraction`` of the training set; then for every
training instance i

    mem(i) = P[model k predicts y_i | i in subset_k] - P[model k predicts y_i | i not in subset_k],

each probability the empirical rate over the models that did (did not) see i. The training itself
is left to the caller: this module draws the subsets and turns the [K, N] outcome into scores.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def sample_subsets(n_examples_ids: int | Sequence[int], n_models: int, fraction: float = 0.7,
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


def _as_bool_array(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be [K, N], got shape {arr.shape}")
    return arr.astype(bool)


def fz_memorization(in_subset, correct, sample_index: Sequence[int] | None = None) -> pd.DataFrame:
    """Feldman & Zhang memorization from ``in_subset`` and ``correct``, both bool ``[K, N]``.

    ``correct[k, i]``: model k predicts instance i's label. Returns ``sample_index, fz_mem, n_in,
    n_out`` with fz_mem = P[correct | in] - P[correct | out], NaN where n_in or n_out is 0.
    ``sample_index`` defaults to 0..N-1.
    """
    in_subset = _as_bool_array(in_subset, "in_subset")
    correct = _as_bool_array(correct, "correct")
    if in_subset.shape != correct.shape:
        raise ValueError(f"in_subset {in_subset.shape} and correct {correct.shape} differ in shape")
    n_in = in_subset.sum(axis=0)
    n_out = (~in_subset).sum(axis=0)
    hits_in = (correct & in_subset).sum(axis=0)
    hits_out = (correct & ~in_subset).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_in = np.where(n_in > 0, hits_in / np.maximum(n_in, 1), np.nan)
        p_out = np.where(n_out > 0, hits_out / np.maximum(n_out, 1), np.nan)
    n = in_subset.shape[1]
    index = np.arange(n) if sample_index is None else np.asarray(sample_index)
    if len(index) != n:
        raise ValueError(f"sample_index has {len(index)} entries for {n} instances")
    return pd.DataFrame({"sample_index": index, "fz_mem": p_in - p_out,
                         "n_in": n_in.astype(int), "n_out": n_out.astype(int)})


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
    merged = merged.sort_values([score_column, "sample_index"], ascending=[False, True])
    n_top = min(len(merged), max(1, int(round(len(merged) * top_pct / 100.0)))) if len(merged) else 0
    top = merged.head(n_top)

    def rho(part: pd.DataFrame) -> float:
        if len(part) < 3 or part[score_column].nunique() < 2 or part["fz_mem"].nunique() < 2:
            return float("nan")
        return float(spearmanr(part[score_column], part["fz_mem"]).statistic)

    return {"overall": rho(merged), "top": rho(top), "n": int(len(merged)), "n_top": int(n_top)}
