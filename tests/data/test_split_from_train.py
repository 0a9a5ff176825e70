"""data.split_from_train: dev and test carved out of train.csv, seeded and stratified by class."""
from __future__ import annotations

import numpy as np
import pandas as pd

from memlab.data.text_sources import carve_split, read_local


def test_a_balanced_file_splits_balanced_and_disjoint(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 100)
    rng.shuffle(labels)
    pd.DataFrame({"label": labels, "text": [f"t{i}" for i in range(1000)], "sample_index": np.arange(1000)}).to_csv(
        tmp_path / "train.csv", index=False)
    splits = read_local(tmp_path, num_classes=10, pair=False, seed=3, val_size=100, test_size=100, split_from_train=True)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    for split in ("val", "test"):
        assert splits[split]["label"].value_counts().tolist() == [10] * 10
    ids = [set(splits[s]["sample_index"]) for s in ("train", "val", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    again = read_local(tmp_path, num_classes=10, pair=False, seed=3, val_size=100, test_size=100, split_from_train=True)
    assert again["test"]["sample_index"].tolist() == splits["test"]["sample_index"].tolist()


def test_uneven_classes_keep_their_shares():
    df = pd.DataFrame({"label": [0] * 70 + [1] * 25 + [2] * 5, "text": "x"})
    rest, carved = carve_split(df, 0.2, seed=0)
    assert carved["label"].value_counts().to_dict() == {0: 14, 1: 5, 2: 1}
    assert len(rest) == 80
