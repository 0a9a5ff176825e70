"""Per-epoch learning curves (issue 29): the plateau epoch by hand, a tiny run with study=learning_curve
records val/test accuracy per epoch without changing the training it watches, the SNLI/Yahoo experiments
compose with the study's epochs, and the paper report shows an archived curve with its plateau."""
from __future__ import annotations

import json
import math

import pytest
import yaml

from conftest import ROOT, compose
from memlab.studies.learning_curve import plateau_epoch
from memlab.tasks.runner import run

PAPER_NUMBERS = ROOT.parent / "shared" / "reference" / "paper_numbers.csv"


def test_plateau_is_the_first_epoch_within_half_a_point_of_the_best():
    # best 86.6%; epoch 3 is 0.4 pp below it (within), epoch 2 is 1.6 pp below (not)
    assert plateau_epoch([1, 2, 3, 4, 5], [0.80, 0.85, 0.862, 0.866, 0.864]) == 3
    assert plateau_epoch([1, 2], [0.90, 0.80]) == 1  # the best first: already there
    assert plateau_epoch([1, 2, 3], [0.80, 0.805, 0.81]) == 2  # exactly 0.5 pp counts
    assert plateau_epoch([1, 2], [math.nan, math.nan]) is None and plateau_epoch([], []) is None


def test_curve_run_records_each_epoch_and_trains_the_same_model(tiny_cfg, tmp_path):
    from omegaconf import open_dict

    plain_cfg = tiny_cfg("trainer.max_epochs=2")
    with open_dict(plain_cfg):
        plain_cfg.paths.output_dir = plain_cfg.trainer.default_root_dir = str(tmp_path / "plain")
    plain = run(plain_cfg)
    curve = run(compose(["experiment=smoke", "logger=none", "+study=learning_curve", "trainer.max_epochs=2"],
                        tmp_path / "curve"))
    assert curve["curve/epoch"] == [1, 2]
    assert len(curve["curve/val_acc"]) == len(curve["curve/test_acc"]) == 2
    # the last epoch's test pass is the final test (computed by Lightning's test loop, separately)
    assert curve["curve/test_acc"][-1] == pytest.approx(curve["test/acc"], abs=1e-6)
    assert curve["curve/val_acc"][-1] == pytest.approx(curve["val/acc"], abs=1e-6)
    assert curve["curve/plateau_epoch"] == plateau_epoch([1, 2], curve["curve/test_acc"])
    for key in ("test/acc", "val/loss", "train/loss"):  # the extra test passes left the training alone
        assert curve[key] == plain[key], key
    assert (tmp_path / "curve" / "learning_curve.png").stat().st_size > 1000
    stored = json.loads((tmp_path / "curve" / "metrics.json").read_text())
    assert stored["curve/test_acc"] == curve["curve/test_acc"]


@pytest.mark.parametrize("name, epochs", [("snli_learning_curve", 10), ("yahoo_learning_curve", 5)])
def test_learning_curve_experiments_compose(tmp_path, name, epochs):
    cfg = compose([f"experiment={name}"], tmp_path)
    assert cfg.task == "train" and cfg.trainer.max_epochs == epochs and cfg.model.lr_schedule == "linear"
    assert cfg.callbacks.learning_curve.test_every_epoch is True and "prefix_cache" in cfg.callbacks


@pytest.mark.skipif(not PAPER_NUMBERS.is_file(), reason="needs ../shared/reference/paper_numbers.csv")
def test_paper_report_shows_an_archived_curve_and_its_plateau(tmp_path):
    from memlab.report.paper_command import write_paper_report
    from memlab.report.study_figures import plot_learning_curve

    run_dir = tmp_path / "docs" / "results" / "snli" / "outputs" / "snli_learning_curve" / "2026-12-07" / "10-00-00"
    (run_dir / ".hydra").mkdir(parents=True)
    config = {"task": "train", "seed": 0, "data": {"name": "snli"}, "trainer": {"max_epochs": 4},
              "model": {"pretrained": "distilbert-base-uncased"}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=snli_learning_curve"]))
    accs = [0.70, 0.80, 0.833, 0.836]  # best 83.6%; epoch 3 within 0.5 pp
    (run_dir / "metrics.json").write_text(json.dumps({"test/acc": 0.836, "curve/epoch": [1, 2, 3, 4],
                                                      "curve/val_acc": accs, "curve/test_acc": accs}))
    plot_learning_curve([1, 2, 3, 4], {"test": accs}, run_dir / "learning_curve.png", 3)
    out, _ = write_paper_report([tmp_path / "docs" / "results"], PAPER_NUMBERS, tmp_path / "docs" / "paper.md", "t")
    text = out.read_text()
    snli = text[text.index("## SNLI"):text.index("## Yahoo")]
    assert "plateau at epoch 3" in snli and "83.60%" in snli
    assert "(results/snli/outputs/snli_learning_curve/2026-12-07/10-00-00/learning_curve.png)" in snli
