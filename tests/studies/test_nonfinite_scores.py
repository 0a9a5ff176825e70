"""Non-finite memorization scores (issue 23) are counted in diagnostics.json and ranked after every
finite score in both directions: never silently the most, nor the least, memorized."""
from __future__ import annotations

import numpy as np
import pandas as pd

from memlab.studies.diagnostics import score_diagnostics
from memlab.studies.ranking import memorization_rank, nonfinite_count, rank_by_memorization


def table() -> pd.DataFrame:
    return pd.DataFrame({"sample_index": [0, 1, 2, 3, 4], "label": [0, 1, 0, 1, 0],
                         "mem_score": [1.0, np.inf, 3.0, np.nan, 2.0], "loo_score": [1.0, 5.0, 3.0, 4.0, -np.inf],
                         "loss": [0.1, 0.5, 0.3, 0.4, 0.2], "prob": [0.9] * 5, "grad_norm_sq": [1.0] * 5,
                         "prediction": [0, 1, 0, 1, 0]})


def test_non_finite_scores_rank_last_in_both_directions():
    scores = table()
    assert rank_by_memorization(scores, "mem_score")["sample_index"].tolist() == [2, 4, 0, 1, 3]
    assert rank_by_memorization(scores, "mem_score", ascending=True)["sample_index"].tolist() == [0, 4, 2, 1, 3]
    assert memorization_rank(scores).tolist() == [4, 1, 3, 2, 5]  # loo_score: -inf of row 4 last, not "least"


def test_non_finite_scores_are_counted_in_the_diagnostics():
    scores = table()
    assert nonfinite_count(scores) == 3  # rows 1, 3 (mem_score) and 4 (loo_score)
    diagnostics = score_diagnostics(scores, {"solver": {}})
    assert diagnostics["nonfinite_scores"] == 3
    assert diagnostics["negligible_fraction"] < 1  # the scale is the largest finite score, not inf
    assert score_diagnostics(table().assign(mem_score=1.0, loo_score=2.0), {"solver": {}})["nonfinite_scores"] == 0
