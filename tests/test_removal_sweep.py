"""The removal study end to end: a tiny Hydra multirun in a subprocess writes the summary and the
figure, computes the ranking once, and reports a failing job instead of dying."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from conftest import ROOT


def sweep(tmp_path, *overrides):
    cmd = [sys.executable, "-m", "memlab", "experiment=smoke_removal", f"hydra.sweep.dir={tmp_path}/sweep",
           f"paths.cache_dir={tmp_path}/cache", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True,
                          text=True, timeout=600)


def test_tiny_removal_sweep(tmp_path):
    proc = sweep(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "sweep" / "removal_summary.csv")
    assert len(summary) == 4 and set(summary["strategy"]) == {"top", "random"}
    assert set(summary["removal_pct"]) == {0, 30}
    top30 = summary[(summary.strategy == "top") & (summary.removal_pct == 30)]
    assert top30["min_removed_score"].notna().all()
    assert (tmp_path / "sweep" / "removal.png").stat().st_size > 1000
    rankings = list((tmp_path / "cache" / "rankings").iterdir())
    assert len(rankings) == 1  # one ranking for the whole sweep
    assert (proc.stdout + proc.stderr).count("computing the memorization ranking") == 1
    # the removed instances really are the top-scored ones
    scores = pd.read_csv(rankings[0] / "memorization" / "scores.csv")
    assert top30["min_removed_score"].iloc[0] == scores["mem_score"].nlargest(29).min()


def test_failing_job_is_reported_not_fatal(tmp_path):
    # pct=150 is invalid: those jobs fail, the pct=0 jobs still finish, the report names the failures
    proc = sweep(tmp_path, "removal.pct=0,150", "removal.strategy=top")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(tmp_path / "sweep" / "removal_summary.csv")
    assert summary["removal_pct"].tolist() == [0]
    problems = (tmp_path / "sweep" / "removal_problems.txt").read_text()
    assert "failed" in problems and "pct" in problems
