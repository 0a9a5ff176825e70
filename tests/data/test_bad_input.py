"""Bad input (issue 30.4): a missing data folder is named before any model is looked at; empty texts are an
error naming their rows, or left out and counted with data.drop_empty=true; data.limit_train=N composes for
every text data set without '+'; image data refuses the text-only keys."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from hydra.utils import instantiate

from conftest import compose
from memlab.config_overrides import with_optional_keys
from memlab.data.custom_source import CustomColumns, read_custom
from memlab.data.empty_texts import check_no_empty_texts, drop_empty_texts
from memlab.data.text import TextDataModule
from memlab.data.text_sources import read_local
from memlab.errors import ConfigError, DataError
from memlab.jobs.config_checks import check_config


def rows(n: int, empty=(), offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"sentence": ["" if i in empty else f"{'good' if i % 2 else 'bad'} film {offset + i}"
                                      for i in range(n)],
                         "label": [i % 2 for i in range(n)]})


def csv_folder(root, train_empty=(), dev_empty=()):
    root.mkdir(parents=True, exist_ok=True)
    rows(20, train_empty).to_csv(root / "train.csv", index=False)
    rows(8, dev_empty, 100).to_csv(root / "dev.csv", index=False)
    rows(8, (), 200).to_csv(root / "test.csv", index=False)
    return root


def test_missing_custom_folder_is_named_before_the_model(tmp_path):
    # distilbert is a hub id: offline (the tests' HF_HUB_OFFLINE=1) it would need a download; the missing
    # folder must be the error, not the model
    cfg = compose(["experiment=smoke", "logger=none", "data=custom", "model=distilbert",
                   f"data.path={tmp_path}/missing"], tmp_path / "out")
    with pytest.raises(DataError, match=f"data.path={tmp_path}/missing: no such folder"):
        check_config(cfg)


def test_missing_local_dir_is_named_before_the_model(tmp_path):
    cfg = compose(["experiment=smoke", "logger=none", "data.source=local", "model=distilbert",
                   f"data.dir={tmp_path}/missing"], tmp_path / "out")
    with pytest.raises(DataError, match="is not a folder"):
        check_config(cfg)


def test_empty_texts_are_an_error_naming_file_and_rows(tmp_path):
    root = csv_folder(tmp_path / "d", train_empty=(1, 3, 4, 6, 8, 10, 12))
    with pytest.raises(DataError, match=r"train\.csv: 7 row\(s\) with an empty text: row 2, 4, 5, 7, 9 and 2 more "
                                        r"\(sample_index 1, 3, 4, 6, 8, \.\.\.\); .*data\.drop_empty=true"):
        read_local(root, 2, False, 0)
    frames = read_local(root, 2, False, 0, drop_empty=True)  # the data module drops them
    assert len(frames["train"]) == 20


def test_blank_and_missing_pair_texts_count_as_empty():
    frame = pd.DataFrame({"text": ["a", "  ", "b", "c"], "text_pair": ["x", "y", None, "z"],
                          "sample_index": [10, 11, 12, 13]})
    with pytest.raises(DataError, match=r"where: 2 row\(s\) with an empty text: row 2, 3 \(sample_index 11, 12\)"):
        check_no_empty_texts(frame, "where")
    kept, dropped = drop_empty_texts({"train": frame})
    assert kept["train"]["sample_index"].tolist() == [10, 13] and dropped == {"train": 2}


def test_custom_empty_texts_name_the_file(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    for name, empty in (("train", (0,)), ("dev", ()), ("test", ())):
        pd.DataFrame({"review": ["" if i in empty else f"film {i}" for i in range(6)],
                      "category": ["a", "b"] * 3}).to_json(root / f"{name}.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"train\.jsonl: 1 row\(s\) with an empty text: row 1 "):
        read_custom(str(root), CustomColumns(text="review", label="category"), cache_dir=str(tmp_path / "cache"))


def test_drop_empty_leaves_rows_out_and_counts_them(tmp_path):
    root = csv_folder(tmp_path / "d", train_empty=(3, 5), dev_empty=(0,))
    dm = TextDataModule(name="sst2", tokenizer="tiny-random", source="local", dir=str(root), drop_empty=True)
    dm.setup()
    assert dm.dropped_empty == {"train": 2, "val": 1, "test": 0}
    assert len(dm.full_train) == 18 and 3 not in dm.full_train.sample_indices()
    with pytest.raises(DataError, match="empty text"):
        TextDataModule(name="sst2", tokenizer="tiny-random", source="local", dir=str(root)).setup()


def test_drop_empty_is_counted_in_metrics_json(tmp_path):
    from memlab.tasks.runner import run

    root = tmp_path / "c"
    root.mkdir()
    for name, empty in (("train", (2, 7)), ("dev", ()), ("test", ())):
        pd.DataFrame({"text": ["" if i in empty else f"{'good' if i % 2 else 'bad'} film {i}" for i in range(16)],
                      "label": ["pos" if i % 2 else "neg" for i in range(16)]}).to_csv(root / f"{name}.csv", index=False)
    out = tmp_path / "out"
    run(compose(["experiment=smoke", "logger=none", "data=custom", f"data.path={root}", "data.drop_empty=true",
                 "trainer.max_epochs=1", "callbacks=none"], out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data/dropped_empty"] == 2 and metrics["train/n_examples"] == 14


@pytest.mark.parametrize("data", ["sst2", "sst2_phrases", "snli", "yahoo", "custom", "tiny_text", "tiny_pair",
                                  "tiny_topic"])
def test_limit_train_composes_without_plus_for_every_text_data_set(tmp_path, data):
    overrides = with_optional_keys(["experiment=smoke", "logger=none", f"data={data}", "data.limit_train=40"])
    assert "++data.limit_train=40" in overrides
    cfg = compose(overrides, tmp_path)
    assert cfg.data.limit_train == 40
    assert "limit_train" not in compose(["experiment=smoke", f"data={data}"], tmp_path).data or data == "sst2_phrases"


def test_limit_train_keeps_n_training_rows(tmp_path):
    cfg = compose(with_optional_keys(["experiment=smoke", "logger=none", "data.limit_train=40"]), tmp_path)
    dm = instantiate(cfg.data)
    dm.setup()
    assert len(dm.full_train) == 40 and len(dm.splits["val"]) == 32  # only train is cut


def test_text_only_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="data.limit_train=0 is out of range"):
        check_config(compose(["experiment=smoke", "logger=none", "++data.limit_train=0"], tmp_path))
    with pytest.raises(ConfigError, match="data.limit_train is for text data"):
        check_config(compose(["experiment=smoke_image", "logger=none", "++data.limit_train=10"], tmp_path))
