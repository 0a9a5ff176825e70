"""Write and show the removal sweep's report: removal_summary.csv, removal_stats.csv, removal_report.md,
removal.png (Fig. 1), problems, W&B; the findings in words go to the log too. The numbers come from
:mod:`memlab.studies.removal_selection` and :mod:`memlab.studies.removal_stats`."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..studies.removal_selection import DEFAULT_SCORE, aggregate_removal, collect_sweep
from ..studies.removal_stats import compare_to_random, removal_report, removal_stats, top_below_random
from ..utils.io import atomic_write_csv, atomic_write_text
from .figures import new_figure, save_figure

log = logging.getLogger("memlab")


_COLORS = {"top": "tab:red", "bottom": "tab:green", "random": "tab:blue"}
_LABELS = {"top": "memorized (top-X%) removed", "bottom": "least memorized removed",
           "random": "random removed"}


def _label(arm: str) -> str:
    base, _, score = arm.partition("[")
    return _LABELS.get(base, base) + (f" by {score.rstrip(']')}" if score else "")


def plot_removal(aggregate: pd.DataFrame, path: str | os.PathLike, title: str | None = None,
                 below_random: Sequence[tuple[str, float]] = ()):
    """Fig. 1: top panel mean ± std test accuracy vs X% per strategy (error bars and a shaded
    band), with a star on each ``(strategy, X)`` of ``below_random`` (removed-top below
    random-removed, 95% interval excluding 0); bottom panel the lowest memorization score among
    the removed top-X%."""
    fig, axes = new_figure(2, 1, figsize=(6.0, 6.0), sharex=True,
                           gridspec_kw={"height_ratios": [2, 1]})
    ax_acc, ax_score = axes[0, 0], axes[1, 0]
    for strategy, g in aggregate.groupby("strategy", sort=False):
        g = g.sort_values("removal_pct")
        x, mean, std = g["removal_pct"], g["test_acc_mean"], g["test_acc_std"]
        color = _COLORS.get(strategy.split("[")[0], None)
        ax_acc.errorbar(x, mean, yerr=std, marker="o", capsize=3, color=color, label=_label(strategy))
        ax_acc.fill_between(x, mean - std, mean + std, color=color, alpha=0.15)
    marked = aggregate.set_index(["strategy", "removal_pct"])["test_acc_mean"]
    points = [(pct, marked[(arm, pct)]) for arm, pct in below_random if (arm, pct) in marked.index]
    if points:
        ax_acc.scatter(*zip(*points), marker="*", s=220, color="gold", edgecolors="black", zorder=5,
                       label="top below random (paired 95% CI excludes 0)")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title(title or "Removal study (Fig. 1): test accuracy after removing X% of the training set",
                     fontsize=10)
    if len(aggregate):
        ax_acc.legend(fontsize=8)
    else:
        ax_acc.text(0.5, 0.5, "no finished removal jobs", ha="center", va="center",
                    transform=ax_acc.transAxes)
    scores = ",".join(sorted(set(aggregate["score"]))) or DEFAULT_SCORE
    for _, top in aggregate[aggregate["strategy"].str.startswith("top") & (aggregate["removal_pct"] > 0)
                                   ].dropna(subset=["min_removed_score"]).groupby("strategy", sort=False):
        top = top.sort_values("removal_pct")
        ax_score.plot(top["removal_pct"], top["min_removed_score"], marker="s", color="tab:red")
    ax_score.set_ylabel(f"lowest removed\n{scores}")
    ax_score.set_xlabel("X% of training instances removed")
    return save_figure(fig, path)


def write_removal_summary(sweep_dir: str | os.PathLike, scores_df: pd.DataFrame | None = None,
                          out_dir: str | os.PathLike | None = None, title: str | None = None
                          ) -> dict[str, Path]:
    """Collect a sweep and write, into ``out_dir`` (default ``sweep_dir``): ``removal_summary.csv``
    (one row per job), ``removal_aggregate.csv`` (mean ± std per strategy and X%),
    ``removal_stats.csv`` (paired differences to random with 95% intervals), ``removal_report.md``
    (the findings in words, with the sweep's power), ``removal.png`` (Fig. 1) and, when any,
    ``removal_problems.txt``. Returns the paths by kind (``summary``, ``aggregate``, ``stats``,
    ``report``, ``figure``, ``problems``)."""
    summary, problems = collect_sweep(sweep_dir, scores_df)
    out = Path(out_dir) if out_dir is not None else Path(sweep_dir)
    aggregate = aggregate_removal(summary)
    below = top_below_random(compare_to_random(summary))
    paths = {"summary": atomic_write_csv(summary, out / "removal_summary.csv"),
             "aggregate": atomic_write_csv(aggregate, out / "removal_aggregate.csv"),
             "stats": atomic_write_csv(removal_stats(summary), out / "removal_stats.csv"),
             "report": atomic_write_text(out / "removal_report.md", removal_report(summary)),
             "figure": plot_removal(aggregate, out / "removal.png", title=title, below_random=below)}
    if problems:
        paths["problems"] = atomic_write_text(out / "removal_problems.txt", "\n".join(problems) + "\n")
    elif (out / "removal_problems.txt").exists():
        os.unlink(out / "removal_problems.txt")  # a stale list from an earlier collection
    return paths


def report_removal_sweep(sweep_dir: Path, log_wandb: bool = True) -> dict[str, Path]:
    paths = write_removal_summary(sweep_dir, title=f"removal study: {sweep_dir.name}")
    summary = pd.read_csv(paths["summary"])
    log.info("removal summary (%d jobs) -> %s", len(summary), paths["summary"])
    for line in Path(paths["report"]).read_text().splitlines():
        if line.startswith("- "):  # the findings, one per strategy and X, with the sweep's power
            log.info("removal study: %s", line[2:])
    log.info("removal statistics -> %s, %s", paths["stats"], paths["report"])
    if "problems" in paths:
        for line in Path(paths["problems"]).read_text().splitlines():
            log.warning("removal sweep: %s", line)
    if log_wandb and os.environ.get("WANDB_MODE", "offline") != "disabled":
        _log_wandb(sweep_dir, paths, summary)
    return paths


def _log_wandb(sweep_dir: Path, paths: dict, summary: pd.DataFrame) -> None:
    try:
        import wandb
    except ImportError:
        return
    from .wandb_run import sweep_group

    run = wandb.init(project="memlab", group=sweep_group(sweep_dir), name=f"removal-report-{sweep_dir.name}",
                     job_type="report", mode=os.environ.get("WANDB_MODE", "offline"), dir=str(sweep_dir),
                     reinit="finish_previous")
    try:
        run.log({"removal/summary": wandb.Table(dataframe=summary),
                 "removal/stats": wandb.Table(dataframe=pd.read_csv(paths["stats"])),
                 "removal/figure": wandb.Image(str(paths["figure"]))})
    finally:
        run.finish()
