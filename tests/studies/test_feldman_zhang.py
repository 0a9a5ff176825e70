"""Feldman-Zhang subsampling estimator: subsets, the in/out difference and its standard error by hand,
Spearman, split-half reliability (pure noise: ~0), and an end-to-end check that planted singletons
(only fit by memorising them) come out on top with a reliable estimate."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from memlab.studies.feldman_zhang import (attenuation_ceiling, fz_memorization, sample_subsets, spearman_against,
                                          spearman_brown, split_half_reliability)


def test_sample_subsets_seeded_and_sized():
    mask = sample_subsets(50, n_models=8, fraction=0.7, seed=3)
    assert mask.shape == (8, 50) and mask.dtype == bool
    assert (mask.sum(axis=1) == 35).all()
    assert np.array_equal(mask, sample_subsets(list(range(100, 150)), 8, 0.7, seed=3))
    assert not np.array_equal(mask, sample_subsets(50, 8, 0.7, seed=4))
    assert len({tuple(row) for row in mask}) == 8  # independent draws per model
    with pytest.raises(ValueError):
        sample_subsets(10, 2, fraction=1.0)


def test_fz_memorization_by_hand():
    in_subset = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 1, 1], [0, 1, 1]], dtype=torch.bool)
    correct = np.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=bool)
    out = fz_memorization(in_subset, correct, sample_index=[7, 8, 9])
    assert list(out.columns) == ["sample_index", "fz_mem", "fz_se", "n_in", "n_out"]
    assert out["sample_index"].tolist() == [7, 8, 9]
    assert out["n_in"].tolist() == [2, 3, 4] and out["n_out"].tolist() == [2, 1, 0]
    assert out["fz_mem"].iloc[0] == pytest.approx(1.0 - 0.5)
    assert out["fz_mem"].iloc[1] == pytest.approx(2 / 3 - 0.0)
    assert np.isnan(out["fz_mem"].iloc[2])  # never held out
    # instance 0: in = [1, 1] (variance 0), out = [0, 1] (variance 0.5): se = sqrt(0/2 + 0.5/2)
    assert out["fz_se"].iloc[0] == pytest.approx(0.5)
    assert np.isnan(out["fz_se"].iloc[1])  # one model left it out: no variance
    with pytest.raises(ValueError):
        fz_memorization(in_subset, correct[:, :2])


def test_probability_and_correct_versions_side_by_side():
    in_subset = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=bool)
    prob = np.array([[0.9, 0.2], [0.7, 0.4], [0.4, 0.9], [0.2, 0.7]])
    out = fz_memorization(in_subset, prob, correct=prob > 0.5)
    assert out["fz_mem"].tolist() == pytest.approx([0.8 - 0.3, 0.8 - 0.3])
    assert out["fz_mem_correct"].tolist() == pytest.approx([1.0, 1.0])
    assert out["fz_se"].iloc[0] == pytest.approx(np.sqrt(0.02 / 2 + 0.02 / 2))
    assert (out["fz_se_correct"] == 0).all()


def test_spearman_brown_and_ceiling():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(0.0) == 0.0 and spearman_brown(1.0) == pytest.approx(1.0)
    assert attenuation_ceiling(0.64) == pytest.approx(0.8)
    assert attenuation_ceiling(-0.1) == 0.0 and attenuation_ceiling(float("nan")) == 0.0


def test_split_half_reliability_of_pure_noise_is_near_zero():
    rng = np.random.default_rng(0)
    in_subset = sample_subsets(2000, n_models=32, fraction=0.5, seed=1)
    noise = split_half_reliability(in_subset, rng.random((32, 2000)), n_splits=10)
    assert abs(noise["reliability"]) < 0.1 and noise["n_splits"] == 10 and noise["n"] > 1900
    # the same outcomes with a planted in-subset effect on every instance are reliable
    effect = rng.normal(size=2000)
    signal = rng.random((32, 2000)) + in_subset * effect
    assert split_half_reliability(in_subset, signal, n_splits=10)["reliability"] > 0.8
    assert np.isnan(split_half_reliability(in_subset[:3], signal[:3])["reliability"])  # < 4 models


def test_reliability_grows_with_the_models_as_spearman_brown_says():
    from memlab.studies.feldman_zhang import models_for_reliability, reliability_by_models

    rng = np.random.default_rng(3)
    in_subset = sample_subsets(3000, n_models=48, fraction=0.5, seed=2)
    effect = rng.normal(size=3000)
    outcome = rng.random((48, 3000)) * 3 + in_subset * effect  # a weak effect: reliability well below 1
    table = reliability_by_models(in_subset, outcome, [2, 8, 16, 32, 99])
    assert table["models"].tolist() == [8, 16, 32, 48]            # < 4 and > K are dropped, K is added
    r = table["reliability"].to_numpy()
    assert (np.diff(r) > 0).all() and 0.2 < r[0] < r[-1] < 0.95
    # the projection from all 48 models predicts the smaller references (it is the model it assumes)
    assert np.abs(table["projected"] - table["reliability"]).max() < 0.08
    assert table["projected"].iloc[-1] == pytest.approx(r[-1])
    # models needed: the inverse of the projection
    need = models_for_reliability(r[-1], 48, 0.9)
    assert spearman_brown(r[-1], need / 48) == pytest.approx(0.9)
    assert np.isnan(models_for_reliability(1.2, 48, 0.9))


def test_spearman_against():
    n = 40
    scores = pd.DataFrame({"sample_index": np.arange(n), "mem_score": np.arange(n, dtype=float)})
    fz = pd.DataFrame({"sample_index": np.arange(n)[::-1], "fz_mem": (np.arange(n)[::-1] ** 3).astype(float)})
    res = spearman_against(scores, fz, top_pct=25)
    assert res["overall"] == pytest.approx(1.0) and res["top"] == pytest.approx(1.0)
    assert res["n"] == n and res["n_top"] == 10
    # Disagreeing only inside the top quarter: overall stays high, top turns negative.
    fz2 = fz.copy()
    top_ids = fz2["sample_index"] >= 30
    fz2.loc[top_ids, "fz_mem"] = -fz2.loc[top_ids, "sample_index"] + 1e6
    res2 = spearman_against(scores, fz2, top_pct=25)
    assert res2["top"] == pytest.approx(-1.0)
    assert res2["overall"] > 0.5
    fz2.loc[0, "fz_mem"] = np.nan
    assert spearman_against(scores, fz2)["n"] == n - 1


def _planted_data(n_per_class=60, n_planted=6, dim=4, seed=0):
    """Two Gaussian blobs plus planted singletons: each sits in one blob with the other blob's
    label and owns one extra feature, so a model gets it right only when it trained on it."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.zeros(2, dim)
    centers[0, 0], centers[1, 0] = -4.0, 4.0
    y_typical = torch.arange(2).repeat_interleave(n_per_class)
    x_typical = centers[y_typical] + torch.randn(2 * n_per_class, dim, generator=gen)
    blob = torch.randint(0, 2, (n_planted,), generator=gen)
    x_planted = centers[blob] + torch.randn(n_planted, dim, generator=gen)
    y_planted = 1 - blob
    x = torch.cat([x_typical, x_planted])
    own = torch.zeros(len(x), n_planted)
    own[2 * n_per_class:] = 3.0 * torch.eye(n_planted)
    x = torch.cat([x, own], dim=1)
    y = torch.cat([y_typical, y_planted])
    planted = set(range(2 * n_per_class, len(x)))
    return x, y, planted


