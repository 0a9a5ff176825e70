"""diagnostics.json's figures on hand-made score tables: rank agreement, zero / negligible / negative
fractions, and λ relative to the spectrum."""
import numpy as np
import pandas as pd
import pytest

from memlab.studies.diagnostics import score_diagnostics


def table(mem, loss, prob=None, grad_norm_sq=None):
    n = len(mem)
    return pd.DataFrame({"sample_index": np.arange(n), "mem_score": mem, "loss": loss,
                         "prob": prob if prob is not None else np.ones(n),
                         "grad_norm_sq": grad_norm_sq if grad_norm_sq is not None else np.ones(n)})


def test_fractions_and_rank_agreement():
    mem = np.array([0.0, 1e-45, 1e-12, 1.0, 5.0, 1e3, -2.0, 1e6])
    loss = np.arange(8.0)
    d = score_diagnostics(table(mem, loss, grad_norm_sq=mem), {"solver": {"solver": "ekfac", "damping": 0.5},
                                                              "spectrum": {"mean": 5.0, "top": 50.0}})
    assert d["n"] == 8
    assert d["zero_fraction"] == pytest.approx(2 / 8)        # 0 and a float32 subnormal
    assert d["negligible_fraction"] == pytest.approx(3 / 8)  # also 1e-12: below float32 eps x 1e6 = 0.12
    assert d["negative_fraction"] == pytest.approx(1 / 8)
    assert d["spearman_vs_identity"] == pytest.approx(1.0)
    assert d["damping_rel_mean"] == pytest.approx(0.1) and d["damping_rel_top"] == pytest.approx(0.01)
    monotone = score_diagnostics(table(np.exp(loss), loss), {})
    assert monotone["spearman_vs_loss"] == pytest.approx(1.0) and monotone["zero_fraction"] == 0.0


def test_second_solver_agreement_is_matched_by_sample_index():
    scores = table(np.array([1.0, 2.0, 3.0, 4.0]), np.arange(4.0))
    other = scores[["sample_index", "mem_score"]].iloc[::-1].reset_index(drop=True)  # same values, other order
    d = score_diagnostics(scores, {}, other, "exact")
    assert d["spearman_vs_exact"] == pytest.approx(1.0)
    flipped = other.assign(mem_score=-other["mem_score"])
    assert score_diagnostics(scores, {}, flipped, "exact")["spearman_vs_exact"] == pytest.approx(-1.0)


def test_accuracy_on_the_top_and_bottom_memorized_tenth():
    # 20 instances: top-10% = the 2 highest mem_score: id 19, then id 17 (tied with 18: smaller id
    # first, as the removal study orders); bottom-10% = ids 0, 1
    mem = np.arange(20.0)
    mem[17] = 18.0
    scores = table(mem, np.arange(20.0)).assign(label=1, prediction=1)
    scores.loc[[18, 19], "prediction"] = 0        # wrong on 19 (top) and 18 (tied, ranked after 17)
    scores.loc[0, "prediction"] = 0               # wrong on one of the bottom two
    d = score_diagnostics(scores, {})
    assert d["top10_train_acc"] == pytest.approx(0.5)
    assert d["bottom10_train_acc"] == pytest.approx(0.5)
    scores.loc[17, "prediction"] = 0              # now both of the top two are wrong
    assert score_diagnostics(scores, {})["top10_train_acc"] == 0.0
    assert "top10_train_acc" not in score_diagnostics(scores.drop(columns="prediction"), {})
