"""Write and show the removal sweep's report: removal_summary.csv, removal_stats.csv, removal_report.md,
removal.png, problems, W&B; the findings in words go to the log too."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from memlab.studies import save_csv, save_text

from .removal import aggregate_removal, collect_sweep, plot_removal
from .removal_stats import compare_to_random, removal_report, removal_stats, top_below_random

log = logging.getLogger("memlab")


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
    paths = {"summary": save_csv(summary, out / "removal_summary.csv"),
             "aggregate": save_csv(aggregate, out / "removal_aggregate.csv"),
             "stats": save_csv(removal_stats(summary), out / "removal_stats.csv"),
             "report": save_text(removal_report(summary), out / "removal_report.md"),
             "figure": plot_removal(aggregate, out / "removal.png", title=title, below_random=below)}
    if problems:
        paths["problems"] = save_text("\n".join(problems) + "\n", out / "removal_problems.txt")
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
    run = wandb.init(project="memlab", group=str(sweep_dir), name=f"removal-report-{sweep_dir.name}",
                     job_type="report", mode=os.environ.get("WANDB_MODE", "offline"), dir=str(sweep_dir),
                     reinit="finish_previous")
    try:
        run.log({"removal/summary": wandb.Table(dataframe=summary),
                 "removal/stats": wandb.Table(dataframe=pd.read_csv(paths["stats"])),
                 "removal/figure": wandb.Image(str(paths["figure"]))})
    finally:
        run.finish()
