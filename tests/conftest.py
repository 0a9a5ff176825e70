"""Shared fixtures: no network, no W&B account, few threads (2-core CI machines)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: skipped (with the reason) where there is none."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (make gpu-check runs it on one)")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


def compose(overrides: list[str], tmp_path: Path | None = None):
    """A fully resolved memlab config, as `python -m memlab OVERRIDES` would see it."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            out = str(tmp_path or ROOT / "outputs" / "test")
            cfg.paths.output_dir = out
            cfg.paths.root_dir = str(ROOT)
            cfg.paths.cache_dir = str(Path(out) / "cache")
            del cfg["hydra"]
        OmegaConf.resolve(cfg)
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path):
    return lambda *overrides: compose(["experiment=smoke", "logger=none", *overrides], tmp_path)


@pytest.fixture(scope="module")
def float64_single_thread():
    """Float64 tiny-model numerics on one thread (no oversubscription on a shared 2-core machine)."""
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture
def bf16_kernels(monkeypatch):
    """Run EK-FAC's bfloat16 options as bf16 even on CPUs where memlab would fall back to float32
    (memlab.influence.solver.precision): the tests of the bf16 arithmetic need it to happen."""
    from memlab.influence.solver import precision

    monkeypatch.setattr(precision, "bf16_matmul_is_fast", lambda device_type="cpu": True)


class TinyNet(nn.Module):
    """A 5 -> 6 -> 3 MLP with a fixed initialisation: the scoring and cache tests' model."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))

    def forward(self, x):
        return self.body(x)
