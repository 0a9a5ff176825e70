"""The removal study end to end: a tiny Hydra multirun in a subprocess writes the summary and the
figure, computes the ranking once, and reports a failing job instead of dying."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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
    # each value alone is fine (the sweep's own check passes), one combination is not: ranking by
    # loo_score needs a solver with the own term, and smoke_removal's identity solver has none; so the
    # top/loo_score job fails, the others finish (at X = 0: one training and its duplicates), and the
    # report names the failure
    proc = sweep(tmp_path, "removal.pct=0", "removal.strategy=random,top", "removal.score=mem_score,loo_score")
    assert proc.returncode == 1, proc.stderr[-3000:]  # the sweep ran on, and says at the end that it failed
    summary = pd.read_csv(tmp_path / "sweep" / "removal_summary.csv")
    assert summary["removal_pct"].tolist() == [0] * len(summary) and len(summary) >= 1
    problems = (tmp_path / "sweep" / "removal_problems.txt").read_text()
    assert "failed" in problems and "loo_score" in problems


def test_bad_value_stops_the_sweep_before_any_job(tmp_path):
    # the command: one bad value among 2 x 2 x 2 jobs; checked once, before the first job
    started = time.perf_counter()
    proc = sweep(tmp_path, "removal.pct=0,150", "seed=0,1")
    assert proc.returncode == 1 and time.perf_counter() - started < 60  # no job composed or run: imports only
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: removal.pct=150 is out of range; allowed: a number from 0 to 100 "
                      "(checked before the sweep; no job ran)"]
    assert proc.stderr.count("removal.pct=150") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "sweep").exists()  # no job folder, no job_failed.json, no summary


def test_sweep_over_seeds_and_draws_writes_stats(tmp_path):
    # 2 seeds x 2 draws, ranked by the loss: top jobs of draw 1 (and X = 0 of draw 1) skip themselves
    proc = sweep(tmp_path, "seed=0,1", "removal.draw_seed=0,1", "removal.score=loss")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "sweep"
    stats = pd.read_csv(out / "removal_stats.csv")
    assert list(stats.columns) == ["strategy", "removal_pct", "n_seeds", "mean_acc", "std_acc", "diff_vs_random",
                                   "ci_low", "ci_high"]
    assert stats.set_index(["strategy", "removal_pct"]).loc[("top", 30.0), "n_seeds"] == 2
    summary = pd.read_csv(out / "removal_summary.csv")
    assert set(summary["score"]) == {"loss"}
    random30 = summary[(summary.strategy == "random") & (summary.removal_pct == 30)]
    assert sorted(zip(random30.seed, random30.draw_seed)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert set(summary.loc[summary.strategy == "top", "draw_seed"]) == {0}
    records = [json.loads(p.read_text()) for p in out.glob("*/removal_job.json")]
    assert sum(r["status"] == "skipped-duplicate" for r in records) == 6  # top 0/30 x 2 seeds, random 0 x 2 seeds
    assert all(r["score"] == "loss" for r in records)
    # top-30% by the loss really removed the highest losses
    ranking = next((tmp_path / "cache" / "rankings").iterdir())
    scores = pd.read_csv(ranking / "memorization" / "scores.csv")
    top30 = summary[(summary.strategy == "top") & (summary.removal_pct == 30)]
    assert (top30["min_removed_score"] == scores["loss"].nlargest(29).min()).all()
    # the ranking run's accuracy on its own top-10% memorized, in diagnostics.json and metrics.json
    top10 = scores.sort_values(["mem_score", "sample_index"], ascending=[False, True]).head(round(len(scores) / 10))
    diagnostics = json.loads((ranking / "memorization" / "diagnostics.json").read_text())
    metrics = json.loads((ranking / "metrics.json").read_text())
    assert diagnostics["top10_train_acc"] == (top10["prediction"] == top10["label"]).mean()
    assert metrics["memorization/top10_train_acc"] == diagnostics["top10_train_acc"]
    assert "memorization/bottom10_train_acc" in metrics
    report = (out / "removal_report.md").read_text()
    assert "X = 30%, top - random" in report and "`loss`" in report
    assert "X = 30%, top - random" in proc.stdout + proc.stderr  # the findings go to the log too


def test_a_sweep_started_again_trains_only_what_is_missing(tmp_path):
    # the first run is "killed" after X = 0 (it ran only that); the same command again, in a new sweep dir,
    # reuses those jobs and trains the X = 30 ones; a third run reuses everything
    first = sweep(tmp_path, "removal.pct=0", "seed=0,1")
    assert first.returncode == 0, first.stderr[-3000:]
    second = sweep(tmp_path, "removal.pct=0,30", "seed=0,1", f"hydra.sweep.dir={tmp_path}/again")
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert log.count("reused: strategy=") == 4  # X = 0 of both strategies for seeds 0 and 1
    records = [json.loads(p.read_text()) for p in (tmp_path / "again").glob("*/removal_job.json")]
    trained = [r for r in records if r["status"] == "ok" and "reused" not in r]
    assert sorted((r["strategy"], r["removal_pct"], r["seed"]) for r in trained) == [
        ("random", 30.0, 0), ("random", 30.0, 1), ("top", 30.0, 0), ("top", 30.0, 1)]
    summary = pd.read_csv(tmp_path / "again" / "removal_summary.csv")
    assert len(summary) == 8  # the report covers reused and new jobs alike
    first_acc = pd.read_csv(tmp_path / "sweep" / "removal_summary.csv").set_index(["strategy", "seed"])["test_acc"]
    reused = summary[summary.removal_pct == 0].set_index(["strategy", "seed"])["test_acc"]
    assert len(first_acc) == 4
    pd.testing.assert_series_equal(reused.sort_index(), first_acc.sort_index())

    third = sweep(tmp_path, "removal.pct=0,30", "seed=0,1", f"hydra.sweep.dir={tmp_path}/third")
    assert third.returncode == 0, third.stderr[-3000:]
    log = third.stdout + third.stderr
    assert log.count("reused: strategy=") == 8 and "computing the memorization ranking" not in log
    assert "Epoch" not in log  # nothing trained
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "third" / "removal_summary.csv"), summary)

    forced = sweep(tmp_path, "removal.pct=0", "seed=0", "removal.strategy=top", "removal.reuse=false",
                   f"hydra.sweep.dir={tmp_path}/forced")
    assert forced.returncode == 0 and "reused: strategy=" not in forced.stdout + forced.stderr
