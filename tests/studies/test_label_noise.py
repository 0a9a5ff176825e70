"""The label-error benchmark's pure parts: seeded flips of exactly the asked fraction, detection
metrics of a perfect and of a random score, the table, stratified folds and cleanlab's scores."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memlab.data.label_flips import choose_label_flips
from memlab.studies.label_noise import (cleanlab_suspicion, detection_metrics, detection_table, precision_at_k,
                                        stratified_folds)


def test_flips_are_seeded_exact_and_never_keep_the_class():
    index, labels = np.arange(100, 1100), np.tile(np.arange(4), 250)
    flips = choose_label_flips(index, labels, fraction=0.1, seed=3, num_classes=4)
    assert list(flips.columns) == ["sample_index", "original_label", "noisy_label"]
    assert len(flips) == 100 and flips["sample_index"].is_unique
    assert (flips["noisy_label"] != flips["original_label"]).all()
    assert (flips["original_label"].to_numpy() == labels[flips["sample_index"].to_numpy() - 100]).all()
    assert flips["noisy_label"].nunique() == 4  # every other class is drawn
    pd.testing.assert_frame_equal(flips, choose_label_flips(index, labels, 0.1, 3, 4))
    assert not flips.equals(choose_label_flips(index, labels, 0.1, 4, 4))
    # the draw follows sample_index, not the order the data arrived in
    order = np.random.default_rng(0).permutation(1000)
    shuffled = choose_label_flips(index[order], labels[order], 0.1, 3, 4)
    pd.testing.assert_frame_equal(shuffled.sort_values("sample_index", ignore_index=True), flips)
    assert len(choose_label_flips(np.arange(96), np.zeros(96, int), 0.1, 0, 2)) == 10  # round(9.6)
    assert choose_label_flips(np.arange(5), np.zeros(5, int), 0.0, 0, 2).empty
    with pytest.raises(ValueError):
        choose_label_flips(np.arange(5), np.zeros(5, int), 1.0, 0, 2)
    with pytest.raises(ValueError):
        choose_label_flips(np.arange(5), np.full(5, 2), 0.2, 0, 2)  # label outside 0..C-1


def test_detection_metrics_of_perfect_inverted_and_random_scores():
    rng = np.random.default_rng(0)
    noisy = np.zeros(2000, dtype=bool)
    noisy[rng.choice(2000, 200, replace=False)] = True
    perfect = detection_metrics(noisy + rng.random(2000) * 0.5, noisy)
    assert perfect == {"auroc": 1.0, "average_precision": 1.0, "precision_at_noise": 1.0}
    assert detection_metrics(-noisy.astype(float), noisy)["auroc"] == 0.0
    random = detection_metrics(rng.random(2000), noisy)
    assert random["auroc"] == pytest.approx(0.5, abs=0.05)
    assert random["average_precision"] == pytest.approx(0.1, abs=0.03)
    assert random["precision_at_noise"] == pytest.approx(0.1, abs=0.05)
    assert precision_at_k(np.array([3.0, 2, 1, 0]), np.array([True, False, True, False]), 2) == 0.5
    with pytest.raises(ValueError):
        detection_metrics(np.array([0.1, np.nan]), np.array([True, False]))


def test_detection_table_ranks_scores_with_their_seconds():
    scores = pd.DataFrame({"sample_index": [10, 11, 12, 13], "good": [0.9, 0.1, 0.8, 0.2], "bad": [0.1, 0.9, 0.2, 0.8]})
    table = detection_table(scores, flipped=[10, 12], seconds={"good": 1.5, "epoch": 6.0})
    assert list(table.columns) == ["score", "auroc", "average_precision", "precision_at_noise", "seconds", "cost_epochs"]
    assert table["score"].tolist() == ["good", "bad"] and table["auroc"].tolist() == [1.0, 0.0]
    assert table["seconds"].iloc[0] == 1.5 and np.isnan(table["seconds"].iloc[1])
    assert table["cost_epochs"].iloc[0] == 0.25 and np.isnan(table["cost_epochs"].iloc[1])  # 1.5 s / 6 s


def test_stratified_folds_and_cleanlab_scores():
    labels = np.repeat([0, 1], [60, 40])
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(np.bincount(folds)) == [20] * 5
    assert all(np.bincount(labels[folds == f]).tolist() == [12, 8] for f in range(5))
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=0))
    probs = np.column_stack([labels == 0, labels == 1]).astype(float) * 0.8 + 0.1
    probs[:5] = probs[:5, ::-1]  # the model disagrees with the first five labels
    suspicion = cleanlab_suspicion(labels, probs)
    assert set(np.argsort(-suspicion)[:5]) == set(range(5))
    assert suspicion[:5] == pytest.approx(0.9) and suspicion[5:] == pytest.approx(0.1)  # 1 - P(label)


def test_bad_noise_and_fz_settings_stop_before_training(tiny_cfg):
    from memlab.errors import ConfigError
    from memlab.tasks.fz import check_fz_settings
    from memlab.tasks.label_noise import check_noise_settings

    check_noise_settings(tiny_cfg("experiment=smoke_label_noise"))
    for bad in ("noise.fraction=0", "noise.fraction=1.5", "cleanlab.folds=1", "data.label_noise=0.2"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            check_noise_settings(tiny_cfg("experiment=smoke_label_noise", bad))
    check_fz_settings(tiny_cfg("experiment=smoke_validate"))
    for bad in ("fz.models=0", "fz.subset_fraction=1"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            check_fz_settings(tiny_cfg("experiment=smoke_validate", bad))
