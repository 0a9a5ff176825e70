"""Is the score more than the loss? The numbers of diagnostics.json: how much a memorization ranking
differs from the plain per-instance loss and from the gradient-norm baseline, the model's accuracy on
its own most memorized instances, and where the damping sits relative to the curvature spectrum (a λ
far above the mean eigenvalue turns (H + λI)⁻¹ into a scaled identity).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .ranking import nonfinite_count, rank_by_memorization, top_count


def spearman(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def memorized_subset_accuracy(scores: pd.DataFrame, pct: float = 10) -> dict:
    """The trained model's accuracy, mean(prediction == label), on its own top-``pct``% training
    instances (the table's default ranking, ``loo_score`` else ``mem_score``) and on the bottom-``pct``%
    (the study: 27% on SST-2's top-10%).
    Ordered by :func:`memlab.studies.ranking.rank_by_memorization` (ties: smaller sample_index first),
    so ``top10`` is the set a top-10% removal drops. Empty when the table has no ``prediction``/``label`` column."""
    if not {"prediction", "label"} <= set(scores.columns):
        return {}
    m = top_count(len(scores), pct)
    out = {}
    for name, ascending in (("top", False), ("bottom", True)):
        subset = rank_by_memorization(scores, None, ascending).head(m)
        correct = subset["prediction"].to_numpy() == subset["label"].to_numpy()
        out[f"{name}{pct:g}_train_acc"] = float(correct.mean()) if m else float("nan")
    return out


def score_diagnostics(scores: pd.DataFrame, solver_info: dict, other: pd.DataFrame | None = None,
                      other_name: str | None = None) -> dict:
    """diagnostics.json: rank agreement with the loss / identity solver / another solver, how many
    scores are not finite, zero fraction, accuracy on the top/bottom-10% memorized
    (``top10_train_acc``), and λ in absolute terms and relative to the mean and top eigenvalue of H."""
    s = scores["mem_score"].to_numpy(float)
    finite = np.abs(s[np.isfinite(s)])
    scale = finite.max() if len(finite) else 0.0
    resolution = np.finfo(np.float32).eps * max(scale, np.finfo(np.float32).tiny)
    out = {
        "n": int(len(s)),
        # inf/NaN scores (a numerical failure): ranked last, never among the most or least memorized
        "nonfinite_scores": nonfinite_count(scores),
        "spearman_vs_loss": spearman(s, scores["loss"]),
        "spearman_vs_identity": spearman(s, scores["prob"] * scores["grad_norm_sq"]),
        # exactly 0 (or below float32's smallest normal): the ranking among them is arbitrary
        "zero_fraction": float(np.mean(np.abs(s) <= np.finfo(np.float32).tiny)) if len(s) else float("nan"),
        # below float32 resolution relative to the largest score: ordered, but indistinguishable from
        # 0 next to the top (confidently fitted instances; the scores span many orders of magnitude)
        "negligible_fraction": float(np.mean(np.abs(s) <= resolution)) if len(s) else float("nan"),
        "negative_fraction": float(np.mean(s < 0)) if len(s) else float("nan"),
    }
    if "loo_score" in scores:
        # the solver's H lacked each instance's own term, added back (with_own_term): how much it
        # changed the score; shrink > 2 means the own term dominates (the score then follows n·(1 − P))
        loo = scores["loo_score"].to_numpy(float)
        shrink = np.divide(loo, s, out=np.ones_like(loo), where=s != 0)
        out["spearman_loo_vs_loss"] = spearman(loo, scores["loss"])
        out["spearman_vs_loo"] = spearman(s, loo)
        out["own_term_median_shrink"] = float(np.median(shrink)) if len(s) else float("nan")
        out["own_term_dominant_fraction"] = float(np.mean(shrink > 2)) if len(s) else float("nan")
    out.update(memorized_subset_accuracy(scores))
    solver = solver_info.get("solver", {})
    spectrum = solver_info.get("spectrum") or {}
    damping = solver.get("damping")
    out["solver"] = solver.get("solver")
    out["damping"] = damping
    out["eigenvalue_mean"] = spectrum.get("mean")
    out["eigenvalue_top"] = spectrum.get("top")
    if damping is not None and spectrum.get("mean"):
        out["damping_rel_mean"] = damping / spectrum["mean"]
    if damping is not None and spectrum.get("top"):
        out["damping_rel_top"] = damping / spectrum["top"]
    if other is not None:
        merged = scores.merge(other[["sample_index", "mem_score"]], on="sample_index", suffixes=("", "_other"))
        out[f"spearman_vs_{other_name or 'other'}"] = spearman(merged["mem_score"], merged["mem_score_other"])
    return out
