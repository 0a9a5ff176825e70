"""`python -m memlab` end to end in a subprocess: metrics.json, W&B offline run dir, logger=none."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def run_memlab(tmp_path, *overrides, env=None):
    cmd = [sys.executable, "-m", "memlab", *overrides, f"hydra.run.dir={tmp_path}", f"paths.cache_dir={tmp_path}/cache"]
    full_env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# A configuration that learns in a second: an MLP on random conv features of 4 colour classes.
LEARNABLE = ("experiment=smoke", "data=tiny_image", "model=tiny_mlp", "model.lr=0.05", "data.batch_size=8",
             "trainer.max_epochs=10")


def test_smoke_writes_metrics(tmp_path):
    run_memlab(tmp_path, *LEARNABLE)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/acc", "val/acc", "train/epoch_seconds"):
        assert key in metrics
    # the command really trained and tested this data: far above chance (0.25), on the 64 train pictures
    assert metrics["test/acc"] >= 0.8 and metrics["train/n_examples"] == 64
    assert metrics["train/epoch_seconds"] > 0
    # the default logger includes W&B; WANDB_MODE=disabled must win over its offline default
    assert not list(tmp_path.glob("wandb/*run-*")), "WANDB_MODE=disabled was ignored"


def test_wandb_offline_run_dir_appears(tmp_path):
    run_memlab(tmp_path, "experiment=smoke", "trainer.max_epochs=1", "logger=wandb", env={"WANDB_MODE": "offline"})
    assert list((tmp_path / "wandb").glob("offline-run-*")), "no offline W&B run directory"


def test_bad_data_dir_is_one_clear_line(tmp_path):
    cmd = [sys.executable, "-m", "memlab", "experiment=smoke", "data.source=local", f"data.dir={tmp_path}/nope",
           f"hydra.run.dir={tmp_path}/run"]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "data.dir" in proc.stderr and "is not a folder" in proc.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
