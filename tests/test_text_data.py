"""Text data modules on generated and hand-written CSV fixtures; one-line errors for bad input."""
from __future__ import annotations

import pandas as pd
import pytest

from memlab.data.base import DataError
from memlab.data.text import TextDataModule


def make(**kw):
    args = dict(name="t", tokenizer="tiny-random", source="generated", batch_size=8)
    args.update(kw)
    return TextDataModule(**args)


def test_generated_single_and_pair_batches():
    for task, pair in (("sentiment", False), ("pair", True)):
        dm = make(generated_task=task, pair=pair)
        dm.setup()
        batch = next(iter(dm.train_dataloader()))
        assert batch["input_ids"].shape == batch["attention_mask"].shape
        assert batch["input_ids"][:, 0].eq(dm.tokenizer.cls_token_id).all()
        assert len(batch["labels"]) == 8 and batch["sample_index"].dtype.is_floating_point is False
        if pair:  # both sentences, separated by [SEP]
            assert (batch["input_ids"] == dm.tokenizer.sep_token_id).sum(1).ge(2).all()


def test_sample_index_stable_under_removal():
    dm = make(exclude=[0, 5, 7])
    dm.setup()
    kept = dm.splits["train"].sample_indices()
    assert not {0, 5, 7} & set(kept) and len(kept) == 96 - 3
    texts = {e["sample_index"]: e["text"] for e in dm.full_train.examples}
    assert all(texts[e["sample_index"]] == e["text"] for e in dm.splits["train"].examples)
    order = [int(i) for b in dm.score_dataloader() for i in b["sample_index"]]
    assert order == kept  # scoring order is fixed, shuffling happens only in train_dataloader
    shuffled = [int(i) for b in dm.train_dataloader() for i in b["sample_index"]]
    assert sorted(shuffled) == sorted(kept) and shuffled != kept


def write_csvs(root, train, dev=None, test=None):
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("dev.csv", dev), ("test.csv", test)):
        if rows is not None:
            pd.DataFrame(rows).to_csv(root / name, index=False)


ROWS = [{"label": i % 2, "sentence": f"good film {i}" if i % 2 else f"bad film {i}", "sample_index": 100 + i}
        for i in range(20)]


def test_local_csv_layout(tmp_path):
    write_csvs(tmp_path, ROWS, ROWS[:4], ROWS[4:8])
    dm = make(source="local", dir=str(tmp_path))
    dm.setup()
    assert len(dm.splits["train"]) == 20 and len(dm.splits["val"]) == 4
    assert dm.full_train.sample_indices()[:3] == [100, 101, 102]


def test_local_train_only_needs_split_from_train(tmp_path):
    write_csvs(tmp_path, ROWS, ROWS[:4])  # dev.csv but no test.csv: never a silent test set from train
    with pytest.raises(DataError, match="no test.csv.*data.split_from_train=true"):
        make(source="local", dir=str(tmp_path)).setup()


def test_local_train_only_is_split_with_seed(tmp_path):
    write_csvs(tmp_path, ROWS)
    a, b = (make(source="local", dir=str(tmp_path), seed=3, split_from_train=True) for _ in range(2))
    a.setup(), b.setup()
    assert a.splits["test"].sample_indices() == b.splits["test"].sample_indices()
    sizes = [len(a.splits[s]) for s in ("train", "val", "test")]
    assert sum(sizes) == 20 and sizes[1] == 2 and sizes[2] == 2
    assert not set(a.splits["train"].sample_indices()) & set(a.splits["test"].sample_indices())


@pytest.mark.parametrize("problem,match", [
    ("missing_dir", "not a folder"),
    ("missing_file", "train.csv not found"),
    ("missing_column", "missing column 'label'"),
    ("unknown_label", "unknown label"),
    ("empty_split", "empty"),
])
def test_bad_input_one_line_error(tmp_path, problem, match):
    root = tmp_path / "d"
    if problem == "missing_file":
        root.mkdir()
    elif problem == "missing_column":
        write_csvs(root, [{"sentence": "x", "sample_index": 0}])
    elif problem == "unknown_label":
        write_csvs(root, [{**r, "label": 7 if i == 3 else r["label"]} for i, r in enumerate(ROWS)])
    elif problem == "empty_split":
        write_csvs(root, ROWS, ROWS[:2], [])
        (root / "test.csv").write_text("label,sentence,sample_index\n")
    dm = make(source="local", dir=str(root))
    with pytest.raises(DataError, match=match) as err:
        dm.setup()
    assert "\n" not in str(err.value)


def test_offline_hub_fails_fast_naming_override(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="data.source=local"):
        make(source="hub", name="sst2").setup()


def test_excluding_unknown_indices_is_an_error():
    with pytest.raises(DataError, match="not in the train split"):
        make(exclude=[10_000]).setup()


def test_length_grouped_batches_cover_each_example_once_and_pad_less():
    import torch

    from memlab.data.samplers import LengthGroupedBatches

    lengths = [int(x) for x in torch.randint(3, 60, (1000,), generator=torch.Generator().manual_seed(0))]
    sampler = LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(1), window=10)
    epoch1, epoch2 = list(sampler), list(sampler)
    assert len(epoch1) == len(sampler)
    assert sorted(i for b in epoch1 for i in b) == list(range(1000))
    assert epoch1 != epoch2  # a new shuffle every epoch
    again = list(LengthGroupedBatches(lengths, 32, torch.Generator().manual_seed(1), window=10))
    assert again == epoch1  # seeded
    grouped = sum(max(lengths[i] for i in b) for b in epoch1) / len(epoch1)
    plain = sum(max(lengths[i] for i in range(s, min(s + 32, 1000))) for s in range(0, 1000, 32)) / 32
    assert grouped < 0.8 * plain


def test_group_by_length_loader_yields_all_training_examples():
    dm = make(group_by_length=True)
    dm.setup()
    seen = [int(i) for b in dm.train_dataloader() for i in b["sample_index"]]
    assert sorted(seen) == sorted(dm.splits["train"].sample_indices())
