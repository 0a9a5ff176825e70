"""The run's peak GPU memory goes into metrics.json only on CUDA (tests/gpu checks the value on a GPU)."""
from __future__ import annotations

import torch

from memlab.callbacks.timing import peak_gpu_memory


def test_no_gpu_memory_entry_off_cuda():
    assert peak_gpu_memory(torch.device("cpu")) == {}
