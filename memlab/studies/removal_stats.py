"""Is removing the most memorized instances worse than removing random ones? The statistics of a
removal sweep (paper Fig. 1, with the intervals and the power the paper does not give).

**Paired by training seed.** For a strategy s and X > 0, the difference of training seed i is
``d_i = acc(s, X, seed i) - acc(random, X, seed i)``. Jobs of one seed share the initialisation and
the order of the data, so most of the seed-to-seed noise cancels in ``d_i``: a paired interval
can exclude 0 where the two strategies' own seed stds overlap. With several random draws
(``removal.draw_seed=0,1,2``) the random accuracy of seed i is first averaged over its draws, so
there is one pair per seed and n is the number of paired seeds (not seeds x draws).

**Interval.** ``mean(d) ± t_{1-α/2, n-1} · sd(d) / √n`` (Student t over seeds, α = 0.05: 95%).

**Power.** The minimum detectable effect, the smallest true paired difference that the sweep
finds (interval excluding 0) with probability ``power``, from the observed sd of the paired
differences and n seeds: ``MDE = (t_{1-α/2, n-1} + t_{power, n-1}) · sd(d) / √n`` (the usual
t approximation of the noncentral-t power of a two-sided one-sample t test; 80% power, α = 0.05).

Accuracies and differences are fractions, as in removal_summary.csv; the report shows them in
percentage points (pp).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as st

from .removal_selection import arm_labels, ordered_arms, with_defaults

STATS_COLUMNS = ["strategy", "removal_pct", "n_seeds", "mean_acc", "std_acc", "diff_vs_random", "ci_low", "ci_high"]
FULL = "full"  # the strategy label of X = 0 (every strategy's full-data run)
ALPHA, POWER = 0.05, 0.8


def per_seed_accuracy(summary: pd.DataFrame) -> pd.DataFrame:
    """One accuracy per (strategy, X, training seed): the mean over random draws (and over any
    repeated run). X = 0 rows, whatever their strategy, become strategy ``full``. Columns
    ``strategy, removal_pct, seed, test_acc, n_draws``."""
    if summary.empty:
        return pd.DataFrame(columns=["strategy", "removal_pct", "seed", "test_acc", "n_draws"])
    rows = with_defaults(summary)
    rows = rows.assign(strategy=arm_labels(rows))
    rows.loc[rows["removal_pct"] == 0, "strategy"] = FULL
    return (rows.groupby(["strategy", "removal_pct", "seed"], as_index=False)
            .agg(test_acc=("test_acc", "mean"), n_draws=("draw_seed", "nunique")))


def t_interval(values, alpha: float = ALPHA) -> tuple[float, float, float]:
    """(mean, low, high): the two-sided 1 - alpha Student-t interval of the mean; NaN bounds below 2 values."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(st.t.ppf(1 - alpha / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def minimum_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """(t_{1-α/2, n-1} + t_{power, n-1}) · sd / √n: the smallest paired mean difference a two-sided
    t test over n seeds with paired-difference std ``sd`` detects with probability ``power``."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    df = n - 1
    return float((st.t.ppf(1 - alpha / 2, df) + st.t.ppf(power, df)) * sd / math.sqrt(n))


def _verdict(n_pairs: int, low: float, high: float) -> str:
    if n_pairs < 2:
        return "too few paired seeds"
    if high < 0:
        return "below random"
    if low > 0:
        return "above random"
    return "no difference detected"


def _compare(arm: str, pct: float, acc: pd.Series, random_acc: pd.Series | None, alpha: float, power: float) -> dict:
    """One stats row: the arm's accuracy over seeds and, except for random itself, its paired difference."""
    row = {"strategy": arm, "removal_pct": float(pct), "n_seeds": int(len(acc)), "mean_acc": float(acc.mean()),
           "std_acc": float(acc.std(ddof=1)) if len(acc) > 1 else math.nan, "diff_vs_random": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "n_pairs": 0, "sd_diff": math.nan, "mde": math.nan,
           "verdict": ""}
    if random_acc is None or arm.startswith("random") or arm == FULL:
        return row
    diff = (acc - random_acc).dropna()  # aligned on the training seed: pairs only where both ran
    mean, low, high = t_interval(diff, alpha)
    sd = float(diff.std(ddof=1)) if len(diff) > 1 else math.nan
    row.update({"diff_vs_random": mean, "ci_low": low, "ci_high": high, "n_pairs": int(len(diff)), "sd_diff": sd,
                "mde": minimum_detectable_effect(sd, len(diff), alpha, power),
                "verdict": _verdict(len(diff), low, high)})
    return row


