"""Under DDP (ddp_spawn, 2 CPU processes) each rank scores its own shard, curvature statistics are
all-reduced and rank 0 merges: the scores of a trained model equal the single-process ones (the DDP
run restores the single-process run's final checkpoint, so both score the same weights)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT


def score_run(out, trainer, *overrides):
    cmd = [sys.executable, "-m", "memlab", "experiment=smoke_memorization", "data=tiny_image", "model=tiny_mlp",
           "model.lr=0.05", "data.batch_size=8", "trainer.max_epochs=10", "solver=exact", f"trainer={trainer}",
           "test=false", "logger=none", "callbacks.memorization.batch_size=8",
           "callbacks.memorization.batches_per_chunk=1", f"hydra.run.dir={out}", f"paths.cache_dir={out}/cache",
           *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pd.read_csv(out / "memorization" / "scores.csv")


@pytest.mark.slow  # minutes on 2 busy cores (3 processes start); the same behaviour fast: tests/pipeline/test_scoring.py
def test_ddp_scores_equal_single_process(tmp_path):
    single = score_run(tmp_path / "single", "cpu", "trainer.enable_checkpointing=true")
    (checkpoint,) = (tmp_path / "single" / "checkpoints").glob("*.ckpt")
    assert "epoch=9" in checkpoint.name  # the trained model (10 epochs), not an initialisation
    ddp = score_run(tmp_path / "ddp", "ddp_cpu", f"ckpt_path='{checkpoint}'")
    metrics = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert metrics["val/acc"] >= 0.8  # trained: well above chance (4 colour classes)
    assert len(ddp) == len(single) > 0
    assert ddp["sample_index"].tolist() == single["sample_index"].tolist()
    pd.testing.assert_series_equal(ddp["mem_score"], single["mem_score"], rtol=1e-4, atol=1e-8)
    assert ddp["rank"].tolist() == single["rank"].tolist()
    chunk_files = list((tmp_path / "ddp" / "memorization" / "chunks").glob("chunk-*.pt"))
    assert len(chunk_files) == 8  # 64 examples / 8 per chunk, scored 4 by each rank
    # memorization/seconds times the scores (fit + pass); total_seconds also the files and plots
    assert 0 < metrics["memorization/fit_seconds"] <= metrics["memorization/seconds"]
    assert metrics["memorization/seconds"] < metrics["memorization/total_seconds"]
