"""data=custom (issue 23): any text classification folder (CSV, TSV, JSON Lines, Parquet, save_to_disk)
with its own column names and string labels reads alike; bad input is one line naming the file."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from memlab.data.custom_source import CustomColumns, read_custom
from memlab.data.text import TextDataModule
from memlab.errors import DataError

SPLIT_FILES = {"train": "train", "val": "dev", "test": "test"}
COLUMNS = CustomColumns(text="review", label="category")


def reviews(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"review": [f"{'great' if i % 3 else 'dull'} film number {offset + i}" for i in range(n)],
                         "category": ["fresh" if i % 3 else "rotten" for i in range(n)],
                         "doc": [1000 + offset + i for i in range(n)]})


SPLITS = {"train": reviews(24), "val": reviews(6, 100), "test": reviews(6, 200)}


def write_folder(root: Path, fmt: str, splits=SPLITS) -> Path:
    """``splits`` as ``root/{train,dev,test}.<fmt>``, or as a save_to_disk DatasetDict (fmt="disk")."""
    root.mkdir(parents=True, exist_ok=True)
    if fmt == "disk":
        from datasets import ClassLabel, Dataset, DatasetDict

        saved = DatasetDict({name: Dataset.from_pandas(df, preserve_index=False)
                             for name, df in zip(("train", "validation", "test"), splits.values())})
        saved.cast_column("category", ClassLabel(names=["fresh", "rotten"])).save_to_disk(str(root))
        return root
    for split, df in splits.items():
        file = root / f"{SPLIT_FILES[split]}.{fmt}"
        if fmt == "csv":
            df.to_csv(file, index=False)
        elif fmt == "tsv":
            df.to_csv(file, sep="\t", index=False)
        elif fmt == "jsonl":
            df.to_json(file, orient="records", lines=True)
        else:
            df.to_parquet(file)
    return root


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "disk"])
def test_every_format_reads_the_same_rows_and_classes(tmp_path, fmt):
    frames, names = read_custom(str(write_folder(tmp_path / fmt, fmt)), COLUMNS, cache_dir=str(tmp_path / "cache"))
    assert names == ["fresh", "rotten"]  # sorted strings, or the save_to_disk folder's ClassLabel
    assert [len(frames[s]) for s in ("train", "val", "test")] == [24, 6, 6]
    train = frames["train"]
    assert train["text"].tolist() == SPLITS["train"]["review"].tolist()
    assert train["label"].tolist() == [0 if c == "fresh" else 1 for c in SPLITS["train"]["category"]]
    assert train["sample_index"].tolist() == list(range(24))  # no id column: the row order


def test_data_module_takes_its_classes_and_ids_from_the_data(tmp_path):
    dm = TextDataModule(name="custom", tokenizer="tiny-random", source="custom", num_classes=None,
                        path=str(write_folder(tmp_path / "d", "jsonl")), text_column="review",
                        label_column="category", id_column="doc", cache_dir=str(tmp_path / "cache"))
    dm.setup()
    assert dm.class_names == ["fresh", "rotten"] and dm.num_classes == 2
    assert dm.full_train.sample_indices()[:3] == [1000, 1001, 1002]
    assert dm.full_train.examples[0]["text"] == "dull film number 0"


def test_class_names_setting_orders_the_classes_and_integer_labels_index_it(tmp_path):
    root = write_folder(tmp_path / "d", "csv")
    frames, names = read_custom(str(root), COLUMNS, class_names=["rotten", "fresh"], cache_dir=str(tmp_path))
    assert names == ["rotten", "fresh"] and frames["train"]["label"].iloc[0] == 0  # row 0 is rotten
    ints = {s: df.assign(category=(df["category"] == "fresh").astype(int)) for s, df in SPLITS.items()}
    _, int_names = read_custom(str(write_folder(tmp_path / "i", "csv", ints)), COLUMNS, class_names=["neg", "pos"],
                               cache_dir=str(tmp_path))
    _, plain = read_custom(str(write_folder(tmp_path / "p", "parquet", ints)), COLUMNS, cache_dir=str(tmp_path))
    assert int_names == ["neg", "pos"] and plain == ["0", "1"]


def test_text_pairs_from_a_second_column(tmp_path):
    pairs = {s: df.assign(second=df["review"].str.upper()) for s, df in SPLITS.items()}
    dm = TextDataModule(name="custom", tokenizer="tiny-random", source="custom", num_classes=None,
                        path=str(write_folder(tmp_path / "d", "jsonl", pairs)), text_column="review",
                        text_pair_column="second", label_column="category", cache_dir=str(tmp_path / "cache"))
    dm.setup()
    assert dm.pair and dm.full_train.examples[0]["text"] == "dull film number 0 ||| DULL FILM NUMBER 0"
    assert "token_type_ids" in dm.full_train.examples[0]


def test_missing_dev_and_test_are_carved_only_when_asked_for(tmp_path):
    root = write_folder(tmp_path / "d", "jsonl", {"train": reviews(40)})
    with pytest.raises(DataError, match="no test and no dev split.*data.split_from_train=true"):
        read_custom(str(root), COLUMNS, cache_dir=str(tmp_path))
    frames, _ = read_custom(str(root), COLUMNS, split_from_train=True, seed=3, cache_dir=str(tmp_path))
    assert [len(frames[s]) for s in ("train", "val", "test")] == [32, 4, 4]
    everything = sum((frames[s]["sample_index"].tolist() for s in frames), [])
    assert sorted(everything) == list(range(40))  # each row once, under its original row number


def bad_folder(tmp_path: Path, problem: str) -> Path:
    root = tmp_path / problem
    train = SPLITS["train"]
    if problem == "no_text_column":
        return write_folder(root, "jsonl", {**SPLITS, "train": train.rename(columns={"review": "body"})})
    if problem == "empty_split":
        write_folder(root, "csv")
        (root / "dev.csv").write_text("review,category,doc\n")
        return root
    if problem == "empty_parquet":
        write_folder(root, "parquet")
        train.iloc[:0].to_parquet(root / "test.parquet")
        return root
    if problem == "single_class":
        return write_folder(root, "jsonl", {**SPLITS, "train": train.assign(category="fresh")})
    if problem == "duplicate_ids":
        return write_folder(root, "parquet", {**SPLITS, "train": train.assign(doc=[7, 7] + list(range(22)))})
    if problem == "unreadable":
        write_folder(root, "jsonl")
        (root / "test.jsonl").write_text('{"review": "fine", "category": "fresh"}\n{not json at all\n')
        return root
    if problem == "unknown_label":
        return write_folder(root, "csv")
    if problem == "two_train_files":
        write_folder(root, "csv")
        train.to_json(root / "train.jsonl", orient="records", lines=True)
        return root
    raise AssertionError(problem)


@pytest.mark.parametrize("problem,match", [
    ("no_text_column", r"train\.jsonl: no column 'review' \(data\.text_column\); columns: body, category, doc"),
    ("empty_split", r"dev\.csv: empty split"),
    ("empty_parquet", r"test\.parquet: empty split"),
    ("single_class", r"train\.jsonl: every training row has the label 'fresh'"),
    ("duplicate_ids", r"train\.parquet: 1 ids of data\.id_column=doc occur more than once \(7\)"),
    ("unreadable", r"test\.jsonl: cannot be read as JSONL"),
    ("unknown_label", r"train\.csv: unknown label 'fresh' in row 2; data\.class_names has rotten, meh"),
    ("two_train_files", r"holds 2 train files \(train\.csv, train\.jsonl\)"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path, problem, match):
    class_names = ["rotten", "meh"] if problem == "unknown_label" else None
    with pytest.raises(DataError, match=match) as err:
        read_custom(str(bad_folder(tmp_path, problem)), CustomColumns("review", "category", id="doc"),
                    class_names=class_names, cache_dir=str(tmp_path / "cache"))
    assert "\n" not in str(err.value)


def test_a_missing_path_or_an_offline_hub_id_is_one_line(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        read_custom(str(tmp_path / "nowhere"), COLUMNS)
    with pytest.raises(DataError, match="data.path=someone/not-cached: could not load it from the hub.*offline"):
        read_custom("someone/not-cached", COLUMNS)
    with pytest.raises(DataError, match=r"has no split 'dev_matched' \(data.split_names.val\); splits: train, validation, test"):
        read_custom(str(write_folder(tmp_path / "disk", "disk")), COLUMNS, split_names={"val": "dev_matched"})


def test_unlabelled_hub_rows_and_fractional_labels_are_one_line():
    from memlab.data.custom_source import encode_labels

    with pytest.raises(DataError, match=r"x \[test\]: label -1 in row 3 is not a class index.*data.split_names"):
        encode_labels({"test": (pd.Series([0, 1, -1]), "x [test]")}, None, None)
    with pytest.raises(DataError, match=r"label 1.5 in row 2 is not a class index \(0, 1, ...\) or a class name$"):
        encode_labels({"train": (pd.Series([0, 1.5]), "x [train]")}, None, None)
