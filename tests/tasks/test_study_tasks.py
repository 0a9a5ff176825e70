"""The stability and Feldman-Zhang tasks end to end on generated data (in-process, tiny)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from scipy.stats import spearmanr

from memlab.tasks.runner import run


def test_stability_task_writes_matrix(tiny_cfg, tmp_path):
    metrics = run(tiny_cfg("experiment=smoke_studies", "task=stability"))
    matrix = pd.read_csv(tmp_path / "stability.csv", index_col="run")
    assert matrix.shape == (2, 2) and (matrix.values.diagonal() == 1).all()
    assert (tmp_path / "stability.png").is_file()
    rankings = sorted((tmp_path / "cache" / "rankings").glob("*/memorization/scores.csv"))
    assert len(rankings) == 2  # one cached ranking per seed
    a, b = (pd.read_csv(f).set_index("sample_index")["mem_score"] for f in rankings)
    expected = spearmanr(a, b.loc[a.index]).statistic  # independently, from the two seeds' scores
    assert metrics["stability/spearman_min"] == pytest.approx(expected, abs=1e-9)
    assert expected < 1 and matrix.iloc[0, 1] == pytest.approx(expected, abs=1e-9)  # two models, two rankings


def test_fz_task_is_resumable_per_model(tiny_cfg, tmp_path):
    cfg = tiny_cfg("experiment=smoke_studies", "task=fz")
    run(cfg)
    fz = pd.read_csv(tmp_path / "fz_scores.csv")
    assert list(fz.columns) == ["sample_index", "label", "fz_mem", "fz_se", "n_in", "n_out", "fz_mem_correct",
                                "fz_se_correct"] and len(fz) == 96
    assert (fz["n_in"] + fz["n_out"] == 4).all() and fz["n_in"].sum() == 4 * 48  # subset_fraction 0.5
    assert "fz_reliability" in json.loads((tmp_path / "metrics.json").read_text())
    models = sorted((tmp_path / "cache" / "fz").rglob("model-*.npz"))
    assert len(models) == 4
    stamp = [m.stat().st_mtime_ns for m in models]
    run(cfg)  # second run: every model is reused, scores identical
    assert [m.stat().st_mtime_ns for m in models] == stamp
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fz_scores.csv"), fz)
    spearman = json.loads((tmp_path / "fz_spearman.json").read_text())
    ranking = pd.read_csv(next((tmp_path / "cache" / "rankings").glob("*/memorization/scores.csv")))
    merged = ranking.merge(fz, on="sample_index").dropna(subset=["mem_score", "fz_mem"])
    assert spearman["mem_score"]["n"] == len(merged) > 48  # aligned on sample_index (NaN: never in or never out)
    expected = spearmanr(merged["mem_score"], merged["fz_mem"]).statistic if merged["fz_mem"].nunique() > 1 else None
    rho = spearman["mem_score"]["overall"]
    assert (rho != rho) if expected is None else rho == pytest.approx(expected, abs=1e-9)


def test_every_task_has_a_module_with_run():
    import importlib

    from memlab.tasks.runner import TASKS

    for name, module in {**TASKS, "removal job": "removal"}.items():
        assert callable(importlib.import_module(f"memlab.tasks.{module}").run), name


def test_task_selection_and_the_ranking_scoring_callback(tiny_cfg):
    import hydra
    import pytorch_lightning as L

    from memlab.tasks.runner import task_module
    from memlab.jobs.ranking_cache import scoring_callback_target

    assert task_module(tiny_cfg()) == "train" and task_module(tiny_cfg("task=fz")) == "fz"
    assert task_module(tiny_cfg("removal=default")) == "removal"  # task=train with a strategy: a removal job
    cfg = tiny_cfg("removal=default")
    assert "memorization" not in cfg.callbacks  # the target comes from the callbacks=memorization group
    assert issubclass(hydra.utils.get_class(scoring_callback_target(cfg)), L.Callback)
