"""The validation table: top-10% recovery and its paired bootstrap against the loss; the Spearman bootstrap
(intervals, against a by-hand loop) and the paired difference to the best candidate."""
import numpy as np
import pandas as pd
import pytest

from memlab.studies.validation import COLUMNS, spearman_bootstrap, spearman_intervals, top_recovered, validation_table


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    fz = rng.normal(size=n)
    candidates = pd.DataFrame({"sample_index": np.arange(n)[::-1],  # any order: aligned on sample_index
                               "loss": rng.normal(size=n), "perfect": fz[::-1] * 2 + 1})
    return candidates, pd.DataFrame({"sample_index": np.arange(n), "fz_mem": fz})


def test_top_recovered_counts_the_shared_top_tenth():
    reference = np.arange(100.0)
    assert top_recovered(reference, reference) == 1.0
    assert top_recovered(-reference, reference) == 0.0
    half = reference.copy()
    half[[99, 98, 97, 96, 95]] = -1  # five of the reference's top ten pushed out
    assert top_recovered(half, reference) == 0.5


def test_a_score_that_is_the_reference_beats_a_random_loss_with_an_interval_above_zero():
    candidates, fz = _data()
    table = validation_table(candidates, fz, ceiling=0.9).set_index("score")
    assert list(table.reset_index().columns) == COLUMNS
    assert table.loc["perfect", "fz_top10_recovered"] == 1.0
    assert table.loc["loss", "fz_top10_recovered"] < 0.4
    assert table.loc["loss", ["recovered_vs_loss", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0]
    assert 0 < table.loc["perfect", "ci_low"] <= table.loc["perfect", "recovered_vs_loss"] <= table.loc["perfect", "ci_high"]
    again = validation_table(candidates, fz, ceiling=0.9).set_index("score")
    pd.testing.assert_frame_equal(table, again)  # seeded bootstrap


def test_without_a_loss_column_there_is_no_comparison():
    candidates, fz = _data()
    table = validation_table(candidates.drop(columns="loss"), fz, ceiling=0.9)
    assert table["fz_top10_recovered"].iloc[0] == 1.0 and table[["recovered_vs_loss", "ci_low"]].isna().all().all()


def _noisy(n, seed=0, noise=(0.5, 1.0, 3.0)):
    """A reference and candidates that follow it with growing noise (Spearman high, middle, low)."""
    rng = np.random.default_rng(seed)
    fz = rng.normal(size=n)
    columns = {f"noise{s}": fz + s * rng.normal(size=n) for s in noise}
    return pd.DataFrame({"sample_index": np.arange(n), **columns}), pd.DataFrame({"sample_index": np.arange(n), "fz_mem": fz})


def test_the_spearman_interval_holds_the_point_estimate_and_shrinks_with_n():
    small = validation_table(*_noisy(100), ceiling=1.0).set_index("score")
    large = validation_table(*_noisy(3000), ceiling=1.0).set_index("score")
    for table in (small, large):
        assert (table["spearman_ci_low"] < table["spearman_vs_fz"]).all()
        assert (table["spearman_vs_fz"] < table["spearman_ci_high"]).all()
    width = lambda t: t["spearman_ci_high"] - t["spearman_ci_low"]  # noqa: E731
    assert (width(large) < 0.5 * width(small)).all()  # ~ 1/sqrt(n): 30x the instances, ~0.18x the width
    assert list(large.reset_index().columns[:4]) == ["score", "spearman_vs_fz", "spearman_ci_low", "spearman_ci_high"]


def test_the_vectorised_bootstrap_equals_a_loop_over_resamples_that_reranks_nothing():
    from scipy.stats import rankdata, spearmanr

    candidates, fz = _noisy(40, seed=3)
    candidates.loc[5, "noise1.0"] = np.nan  # left out of that candidate's pairs only
    candidates["tied"] = np.round(candidates["noise0.5"])  # ties: average ranks
    names, point, draws = spearman_bootstrap(candidates, fz, resamples=30, seed=7)
    rng = np.random.default_rng(7)
    expected = np.empty((30, len(names)))
    for b in range(30):
        idx = rng.integers(0, 40, 40)
        for j, name in enumerate(names):
            x, y = candidates[name].to_numpy(), fz["fz_mem"].to_numpy()
            keep = np.isfinite(x)
            rx, ry = np.full(40, np.nan), np.full(40, np.nan)
            rx[keep], ry[keep] = rankdata(x[keep]), rankdata(y[keep])  # ranked once, on all instances
            pick = idx[keep[idx]]
            a, c = rx[pick] - rx[pick].mean(), ry[pick] - ry[pick].mean()
            expected[b, j] = (a * c).sum() / np.sqrt((a * a).sum() * (c * c).sum())
    np.testing.assert_allclose(draws, expected, rtol=1e-10, atol=1e-12)
    for j, name in enumerate(names):  # the point estimate is scipy's Spearman
        keep = candidates[name].notna()
        assert point[j] == pytest.approx(spearmanr(candidates[name][keep], fz["fz_mem"][keep]).statistic, abs=1e-12)


def test_the_paired_difference_to_the_best_ties_close_candidates_and_not_distant_ones():
    rng = np.random.default_rng(1)
    n = 2000
    fz = rng.normal(size=n)
    shared = fz + 0.8 * rng.normal(size=n)
    candidates = pd.DataFrame({"sample_index": np.arange(n), "best": shared,
                               "twin": shared + 0.01 * rng.normal(size=n),  # same signal, a hair of noise
                               "worse": fz + 3.0 * rng.normal(size=n)})
    table = spearman_intervals(candidates, pd.DataFrame({"sample_index": np.arange(n), "fz_mem": fz})).set_index("score")
    best = table["spearman"].idxmax()
    assert table.loc[best, ["diff_vs_best", "diff_ci_low", "diff_ci_high"]].tolist() == [0.0, 0.0, 0.0]
    other = "twin" if best == "best" else "best"
    assert best in ("best", "twin") and table.loc[other, "diff_ci_low"] <= 0 <= table.loc[other, "diff_ci_high"]
    assert table.loc["worse", "diff_ci_high"] < 0
    # paired: the difference's interval is far narrower than either marginal interval
    width = table.loc[other, "diff_ci_high"] - table.loc[other, "diff_ci_low"]
    assert width < 0.2 * (table.loc[other, "spearman_ci_high"] - table.loc[other, "spearman_ci_low"])


def test_the_cost_column_counts_seconds_in_training_epochs():
    candidates, fz = _data(n=50)
    table = validation_table(candidates, fz, ceiling=0.9, seconds={"loss": 3.0, "perfect": 30.0, "epoch": 12.0})
    cost = table.set_index("score")[["seconds", "cost_epochs"]]
    assert cost.loc["loss"].tolist() == [3.0, 0.25] and cost.loc["perfect"].tolist() == [30.0, 2.5]
    unmeasured = validation_table(candidates, fz, ceiling=0.9, seconds={"loss": 3.0})  # no epoch time: NaN
    assert unmeasured["cost_epochs"].isna().all() and unmeasured["seconds"].iloc[0] == 3.0