def compare_to_random(summary: pd.DataFrame, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """``STATS_COLUMNS`` plus ``n_pairs`` (seeds with both runs), ``sd_diff`` (sd of the paired
    differences), ``mde`` (minimum detectable effect) and ``verdict`` (``below random``, ``above
    random``, ``no difference detected``, ``too few paired seeds``), one row per strategy and X:
    ``full`` at X = 0 first, then top, bottom, random at each X > 0."""
    seeds = per_seed_accuracy(summary)
    by_seed = {key: g.set_index("seed")["test_acc"] for key, g in seeds.groupby(["strategy", "removal_pct"])}
    rows = [_compare(FULL, 0.0, by_seed[(FULL, 0.0)], None, alpha, power)] if (FULL, 0.0) in by_seed else []
    for pct in sorted({p for _, p in by_seed if p > 0}):
        random_acc = by_seed.get(("random", pct))
        rows += [_compare(arm, pct, by_seed[(arm, pct)], random_acc, alpha, power)
                 for arm in ordered_arms(a for a, p in by_seed if p == pct)]
    return pd.DataFrame(rows, columns=STATS_COLUMNS + ["n_pairs", "sd_diff", "mde", "verdict"])


def removal_stats(summary: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """removal_stats.csv: ``strategy, removal_pct, n_seeds, mean_acc, std_acc, diff_vs_random,
    ci_low, ci_high`` (``compare_to_random`` without the power columns)."""
    return compare_to_random(summary, alpha)[STATS_COLUMNS]


def top_below_random(comparison: pd.DataFrame) -> list[tuple[str, float]]:
    """(strategy, X) where removed-top is below random-removed with the interval excluding 0."""
    hits = comparison[comparison["strategy"].str.startswith("top") & (comparison["verdict"] == "below random")]
    return list(zip(hits["strategy"], hits["removal_pct"]))


def _pp(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:+.2f}"


def _sentence(row: pd.Series, alpha: float, power: float) -> str:
    """The finding at one X in words: the paired difference, its interval, and the sweep's power."""
    level = round(100 * (1 - alpha))
    head = (f"X = {row.removal_pct:g}%, {row.strategy} - random = {_pp(row.diff_vs_random)} pp "
            f"({level}% CI {_pp(row.ci_low)} to {_pp(row.ci_high)} pp, {row.n_pairs} paired seeds)")
    power_text = (f"the smallest difference this sweep detects with {power:.0%} power is {100 * row.mde:.2f} pp "
                  f"(paired sd {100 * row.sd_diff:.2f} pp)" if math.isfinite(row.mde) else "its power is unknown")
    if row.verdict == "too few paired seeds":
        return f"- {head}: not testable, fewer than 2 seeds ran both strategies."
    if row.verdict == "no difference detected":
        return f"- {head}: no effect detected; {power_text}."
    return f"- {head}: detected, {row.strategy}-removed {row.verdict}; {power_text}."


def removal_report(summary: pd.DataFrame, alpha: float = ALPHA, power: float = POWER) -> str:
    """removal_report.md: the setting, one sentence per strategy and X, and the stats table."""
    summary = with_defaults(summary)
    comparison = compare_to_random(summary, alpha, power)
    scores = ", ".join(f"`{s}`" for s in sorted(set(summary["score"]))) or "n/a"
    random_jobs = summary[(summary["strategy"] == "random") & (summary["removal_pct"] > 0)]
    # draws per training seed (a sweep may also give each seed its own draw: removal.draw_seed=${seed})
    draws = int(random_jobs.groupby(["removal_pct", "seed"])["draw_seed"].nunique().max()) if len(random_jobs) else 0
    lines = ["# Removal study: statistics", "",
             f"Ranked by {scores}; {summary['seed'].nunique()} training seeds; random-removed: {draws} draw(s) "
             "per seed, averaged per seed before pairing.",
             f"Differences to random-removed are paired by training seed, with a {round(100 * (1 - alpha))}% "
             f"Student-t interval over seeds; power: minimum detectable effect at {power:.0%} power, "
             f"α = {alpha:g}, two-sided, MDE = (t(1-α/2, n-1) + t(power, n-1)) · sd(d) / √n.", ""]
    tested = comparison[comparison["verdict"] != ""]
    lines += [_sentence(row, alpha, power) for row in tested.itertuples()] or ["- nothing to compare: "
                                                                               "no X with both a strategy and random"]
    lines += ["", "| strategy | X% | seeds | mean acc | std | diff vs random (pp) | CI low | CI high | MDE (pp) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in comparison.itertuples():
        std = f"{100 * row.std_acc:.2f}" if math.isfinite(row.std_acc) else "n/a"
        mde = f"{100 * row.mde:.2f}" if math.isfinite(row.mde) else ""
        lines.append(f"| {row.strategy} | {row.removal_pct:g} | {row.n_seeds} | {100 * row.mean_acc:.2f} | {std} | "
                     f"{_pp(row.diff_vs_random)} | {_pp(row.ci_low)} | {_pp(row.ci_high)} | {mde} |")
    return "\n".join(lines) + "\n"
