"""Your data and your model (issue 23) end to end: `experiment=memorization data.path=DIR ...` trains and
scores every training row of a folder with string labels, shows the class names, gives the same scores
from JSON Lines, Parquet and a save_to_disk folder; divergence and unsupported models stop with one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import compose
from memlab.errors import ConfigError, DataError, MemlabError, TrainingDiverged
from memlab.jobs.config_checks import check_config
from memlab.tasks.runner import main, run

CUSTOM = ["experiment=memorization", "logger=none", "model=tiny_bert", "trainer.max_epochs=1",
          "data.text_column=review", "data.label_column=category"]


def reviews(n: int, offset: int = 0) -> pd.DataFrame:
    good, bad = "great superb lovely fine".split(), "dull awful bland poor".split()
    rows = [{"review": f"the film was {(good if i % 2 else bad)[i % 4]} and {'very' if i % 3 else 'rather'} long",
             "category": "fresh" if i % 2 else "rotten"} for i in range(offset, offset + n)]
    return pd.DataFrame(rows)


def write_folders(root):
    """The same three splits as JSON Lines, Parquet and a save_to_disk folder."""
    from datasets import Dataset, DatasetDict

    splits = {"train": reviews(48), "dev": reviews(16, 100), "test": reviews(16, 200)}
    for fmt in ("jsonl", "parquet"):
        (root / fmt).mkdir(parents=True)
        for name, df in splits.items():
            df.to_json(root / fmt / f"{name}.jsonl", orient="records", lines=True) if fmt == "jsonl" \
                else df.to_parquet(root / fmt / f"{name}.parquet")
    DatasetDict({name if name != "dev" else "validation": Dataset.from_pandas(df, preserve_index=False)
                 for name, df in splits.items()}).save_to_disk(str(root / "disk"))
    return root


def test_every_row_scored_with_class_names_and_the_same_scores_from_every_format(tmp_path):
    folders = write_folders(tmp_path / "data")
    scores = {}
    for fmt in ("jsonl", "parquet", "disk"):
        out = tmp_path / fmt
        metrics = run(compose([*CUSTOM, f"data.path={folders / fmt}"], out))
        table = pd.read_csv(out / "memorization" / "scores.csv")
        assert sorted(table["sample_index"]) == list(range(48))  # every training row, by its row number
        assert metrics["data/class_names"] == ["fresh", "rotten"]
        assert json.loads((out / "metrics.json").read_text())["data/class_names"] == ["fresh", "rotten"]
        assert (table["class_name"] == table["label"].map({0: "fresh", 1: "rotten"})).all()
        top_bottom = (out / "memorization" / "top_bottom.md").read_text()
        assert "## fresh (label 0)" in top_bottom and "## rotten (label 1)" in top_bottom
        scores[fmt] = table.set_index("sample_index").sort_index()
    for fmt in ("parquet", "disk"):
        assert (scores[fmt]["text"] == scores["jsonl"]["text"]).all()
        pd.testing.assert_series_equal(scores[fmt]["loo_score"], scores["jsonl"]["loo_score"], rtol=1e-6)


def test_custom_data_errors_stop_before_training(tmp_path):
    folders = write_folders(tmp_path / "data")
    with pytest.raises(ConfigError, match="data=custom needs data.path=DIR"):
        run(compose(CUSTOM, tmp_path / "nopath"))
    with pytest.raises(DataError, match=r"train\.jsonl: no column 'body' \(data\.text_column\); columns: review, category"):
        run(compose([*CUSTOM, f"data.path={folders / 'jsonl'}", "data.text_column=body"], tmp_path / "col"))
    assert (tmp_path / "col" / "job_failed.json").is_file() and not (tmp_path / "col" / "memorization").exists()


def test_divergence_stops_at_once_with_one_line_and_no_scores(tmp_path, capsys):
    cfg = compose(["experiment=smoke_memorization", "logger=none", "model.lr=1e6"], tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(cfg)
    assert stop.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "training diverged at epoch 0, step" in lines[0] and "learning rate 1e+06" in lines[0]
    assert "model.lr=100000" in lines[0]  # what to try
    failed = json.loads((tmp_path / "job_failed.json").read_text())
    assert failed["type"] == "TrainingDiverged"
    assert not (tmp_path / "memorization" / "scores.csv").exists()


def test_weights_left_non_finite_by_the_last_step_are_a_divergence():
    from memlab.model.classifier import ClassifierModule

    module = ClassifierModule(torch.nn.Linear(3, 2), num_classes=2, lr=0.5)
    module.on_train_end()  # finite weights: nothing to say
    with torch.no_grad():
        module.net.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"1 weight tensors are not finite after the last step \(e.g. net.weight\)"):
        module.on_train_end()


def write_config(folder, **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_unsupported_architecture_and_freeze_layers_are_one_line(tmp_path):
    t5 = write_config(tmp_path / "t5", model_type="t5", num_layers=2)
    with pytest.raises(MemlabError, match=r"t5 model; supported: BERT-style encoders: BERT, MiniLM \(model_type bert\); "
                                          r"DistilBERT \(model_type distilbert\); RoBERTa \(model_type roberta\)"):
        check_config(compose(["experiment=smoke", f"model.pretrained={t5}"], tmp_path / "a"))
    gpt2 = write_config(tmp_path / "gpt2", model_type="gpt2", n_layer=2)  # a decoder's own layer count key
    with pytest.raises(ConfigError, match=r"model.net.freeze_layers=4 is out of range; allowed: an integer from 0 to 2"):
        check_config(compose(["experiment=smoke", f"model.pretrained={gpt2}"], tmp_path / "c"))
    bert = write_config(tmp_path / "bert", model_type="bert", num_hidden_layers=2)
    with pytest.raises(ConfigError, match=r"model.net.freeze_layers=4 is out of range; allowed: an integer from 0 to 2"):
        check_config(compose(["experiment=smoke", f"model.pretrained={bert}"], tmp_path / "b"))


def test_loading_another_architecture_names_the_supported_ones(tmp_path):
    from transformers import T5Config, T5Model

    from memlab.model.encoders import ModelLoadError, load_encoder

    T5Model(T5Config(num_layers=1, d_model=8, d_kv=4, d_ff=16, num_heads=2, vocab_size=16)).save_pretrained(tmp_path / "g")
    with pytest.raises(ModelLoadError, match="is a t5 model; supported: BERT-style") as err:
        load_encoder(str(tmp_path / "g"))
    assert "\n" not in str(err.value)


def test_edited_data_files_make_a_new_ranking_key(tmp_path):
    from memlab.jobs.ranking_cache import ranking_key

    folders = write_folders(tmp_path / "data")
    cfg = lambda: compose([*CUSTOM, f"data.path={folders / 'jsonl'}"], tmp_path / "out")  # noqa: E731
    before = ranking_key(cfg())
    assert ranking_key(cfg()) == before
    reviews(50).to_json(folders / "jsonl" / "train.jsonl", orient="records", lines=True)
    assert ranking_key(cfg()) != before
