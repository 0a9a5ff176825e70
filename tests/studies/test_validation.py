"""The validation table's top-10% recovery and its paired bootstrap against the loss."""
import numpy as np
import pandas as pd

from memlab.studies.validation import COLUMNS, top_recovered, validation_table


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
