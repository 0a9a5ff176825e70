"""Callback that records the wall time of each training epoch (``train/epoch_seconds`` is the mean), and
the peak GPU memory of a run on CUDA (``gpu/max_memory_allocated_gib``, :func:`peak_gpu_memory`)."""
from __future__ import annotations

import time

import pytorch_lightning as L
import torch


class EpochTimer(L.Callback):
    def __init__(self):
        self.seconds: list[float] = []
        self._start = None

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._last = time.perf_counter()  # epoch end excludes the validation loop that follows

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(getattr(self, "_last", time.perf_counter()) - self._start)

    @property
    def mean_seconds(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else float("nan")


def peak_gpu_memory(device: torch.device) -> dict[str, float]:
    """``{"gpu/max_memory_allocated_gib": ...}``: the most memory torch held on ``device`` since the process
    started (training, scoring and testing together); empty off CUDA."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return {}
    return {"gpu/max_memory_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30}
