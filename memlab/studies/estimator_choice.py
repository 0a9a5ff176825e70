"""Which memorization estimator to use, from the numbers of a validation against Feldman-Zhang: per
data set the leader (highest Spearman with the reference), the candidates tied with it within noise,
those clearly worse, and the cheapest of the tied ones; across data sets the one estimator to use; and
the instances on which the two leading estimators disagree most. Pure pandas.

    table    score, spearman, spearman_ci_low, spearman_ci_high, diff_ci_low, diff_ci_high, cost
             (:func:`memlab.studies.validation.spearman_intervals` plus ``cost`` in training epochs, NaN unknown)
    v = verdict(table)            # Verdict(leader, tied, worse, recommended, basis)
    overall_choice({name: (table, v), ...})
    leader_disagreements(scores, "a", "b", n=5)

Tied means: the 95% paired-bootstrap interval of the difference to the leader holds 0 (``basis`` =
``paired``). Where only each candidate's own interval is known (an archived run without the paired
difference), tied means its interval reaches the leader's (``overlap``, a looser test that ties more).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd


@dataclasses.dataclass(frozen=True)
class Verdict:
    leader: str | None
    tied: tuple[str, ...]   # tied with the leader within noise, best first (the leader not among them)
    worse: tuple[str, ...]  # clearly below the leader, best first
    recommended: str | None  # the cheapest of the leader and the tied ones with a known cost; else the leader
    basis: str  # "paired" (difference intervals), "overlap" (own intervals), "none" (no interval: nothing tested)

    @property
    def top(self) -> tuple[str, ...]:
        """The leader and the estimators tied with it."""
        return ((self.leader,) if self.leader else ()) + self.tied


def _finite(table: pd.DataFrame, column: str) -> pd.Series:
    if column not in table:
        return pd.Series(False, index=table.index)
    return pd.Series(np.isfinite(pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)), index=table.index)


def verdict(table: pd.DataFrame) -> Verdict:
    """The verdict of one data set's table (see the module docstring); rows with no Spearman take no part."""
    ranked = table[_finite(table, "spearman")].sort_values("spearman", ascending=False, kind="stable")
    if ranked.empty:
        return Verdict(None, (), (), None, "none")
    leader, others = ranked.iloc[0], ranked.iloc[1:]
    name = str(leader["score"])
    if others.empty:
        return Verdict(name, (), (), name, "paired")
    if _finite(others, "diff_ci_high").any():
        basis, known = "paired", _finite(others, "diff_ci_high")
        tied_mask = others["diff_ci_high"] >= 0
    elif _finite(others, "spearman_ci_high").any() and np.isfinite(float(leader.get("spearman_ci_low", np.nan))):
        basis, known = "overlap", _finite(others, "spearman_ci_high")
        tied_mask = others["spearman_ci_high"] >= leader["spearman_ci_low"]
    else:
        return Verdict(name, (), (), name, "none")
    tied = tuple(others.loc[known & tied_mask, "score"].astype(str))
    worse = tuple(others.loc[known & ~tied_mask, "score"].astype(str))  # an estimator without an interval: neither
    top = ranked[ranked["score"].astype(str).isin((name,) + tied)]
    priced = top[_finite(top, "cost")].sort_values(["cost", "spearman"], ascending=[True, False], kind="stable")
    return Verdict(name, tied, worse, str(priced.iloc[0]["score"]) if len(priced) else name, basis)


def overall_choice(results: dict[str, tuple[pd.DataFrame, Verdict]]) -> dict:
    """The estimator to use across data sets: the one in the leading group (leader or tied) on the most
    data sets; among those the lowest median cost (unknown last), then the highest mean Spearman ÷
    ceiling (``ratio`` column). Returns ``name`` (None without any verdict), ``top_on`` (its data sets
    in the leading group), ``costs`` and ``ratios`` (per data set, NaN unknown), and ``always_worse``
    (estimators clearly worse on every data set where they were tested)."""
    counts: dict[str, list[str]] = {}
    for name, (_, v) in results.items():
        for score in v.top:
            counts.setdefault(score, []).append(name)
    if not counts:
        return {"name": None, "top_on": [], "costs": {}, "ratios": {}, "always_worse": []}

    def value(score: str, column: str) -> dict[str, float]:
        out = {}
        for name, (table, _) in results.items():
            row = table[table["score"].astype(str) == score]
            out[name] = float(row[column].iloc[0]) if len(row) and column in row and pd.notna(row[column].iloc[0]) else np.nan
        return out

    def order(score: str):
        costs = [c for c in value(score, "cost").values() if np.isfinite(c)]
        ratios = [r for r in value(score, "ratio").values() if np.isfinite(r)]
        return (-len(counts[score]), float(np.median(costs)) if costs else np.inf,
                -float(np.mean(ratios)) if ratios else np.inf, score)

    best = min(counts, key=order)
    tested = {}
    for _, (_, v) in results.items():
        if v.basis == "none":
            continue
        for score in v.top:
            tested.setdefault(score, []).append(False)
        for score in v.worse:
            tested.setdefault(score, []).append(True)
    always_worse = sorted(s for s, worse in tested.items() if all(worse))
    return {"name": best, "top_on": counts[best], "costs": value(best, "cost"), "ratios": value(best, "ratio"),
            "always_worse": always_worse}


TEXT_COLUMNS = ("text", "sentence", "premise", "hypothesis")


def estimator_family(score: str) -> str:
    """What kind of estimator a candidate column is, its settings dropped: ``loo_score@damping_rel=0.1`` and
    ``mem_score@study(...)`` are self-influence, ``trak_loo@M=5`` is TRAK, ``1-P(y|x)`` is the loss."""
    name = score.split("@")[0]
    if name in ("mem_score", "loo_score"):
        return "self-influence"
    if name.startswith("trak"):
        return "trak"
    return {"1-P(y|x)": "loss"}.get(name, name)


def leading_rivals(ranked_scores: list[str]) -> tuple[str, str] | None:
    """The best estimator and the best one of another family (``ranked_scores`` best first): the pair whose
    disagreements say something (two dampings of one score mostly agree); None with fewer than two families."""
    if not ranked_scores:
        return None
    first = ranked_scores[0]
    other = next((s for s in ranked_scores[1:] if estimator_family(s) != estimator_family(first)), None)
    return (first, other) if other else None


def leader_disagreements(scores: pd.DataFrame, first: str, second: str, n: int = 5) -> pd.DataFrame:
    """The ``n`` instances whose rank percentiles (0-100, higher = more memorized; average ranks for ties)
    under ``first`` and ``second`` differ most: ``sample_index``, ``pct_<first>``, ``pct_<second>``,
    ``fz_mem``, ``label`` and the text column when ``scores`` has them (ties: smaller sample_index first)."""
    both = scores[np.isfinite(scores[first].to_numpy(dtype=float)) & np.isfinite(scores[second].to_numpy(dtype=float))]
    a, b = both[first].rank(pct=True) * 100, both[second].rank(pct=True) * 100
    out = pd.DataFrame({"sample_index": both["sample_index"], f"pct_{first}": a, f"pct_{second}": b,
                        "gap": (a - b).abs()})
    for column in ("fz_mem", "label", *TEXT_COLUMNS):
        if column in both:
            out[column] = both[column]
    out = out.sort_values(["gap", "sample_index"], ascending=[False, True], kind="stable").head(n)
    return out.drop(columns="gap").reset_index(drop=True)
