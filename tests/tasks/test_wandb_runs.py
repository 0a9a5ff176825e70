"""Every job's W&B run, written offline from a tiny config and read back from its own log
(tests/wandb_log.py): the nested config, the scores table, the histogram, the figures as images, and one
group per sweep (its jobs and its report)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf
from conftest import ROOT, compose
from wandb_log import offline_runs

from memlab.jobs import wandb_job as job_wandb
from memlab.tasks.runner import run


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    """WANDB_MODE=offline (the suite runs disabled), every W&B file under tmp_path."""
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path),
           "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def media(run, key: str) -> dict:
    """The one object logged under ``key``, with its file checked into the run's files."""
    (logged,) = run.logged(key)
    assert (run.dir / "files" / logged["path"]).is_file() and logged["path"] in run.files
    return logged


def test_memorization_run_holds_config_table_and_figures(tmp_path, offline_wandb):
    metrics = run(compose(["experiment=smoke_memorization", "logger=default"], tmp_path))
    (wb,) = offline_runs(tmp_path / "wandb")
    assert (wb.group, wb.job_type, wb.name) == ("smoke_memorization", "memorization", "smoke_memorization")
    # the resolved config, nested: sweepable values are columns of the runs table
    assert wb.config["seed"] == 0 and wb.config["solver"]["name"] == "ekfac"
    assert wb.config["data"]["_target_"] == "memlab.data.text.TextDataModule"
    assert wb.config["removal"]["strategy"] == "none" and wb.config["trainer"]["max_epochs"] == 3

    scores = pd.read_csv(tmp_path / "memorization" / "scores.csv")
    table = media(wb, "memorization/scores")
    assert table["_type"] == "table-file" and table["nrows"] == len(scores)
    content = json.loads((wb.dir / "files" / table["path"]).read_text())
    column = content["columns"].index
    assert {"sample_index", "text", "loo_score", "mem_score", "rank"} <= set(content["columns"])
    assert [row[column("rank")] for row in content["data"]] == list(range(1, len(scores) + 1))
    top = scores.loc[scores["rank"] == 1].iloc[0]
    assert content["data"][0][column("sample_index")] == top["sample_index"]
    assert content["data"][0][column("text")] == top["text"]
    (histogram,) = wb.logged("memorization/score_histogram")
    assert histogram["_type"] == "histogram" and sum(histogram["values"]) == len(scores)
    assert wb.summary["memorization/scores_table_rows"] == f"all {len(scores)} training instances"

    figure = media(wb, "figures/memorization/score_vs_loss")
    assert figure["_type"] == "image-file"
    written = (tmp_path / "memorization" / "score_vs_loss.png").read_bytes()
    assert (wb.dir / "files" / figure["path"]).read_bytes() == written
    assert figure["sha256"] == hashlib.sha256(written).hexdigest()
    assert wb.summary["test/acc"] == pytest.approx(metrics["test/acc"])
    assert wb.summary["memorization/seconds"] == pytest.approx(metrics["memorization/seconds"])


def test_image_run_shows_images(tmp_path, offline_wandb):
    # a job of its own, as `python -m memlab` runs it: the whole suite's earlier in-process W&B runs once
    # left this run without its figures (not reproduced alone or with any one test file before it)
    cmd = [sys.executable, "-m", "memlab", "experiment=smoke_image", "logger=default", f"hydra.run.dir={tmp_path}",
           f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **offline_wandb}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mem = tmp_path / "memorization"
    assert (mem / "top_bottom.png").read_bytes().startswith(b"\x89PNG")
    assert "](top_bottom.png)" in (mem / "top_bottom.md").read_text()
    (wb,) = offline_runs(tmp_path / "wandb")
    assert wb.job_type == "attribution"
    for name in ("top_bottom", "attributions", "score_vs_loss"):
        assert media(wb, f"figures/memorization/{name}")["_type"] == "image-file"
    content = json.loads((wb.dir / "files" / media(wb, "memorization/scores")["path"]).read_text())
    assert content["columns"][0] == "image"
    # the thumbnails travel in the table's artifact (what `wandb sync` uploads): one picture per row
    (artifact,) = [a for a in wb.artifacts if a.type == "run_table"]
    pictures = [c for c in artifact.manifest.contents if c.path.startswith("media/images/")]
    assert len(pictures) == len(content["data"]) == 64
    assert all(os.path.isfile(c.local_path) for c in pictures)


def sweep(tmp_path, env, name):
    cmd = [sys.executable, "-m", "memlab", "experiment=smoke_removal", "logger=default", "removal.pct=30",
           f"hydra.sweep.dir={tmp_path / name}", f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return offline_runs(tmp_path / name)


def test_two_sweeps_two_groups(tmp_path, offline_wandb):
    first, second = sweep(tmp_path, offline_wandb, "first"), sweep(tmp_path, offline_wandb, "second")
    for runs in (first, second):
        # two jobs (top and random at 30%) and the sweep's report, all in the sweep's one group
        assert sorted(r.job_type for r in runs) == ["random", "report", "top"]
        assert len({r.group for r in runs}) == 1
        jobs = [r for r in runs if r.job_type != "report"]
        swept = {(r.config["removal"]["strategy"], r.config["removal"]["pct"]) for r in jobs}
        assert swept == {("top", 30), ("random", 30)}  # the sweep's parameters, as config columns
    assert first[0].group != second[0].group
    assert first[0].group.endswith("-first") and second[0].group.endswith("-second")


def test_job_type_is_the_strategy_or_the_study():
    def job_type(**cfg):
        return job_wandb.job_type(OmegaConf.create(cfg))

    assert job_type(task="train", removal={"strategy": "random"}, callbacks={"memorization": {}}) == "random"
    assert job_type(task="fz", removal={"strategy": "none"}) == "fz"
    assert job_type(task="train", callbacks={"memorization": {}, "attribution": {}}) == "attribution"
    assert job_type(task="train", callbacks={"memorization": {}}) == "memorization"
    assert job_type(task="train", callbacks={"prefix_cache": {}}) == "train"


def test_only_rank_zero_opens_a_run(monkeypatch):
    cfg = OmegaConf.create({"logger": {"wandb": {"_target_": "x", "mode": "offline"}}, "paths": {"output_dir": "."}})
    for key in job_wandb.RANK_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")  # a DDP child: Lightning's WandbLogger logs from rank 0 only
    assert job_wandb.process_rank() == 1 and job_wandb.start_run(cfg) is None
    monkeypatch.setenv("RANK", "0")  # RANK first, as Lightning reads them
    assert job_wandb.process_rank() == 0
