"""``make gpu-check`` (benchmarks/gpu_check.py) on a machine without CUDA: one line, exit 0; and the
runs it would start on a GPU machine compose (every override exists and means what it should)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib

from conftest import ROOT, compose

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [gpu_check().NO_CUDA]


def test_the_runs_it_would_start_compose(tmp_path):
    module = gpu_check()
    steps = dict(module.commands(tmp_path, n_gpus=2, data_dir=tmp_path / "sst2", hub=False))
    assert list(steps) == ["tests", "gpu", "ddp"]
    assert steps["tests"][-3:] == ["-m", "gpu", "tests/gpu"]
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert any(m.startswith("gpu:") for m in markers)  # the marker it selects is registered
    gpu = compose(steps["gpu"][3:], tmp_path)
    assert (gpu.trainer.accelerator, gpu.trainer.devices, gpu.trainer.max_epochs) == ("gpu", 1, 1)
    assert gpu.model.lr_schedule == "linear" and gpu.model.l2 == 5e-3  # recipe=study
    assert gpu.data.source == "local" and gpu.data.dir == str(tmp_path / "sst2")
    assert gpu.model.pretrained.startswith("packaged:")  # model=minilm without the hub
    assert "memorization" in gpu.callbacks  # trained and scored
    ddp = compose(steps["ddp"][3:], tmp_path)
    assert (ddp.trainer.strategy, ddp.trainer.devices) == ("ddp", 2)
    single = dict(module.commands(tmp_path, n_gpus=1, data_dir=None, hub=True))
    assert list(single) == ["tests", "gpu"]
    assert compose(single["gpu"][3:], tmp_path).data.source == "hub"
