"""Text data modules on generated and hand-written CSV fixtures; one-line errors for bad input."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memlab.data.base import DataError
from memlab.data.text import TextDataModule

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"


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


# -- sst2_phrases: every labelled phrase of the training trees (GLUE's SST-2) ----------------------------
TREES = [
    # "It rocks !": root 4, "rocks !" 4, "It" 2 (neutral), "rocks" 3, "!" 2
    "(4 (2 It) (4 (3 rocks) (2 !)))",
    # "A dull mess .": root 0, "A dull mess" 1, "dull mess" 0, "dull" 1, "mess" 1; "A", "." neutral
    "(0 (1 (2 A) (0 (1 dull) (1 mess))) (2 .))",
    # repeats "rocks" and "dull mess" with other casing / punctuation: deduplicated
    "(3 (0 (1 Dull) (1 mess)) (3 (3 rocks) (2 --)))",
    # "( not good )" -> "not good" (PTB brackets are punctuation); "good" 3, 3, 3 and 1: the majority
    "(1 (2 -LRB-) (1 (2 not) (3 good)) (2 -RRB-))",
    "(3 (3 good) (3 good))",
    "(2 (1 good) (2 .))",
]


def write_phrase_dir(root, dev=None, test=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "trees").mkdir(exist_ok=True)
    (root / "trees" / "train.txt").write_text("\n".join(TREES) + "\n")
    dev = dev or [{"label": 1, "sentence": "it rocks", "sample_index": 0},
                  {"label": 0, "sentence": "a dull mess", "sample_index": 1}]
    write_csvs(root, ROWS, dev, test or dev)


def test_sst_phrases_drop_neutral_deduplicate_and_label():
    from memlab.data.text_sources import sst_phrases
    from memlab.data.sst_trees import parse_tree

    frame, counts = sst_phrases([parse_tree(t) for t in TREES])
    got = dict(zip(frame["text"], frame["label"]))
    assert got == {"it rocks": 1, "rocks": 1, "a dull mess": 0, "dull mess": 0, "dull": 0, "mess": 0,
                   "dull mess rocks": 1, "not good": 0, "good": 1, "good good": 1}
    # first occurrence order (trees in file order, nodes pre-order) numbers them
    assert frame["text"].tolist()[:3] == ["it rocks", "rocks", "a dull mess"]
    assert frame["sample_index"].tolist() == list(range(len(frame)))
    assert "it" not in got and "." not in got and "a" not in got  # neutral nodes are left out
    assert counts["label_conflicts"] == 1  # "good": 3, 3, 3 and 1
    assert counts["polar_nodes"] == sum(t.count("(") - t.count("(2 ") for t in TREES)


def test_sst2_phrases_local_reads_trees_for_train_and_csvs_for_dev_test(tmp_path):
    write_phrase_dir(tmp_path / "sst2")
    dm = make(name="sst2_phrases", source="local", dir=str(tmp_path / "sst2"))
    dm.setup()
    assert len(dm.full_train) == 10 and len(dm.splits["val"]) == 2 and len(dm.splits["test"]) == 2
    texts = {e["text"]: int(e["labels"]) for e in dm.full_train.examples}
    assert texts["rocks"] == 1 and texts["not good"] == 0
    assert dm.frames["val"]["text"].tolist() == ["it rocks", "a dull mess"]  # the sentences, not phrases
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["labels"]) == 8


def test_sst2_phrases_config_and_errors(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONF_DATA / "sst2_phrases.yaml")
    assert cfg.name == "sst2_phrases" and "limit_train" in cfg and cfg.defaults == ["sst2"]
    (tmp_path / "nodir").mkdir()
    write_csvs(tmp_path / "nodir", ROWS, ROWS[:2], ROWS[2:4])
    with pytest.raises(DataError, match="trees/train.txt not found") as err:
        make(name="sst2_phrases", source="local", dir=str(tmp_path / "nodir")).setup()
    assert "\n" not in str(err.value)
    write_phrase_dir(tmp_path / "bad")
    (tmp_path / "bad" / "trees" / "train.txt").write_text("(3 (2 a) (3 b)\n")
    with pytest.raises(DataError, match="not a PTB tree file"):
        make(name="sst2_phrases", source="local", dir=str(tmp_path / "bad")).setup()
    nodev = tmp_path / "nodev"
    write_phrase_dir(nodev)
    (nodev / "test.csv").unlink()
    with pytest.raises(DataError, match="no test.csv"):  # never carved out of the training phrases
        make(name="sst2_phrases", source="local", dir=str(nodev), split_from_train=True).setup()


def test_sst2_phrases_hub_reader_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="data.source=local"):
        make(source="hub", name="sst2_phrases").setup()


def test_limit_train_is_a_seeded_subsample_in_order():
    full = make()
    full.setup()
    a, b, other = make(limit_train=20), make(limit_train=20), make(limit_train=20, seed=1)
    for dm in (a, b, other):
        dm.setup()
    kept = a.full_train.sample_indices()
    assert len(kept) == 20 and kept == sorted(kept) and kept == b.full_train.sample_indices()
    assert set(kept) <= set(full.full_train.sample_indices()) and kept != other.full_train.sample_indices()
    assert len(a.splits["val"]) == len(full.splits["val"])  # only the train split is cut
    big = make(limit_train=10_000)
    big.setup()
    assert big.full_train.sample_indices() == full.full_train.sample_indices()
    with pytest.raises(DataError, match="limit_train"):
        make(limit_train=0).setup()


def test_typicality_on_phrases_uses_the_whole_sentence_phrases_only():
    """Phrase rows have no sentence of their own: only those that are a whole training sentence match
    a tree; the rest are left out of the table, and nothing fails when a class has no match."""
    from memlab.data.text_sources import sst_phrases
    from memlab.data.sst_trees import parse_tree
    from memlab.studies.typicality import match_trees, typicality_table

    trees = [parse_tree(t) for t in TREES]
    frame, _ = sst_phrases(trees)
    scores = pd.DataFrame({"sample_index": frame["sample_index"], "text": frame["text"], "label": frame["label"],
                           "mem_score": range(len(frame), 0, -1)})
    scores["rank"] = range(1, len(frame) + 1)
    fractions = match_trees(scores, trees, text_column="text")
    matched = set(scores.loc[fractions["matched"].to_numpy(), "text"])
    # the phrases that are a whole sentence ("good ." is the last tree's)
    assert matched == {"it rocks", "a dull mess", "dull mess rocks", "not good", "good good", "good"}
    table = typicality_table(scores, fractions, 10)
    assert table["n"].sum() > 0 and set(table["label"]) == {0, 1}
    only_words = scores[scores["text"].isin(["rocks", "dull"])]
    empty = typicality_table(only_words, match_trees(only_words, trees, text_column="text"), 10)
    assert len(empty) == 0


@pytest.mark.slow
def test_real_sst2_phrases_count():
    from conftest import SHARED_DATA

    root = SHARED_DATA / "sst2"
    if not (root / "trees" / "train.txt").is_file():
        pytest.skip("no ../shared/data/sst2/trees")
    from memlab.data.text_sources import read_local_phrases

    splits = read_local_phrases(root, 0)
    assert len(splits["train"]) == 67903  # GLUE: 67,349 (other text form, see the data config)
    assert len(splits["val"]) == 872 and len(splits["test"]) == 1821
    assert splits["train"]["text"].is_unique
