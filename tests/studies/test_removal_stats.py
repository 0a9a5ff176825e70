"""Removal statistics (paper Fig. 1 with intervals): paired differences to random-removed over
training seeds, random draws averaged per seed, the power of a sweep, the ranking score as a
choice, and which jobs of a multi-draw sweep are duplicates."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats as st

from memlab.report import removal_report as removal_report_module
from memlab.studies import removal_selection as removal
from memlab.studies.ranking import rank_by_memorization
from memlab.studies.removal_selection import SUMMARY_COLUMNS, collect_sweep, min_removed_score, select_removed
from memlab.jobs.removal_record import depends_on_draw, sweep_draw_seeds
from memlab.studies.removal_stats import (STATS_COLUMNS, compare_to_random, minimum_detectable_effect,
                                          removal_report, removal_stats, top_below_random)

# Seed noise of 3 pp that is shared by every job of a seed (same initialisation and data order).
SEED_LEVEL = np.array([0.80, 0.86, 0.83, 0.89, 0.81])
JITTER = np.array([0.001, -0.001, 0.0005, -0.0005, 0.0])


def summary_of(accs: dict, draws: dict | None = None) -> pd.DataFrame:
    """A summary from {(strategy, pct): per-seed accuracies} (+ {(strategy, pct): {draw: accuracies}})."""
    rows = [{"strategy": s, "removal_pct": float(p), "seed": i, "draw_seed": 0, "score": "mem_score",
             "test_acc": float(a), "min_removed_score": math.nan}
            for (s, p), values in accs.items() for i, a in enumerate(values)]
    for (s, p), by_draw in (draws or {}).items():
        rows += [{"strategy": s, "removal_pct": float(p), "seed": i, "draw_seed": d, "score": "mem_score",
                  "test_acc": float(a), "min_removed_score": math.nan}
                 for d, values in by_draw.items() for i, a in enumerate(values)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def planted() -> pd.DataFrame:
    """Top-removed 1 pp below random at X = 30 in every seed; no effect at X = 10."""
    return summary_of({("none", 0): SEED_LEVEL + 0.01, ("random", 30): SEED_LEVEL,
                       ("top", 30): SEED_LEVEL - 0.01 + JITTER, ("random", 10): SEED_LEVEL + 0.005,
                       ("top", 10): SEED_LEVEL + 0.005 + JITTER})


def row(stats: pd.DataFrame, strategy: str, pct: float) -> pd.Series:
    return stats.set_index(["strategy", "removal_pct"]).loc[(strategy, float(pct))]


def test_planted_effect_is_detected_and_absent_one_is_not():
    stats = removal_stats(planted())
    assert list(stats.columns) == STATS_COLUMNS
    top30, top10 = row(stats, "top", 30), row(stats, "top", 10)
    assert top30["diff_vs_random"] == pytest.approx(-0.01)
    assert top30["ci_high"] < 0 and top30["ci_low"] < -0.01 < top30["ci_high"]
    assert top10["ci_low"] < 0 < top10["ci_high"]
    assert top30["n_seeds"] == 5 and top30["mean_acc"] == pytest.approx(SEED_LEVEL.mean() - 0.01)
    assert math.isnan(row(stats, "random", 30)["diff_vs_random"])
    assert row(stats, "full", 0)["n_seeds"] == 5
    assert top_below_random(compare_to_random(planted())) == [("top", 30.0)]


def test_differences_are_paired_by_training_seed():
    summary = planted()
    top30 = row(removal_stats(summary), "top", 30)
    # The unpaired (Welch) interval drowns the 1 pp effect in the 3 pp seed noise ...
    a = summary.query("strategy == 'top' and removal_pct == 30")["test_acc"]
    b = summary.query("strategy == 'random' and removal_pct == 30")["test_acc"]
    half = st.t.ppf(0.975, 8) * math.sqrt(a.var() / 5 + b.var() / 5)
    assert a.mean() - b.mean() - half < 0 < a.mean() - b.mean() + half
    # ... the paired one does not; and pairing follows the seed column, not the row order.
    assert top30["ci_high"] < 0
    shuffled = summary.assign(seed=np.where(summary["strategy"] == "top", (summary["seed"] + 1) % 5, summary["seed"]))
    assert row(removal_stats(shuffled), "top", 30)["ci_high"] > 0


def test_random_draws_are_averaged_per_seed_before_pairing():
    draws = {0: SEED_LEVEL - 0.02, 1: SEED_LEVEL + 0.01, 2: SEED_LEVEL + 0.01 + 2 * JITTER}
    summary = summary_of({("top", 30): SEED_LEVEL - 0.01}, {("random", 30): draws})
    stats = removal_stats(summary)
    random_per_seed = np.mean(list(draws.values()), axis=0)
    diffs = SEED_LEVEL - 0.01 - random_per_seed
    top30, random30 = row(stats, "top", 30), row(stats, "random", 30)
    assert top30["diff_vs_random"] == pytest.approx(diffs.mean())
    half = st.t.ppf(0.975, 4) * diffs.std(ddof=1) / math.sqrt(5)  # n = 5 seeds, not 15 runs
    assert top30["ci_low"] == pytest.approx(diffs.mean() - half)
    assert random30["n_seeds"] == 5 and random30["std_acc"] == pytest.approx(random_per_seed.std(ddof=1))


def test_missing_random_seed_drops_the_pair():
    summary = planted()
    summary = summary[~((summary["strategy"] == "random") & (summary["removal_pct"] == 30) & (summary["seed"] == 4))]
    comparison = compare_to_random(summary).set_index(["strategy", "removal_pct"])
    assert comparison.loc[("top", 30.0), "n_pairs"] == 4 and comparison.loc[("top", 30.0), "n_seeds"] == 5


def test_minimum_detectable_effect_has_the_stated_power():
    sd, n = 0.004, 5
    mde = minimum_detectable_effect(sd, n)
    assert mde == pytest.approx((st.t.ppf(0.975, 4) + st.t.ppf(0.8, 4)) * sd / math.sqrt(n))
    # exact power of the two-sided paired t test at that effect (noncentral t): about 80%
    crit, nc = st.t.ppf(0.975, n - 1), mde * math.sqrt(n) / sd
    power = st.nct.sf(crit, n - 1, nc) + st.nct.cdf(-crit, n - 1, nc)
    assert 0.75 < power < 0.85
    assert minimum_detectable_effect(2 * sd, n) == pytest.approx(2 * mde)
    assert minimum_detectable_effect(sd, 20) < mde and math.isnan(minimum_detectable_effect(sd, 1))


def test_report_states_detection_and_power_in_words():
    text = removal_report(planted())
    finding30 = next(line for line in text.splitlines() if line.startswith("- X = 30%, top"))
    finding10 = next(line for line in text.splitlines() if line.startswith("- X = 10%, top"))
    assert "detected, top-removed below random" in finding30 and "80% power" in finding30
    assert "no effect detected" in finding10 and "smallest difference" in finding10
    assert "`mem_score`" in text and "5 training seeds" in text


def test_several_scores_make_separate_curves():
    summary = pd.concat([planted(), planted().query("strategy == 'top'").assign(score="loss")])
    stats = removal_stats(summary)
    assert {"top[mem_score]", "top[loss]"} <= set(stats["strategy"])
    assert row(stats, "top[loss]", 30)["n_seeds"] == 5


SCORES = pd.DataFrame({"sample_index": [10, 11, 12, 13, 14, 15],
                       "mem_score": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
                       "loss": [0.1, 0.2, 0.3, 0.3, 0.5, 0.6]})


def test_the_score_column_chooses_the_removed_rows():
    assert select_removed(SCORES, "top", 50) == [10, 11, 12]
    assert select_removed(SCORES, "top", 50, score="loss") == [12, 14, 15]  # tie at 0.3: 12 before 13
    assert select_removed(SCORES, "bottom", 50, score="loss") == [10, 11, 12]
    assert min_removed_score(SCORES, [12, 14, 15], "loss") == 0.3
    assert min_removed_score(SCORES, [12, 14, 15]) == 1.0  # mem_score by default
    # the random draw does not depend on the score
    assert select_removed(SCORES, "random", 50, seed=3) == select_removed(SCORES, "random", 50, seed=3, score="loss")
    with pytest.raises(ValueError, match="removal.score"):
        select_removed(SCORES, "top", 50, score="prob")
    with pytest.raises(ValueError, match="loo_score"):
        select_removed(SCORES, "top", 50, score="loo_score")


def test_default_ranking_is_loo_score_else_mem_score():
    from memlab.studies.ranking import memorization_column

    both = pd.DataFrame({"sample_index": [1, 2, 3], "mem_score": [3.0, 2.0, 1.0], "loo_score": [1.0, 2.0, 3.0]})
    assert memorization_column(both) == "loo_score"
    assert rank_by_memorization(both)["sample_index"].tolist() == [3, 2, 1]
    assert select_removed(both, "top", 34) == [3]                      # removal.score=null follows it
    assert memorization_column(both.drop(columns="loo_score")) == "mem_score"
    assert rank_by_memorization(both.drop(columns="loo_score"))["sample_index"].tolist() == [1, 2, 3]


def test_rank_by_memorization_breaks_ties_by_sample_index_both_ways():
    tied = pd.DataFrame({"sample_index": [5, 3, 4], "loss": [1.0, 1.0, 2.0]})
    assert rank_by_memorization(tied, "loss")["sample_index"].tolist() == [4, 3, 5]
    assert rank_by_memorization(tied, "loss", ascending=True)["sample_index"].tolist() == [3, 5, 4]


def test_rank_column_and_top_sets_follow_rank_by_memorization():
    from memlab.studies.diagnostics import memorized_subset_accuracy
    from memlab.studies.ranking import load_scores, memorization_rank, top_count

    tied = pd.DataFrame({"sample_index": [9, 2, 7, 4, 1], "mem_score": [0.0, 3.0, 0.0, 1.0, 0.0],
                         "label": [0, 1, 0, 1, 0], "prediction": [1, 0, 0, 1, 0]}, index=[10, 20, 30, 40, 50])
    order = rank_by_memorization(tied)["sample_index"].tolist()
    assert order == [2, 4, 1, 7, 9]
    assert tied.assign(rank=memorization_rank(tied)).sort_values("rank")["sample_index"].tolist() == order
    assert load_scores(tied.reset_index(drop=True)).sort_values("rank")["sample_index"].tolist() == order
    assert select_removed(tied, "top", 40) == sorted(order[:2])
    assert top_count(5, 10) == 0 and top_count(5, 10, at_least_one=True) == 1 and top_count(0, 10, True) == 0
    # the top-20% (one instance: 2, predicted wrong) and the bottom-20% (of the tied 1, 7, 9: 1, predicted
    # right; 9, first in the table, is wrong), as a removal picks them
    assert memorized_subset_accuracy(tied, 20) == {"top20_train_acc": 0.0, "bottom20_train_acc": 1.0}


def test_sweep_draw_seeds_follow_hydra_precedence():
    def multirun(params, task):
        return OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": task}}})

    params = {"removal.strategy": "top,random", "removal.draw_seed": "0,1,2"}
    assert sweep_draw_seeds(multirun(params, ["experiment=x"])) == [0, 1, 2]
    assert sweep_draw_seeds(multirun(params, ["removal.draw_seed=5,3"])) == [5, 3]
    assert sweep_draw_seeds(multirun({}, ["removal.draw_seed=range(2,4)"])) == [2, 3]
    assert sweep_draw_seeds(multirun({"seed": "0,1"}, ["removal.draw_seed=7"])) == [7]
    assert sweep_draw_seeds(multirun({"seed": "0,1"}, [])) is None
    # one draw per training seed (the README's paired design): no job repeats another, none may skip;
    # the interpolation must not resolve against the multirun config's own seed
    paired = OmegaConf.create({"seed": 0, "hydra": {"sweeper": {"params": params},
                                                    "overrides": {"task": ["seed=0,1,2", "removal.draw_seed=${seed}"]}}})
    assert sweep_draw_seeds(paired) is None
    assert depends_on_draw("random", 30) and not depends_on_draw("random", 0)
    assert not depends_on_draw("top", 30) and not depends_on_draw("bottom", 10)


def test_collect_sweep_reads_draws_and_scores_and_ignores_skipped(tmp_path):
    records = [dict(strategy="random", removal_pct=30, seed=0, draw_seed=d, score="loss", status="ok",
                    test_acc=0.8 + d / 100, min_removed_score=None) for d in (0, 1)]
    records += [dict(strategy="top", removal_pct=30, seed=0, draw_seed=1, score="loss", status="skipped-duplicate"),
                dict(strategy="top", removal_pct=30, seed=0, draw_seed=0, score="loss", status="ok", test_acc=0.7,
                     min_removed_score=0.5)]
    for i, record in enumerate(records):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / removal.JOB_FILE).write_text(json.dumps(record))
    summary, problems = collect_sweep(tmp_path)
    assert problems == []
    assert list(zip(summary["strategy"], summary["draw_seed"])) == [("random", 0), ("random", 1), ("top", 0)]
    assert set(summary["score"]) == {"loss"}


def test_figure_marks_where_top_is_below_random(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(removal_report_module, "save_figure", lambda fig, path: figures.append(fig) or path)
    aggregate = removal.aggregate_removal(planted())
    removal_report_module.plot_removal(aggregate, tmp_path / "f.png", below_random=top_below_random(compare_to_random(planted())))
    stars = [c for c in figures[0].axes[0].collections if "below random" in str(c.get_label())]
    assert len(stars) == 1 and stars[0].get_offsets()[:, 0].tolist() == [30.0]


def test_report_counts_draws_per_seed_not_across_seeds():
    # removal.draw_seed=${seed}: each training seed has its own single draw -> "1 draw(s) per seed"
    own_draw = planted()
    own_draw.loc[own_draw["strategy"] == "random", "draw_seed"] = own_draw["seed"]
    assert "random-removed: 1 draw(s) per seed" in removal_report(own_draw)
    three = summary_of({("top", 30): [0.8, 0.81]}, draws={("random", 30): {0: [0.8, 0.8], 1: [0.8, 0.8], 2: [0.8, 0.8]}})
    assert "random-removed: 3 draw(s) per seed" in removal_report(three)
