"""Removal study (paper Fig. 1): which instances are dropped, and reading a sweep of jobs
including failed, unfinished and malformed ones."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memlab.studies.removal_selection import (SUMMARY_COLUMNS, aggregate_removal, collect_sweep,
                                    min_removed_score, select_removed)
from memlab.report.removal_report import write_removal_summary

SCORES = pd.DataFrame({"sample_index": [100 + i for i in range(10)],
                       "mem_score": [5.0, 3.0, 5.0, 1.0, 0.0, 0.0, 2.0, 4.0, 9.0, 0.0]})


def test_select_top_and_bottom_with_ties():
    assert select_removed(SCORES, "top", 30) == [100, 102, 108]
    assert select_removed(SCORES, "top", 20) == [100, 108]  # tie at 5.0: smaller sample_index
    assert select_removed(SCORES, "bottom", 20) == [104, 105]
    assert select_removed(SCORES, "bottom", 40) == [103, 104, 105, 109]
    assert select_removed(SCORES, "top", 0) == []
    assert select_removed(SCORES, "top", 100) == list(range(100, 110))
    with pytest.raises(ValueError):
        select_removed(SCORES, "middle", 10)


def test_select_random_is_seeded_and_ignores_scores():
    picked = select_removed(SCORES, "random", 50, seed=1)
    assert len(picked) == 5 and picked == sorted(picked) and set(picked) <= set(SCORES["sample_index"])
    assert picked == select_removed(SCORES, "random", 50, seed=1)
    shuffled = SCORES.sample(frac=1.0, random_state=0).assign(mem_score=lambda d: -d["mem_score"])
    assert picked == select_removed(shuffled, "random", 50, seed=1)
    draws = {tuple(select_removed(SCORES, "random", 50, seed=s)) for s in range(6)}
    assert len(draws) > 1


def test_min_removed_score():
    assert min_removed_score(SCORES, select_removed(SCORES, "top", 30)) == 5.0
    assert min_removed_score(SCORES, [103, 108]) == 1.0
    assert math.isnan(min_removed_score(SCORES, []))


def _job(sweep: Path, name: str, **record) -> Path:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    if record:
        (job / "removal_job.json").write_text(json.dumps(record))
    return job


def _make_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    i = 0
    accs = {("top", 10): [0.80, 0.82], ("top", 20): [0.70, 0.74], ("random", 10): [0.86, 0.88]}
    for (strategy, pct), values in accs.items():
        for seed, acc in enumerate(values):
            _job(sweep, str(i), strategy=strategy, removal_pct=pct, seed=seed, status="ok",
                 test_acc=acc, min_removed_score=float(pct), n_removed=pct)
            i += 1
    for seed, acc in enumerate([0.90, 0.92]):  # the full data, shared by every strategy
        _job(sweep, str(i), strategy="none", removal_pct=0, seed=seed, status="ok", test_acc=acc,
             min_removed_score=None, n_removed=0)
        i += 1
    _job(sweep, "failed", strategy="top", removal_pct=30, seed=0, status="failed",
         error="CUDA out of memory")
    _job(sweep, "unfinished")
    bad = _job(sweep, "malformed")
    (bad / "removal_job.json").write_text("{not json")
    # A job that wrote no removal_job.json: read from metrics.json + Hydra's overrides.
    hydra_job = _job(sweep, "hydra_only")
    (hydra_job / ".hydra" / "overrides.yaml").write_text(
        "- removal.strategy=random\n- removal.removal_pct=20\n- seed=0\n")
    (hydra_job / "metrics.json").write_text(json.dumps({"test_acc": 0.85}))
    return sweep


def test_collect_sweep_lists_problems_and_sorts(tmp_path):
    sweep = _make_sweep(tmp_path)
    summary, problems = collect_sweep(sweep, scores_df=SCORES)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(zip(summary["strategy"], summary["removal_pct"], summary["seed"])) == [
        ("none", 0, 0), ("none", 0, 1), ("random", 10, 0), ("random", 10, 1), ("random", 20, 0),
        ("top", 10, 0), ("top", 10, 1), ("top", 20, 0), ("top", 20, 1)]
    hydra_row = summary[(summary["strategy"] == "random") & (summary["removal_pct"] == 20)].iloc[0]
    assert hydra_row["test_acc"] == 0.85
    assert hydra_row["min_removed_score"] == min_removed_score(SCORES, select_removed(SCORES, "random", 20, 0))
    assert len(problems) == 3
    text = "\n".join(problems)
    assert "failed" in text and "CUDA out of memory" in text
    assert any(p.startswith("unfinished:") for p in problems)
    assert any(p.startswith("malformed:") and "unreadable" in p for p in problems)


def test_collect_sweep_never_crashes_on_a_missing_dir(tmp_path):
    summary, problems = collect_sweep(tmp_path / "nope")
    assert summary.empty and list(summary.columns) == SUMMARY_COLUMNS
    assert len(problems) == 1 and "does not exist" in problems[0]


def test_aggregate_shares_the_full_data_point():
    summary = pd.DataFrame({"strategy": ["none", "none", "top", "top", "random"],
                            "removal_pct": [0.0, 0.0, 10.0, 10.0, 10.0], "seed": [0, 1, 0, 1, 0],
                            "test_acc": [0.9, 0.8, 0.7, 0.5, 0.85],
                            "min_removed_score": [np.nan, np.nan, 2.0, 2.0, np.nan]})
    agg = aggregate_removal(summary).set_index(["strategy", "removal_pct"])
    assert set(agg.index) == {("top", 0.0), ("top", 10.0), ("random", 0.0), ("random", 10.0)}
    assert agg.loc[("top", 0.0), "test_acc_mean"] == pytest.approx(0.85)
    assert agg.loc[("random", 0.0), "test_acc_mean"] == pytest.approx(0.85)
    assert agg.loc[("top", 0.0), "n_runs"] == 2
    assert agg.loc[("top", 10.0), "test_acc_std"] == pytest.approx(np.std([0.7, 0.5], ddof=1))
    assert agg.loc[("random", 10.0), "test_acc_std"] == 0.0
    assert agg.loc[("top", 10.0), "min_removed_score"] == 2.0


def test_write_removal_summary(tmp_path):
    sweep = _make_sweep(tmp_path)
    paths = write_removal_summary(sweep, scores_df=SCORES)
    summary = pd.read_csv(paths["summary"])
    assert paths["summary"] == sweep / "removal_summary.csv"
    assert len(summary) == 9 and list(summary.columns) == SUMMARY_COLUMNS
    agg = pd.read_csv(paths["aggregate"]).set_index(["strategy", "removal_pct"])
    assert agg.loc[("top", 20.0), "test_acc_mean"] == pytest.approx(0.72)
    assert agg.loc[("top", 0.0), "test_acc_mean"] == pytest.approx(0.91)
    assert Path(paths["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert len(Path(paths["problems"]).read_text().splitlines()) == 3
    leftovers = [p.name for p in sweep.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temp files renamed away
    # An empty sweep still writes a (header-only) table and a figure.
    empty = write_removal_summary(tmp_path / "empty_sweep")
    assert pd.read_csv(empty["summary"]).empty and Path(empty["figure"]).exists()


def test_full_data_runs_count_once_per_seed():
    summary = pd.DataFrame({"strategy": ["top", "random", "top", "random", "top"],
                            "removal_pct": [0.0, 0.0, 0.0, 0.0, 30.0], "seed": [0, 0, 1, 1, 0],
                            "test_acc": [0.9, 0.9, 0.8, 0.8, 0.7], "min_removed_score": [np.nan] * 4 + [1.0]})
    agg = aggregate_removal(summary).set_index(["strategy", "removal_pct"])
    assert agg.loc[("top", 0.0), "n_runs"] == 2
    assert agg.loc[("top", 0.0), "test_acc_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
