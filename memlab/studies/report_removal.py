"""Write and show the removal sweep's report: removal_summary.csv, removal_stats.csv, removal_report.md,
removal.png, problems, W&B; the findings in words go to the log too."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from .removal import write_removal_summary

log = logging.getLogger("memlab")


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