def _train_logistic_models(x, y, in_subset, steps=300, lr=0.1, l2=1e-4):
    """K logistic regressions at once, model k trained full-batch on its subset; [K, N] P(y|x)."""
    k_models = in_subset.shape[0]
    w = torch.zeros(k_models, x.shape[1], requires_grad=True)
    b = torch.zeros(k_models, requires_grad=True)
    weight = in_subset / in_subset.sum(dim=1, keepdim=True)
    target = y.float().expand(k_models, -1)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        logits = w @ x.T + b[:, None]
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(
            logits, target, reduction="none") * weight).sum() + l2 * (w ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        positive = torch.sigmoid(w @ x.T + b[:, None])
        return torch.where(y.bool(), positive, 1 - positive)


@pytest.fixture
def one_thread():
    # Tiny ops: a second intra-op thread only adds contention on a shared 2-core machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_planted_singletons_score_highest(one_thread):
    torch.manual_seed(0)
    x, y, planted = _planted_data(n_planted=12)
    in_subset = sample_subsets(len(x), n_models=32, fraction=0.5, seed=0)
    prob = _train_logistic_models(x, y, torch.as_tensor(in_subset, dtype=torch.float32)).numpy()
    fz = fz_memorization(in_subset, prob, correct=prob > 0.5)
    assert (fz.loc[list(planted), "n_out"] > 0).all()
    for column in ("fz_mem", "fz_mem_correct"):
        top = set(fz.sort_values(column, ascending=False)["sample_index"].head(len(planted)))
        assert top == planted
    assert fz.loc[list(planted), "fz_mem"].min() > 0.8
    assert (fz.loc[list(planted), "fz_se"] < 0.1).all()
    typical = fz.drop(index=list(planted))["fz_mem"].dropna()
    assert typical.abs().mean() < 0.05 and typical.abs().max() < 0.5
    assert split_half_reliability(in_subset, prob)["reliability"] > 0.3
    shuffled = np.random.default_rng(0).permuted(prob, axis=1)  # outcomes no longer tied to the instance
    assert abs(split_half_reliability(in_subset, shuffled)["reliability"]) < 0.2


def test_subset_models_are_cached_independently_of_the_solver(tmp_path):
    from conftest import compose
    from memlab.tasks.fz import fz_models_dir

    base = ["experiment=sst2_fz", "data=tiny_text", "model=tiny_bert"]
    key = fz_models_dir(compose(base, tmp_path))
    assert fz_models_dir(compose(base + ["solver=exact"], tmp_path)) == key
    assert fz_models_dir(compose(base + ["solver.damping_rel=10"], tmp_path)) == key
    assert fz_models_dir(compose(base + ["fz.models=8"], tmp_path)) == key  # more models reuse the first ones
    assert fz_models_dir(compose(base + ["trainer.max_epochs=7"], tmp_path)) != key
    assert fz_models_dir(compose(base + ["recipe=constant"], tmp_path)) != key
    assert fz_models_dir(compose(base + ["fz.subset_fraction=0.7"], tmp_path)) != key
    assert fz_models_dir(compose(base + ["fz.subset_seed=1"], tmp_path)) != key
