"""Callback that records each training instance's training dynamics from the training step's own
forward (no extra pass over the data): at every training batch, from the logits the step returns
(``{"loss", "logits"}``, :class:`memlab.model.classifier.ClassifierModule`) and the batch's ``labels``
and ``sample_index``, one record per presentation:

    correct  argmax_c z_c == y
    margin   z_y - max_{c≠y} z_c              (AUM's margin)
    el2n     ‖softmax(z) - onehot(y)‖₂        (EL2N)
    loss     CE(z, y)                         (without the L2 term)

The logits are the training forward's: dropout on, before that batch's update (Toneva et al. 2019
count forgetting events on exactly these). Records stay on the model's device until the epoch ends
(no synchronisation per step), then become numpy arrays, one row per visit. ``seconds`` is the
callback's own overhead. The proxies: :func:`memlab.studies.training_dynamics.dynamics_scores` on
:meth:`TrainingDynamicsCallback.records`. Single process only (a one-line error under DDP: each rank
sees only its shard of the batches; gathering them is not implemented).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as L
import torch

from ..errors import ConfigError
from ..utils.io import atomic_write

STATS = ("correct", "margin", "el2n", "loss")


@torch.no_grad()
def presentation_stats(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[B, 4]`` float32: correct, margin, el2n, loss of each row of ``logits`` with its label."""
    z = logits.float()
    gold = z.gather(1, labels[:, None]).squeeze(1)
    others = z.scatter(1, labels[:, None], float("-inf")).amax(1)
    probs = z.softmax(-1)
    onehot = torch.nn.functional.one_hot(labels, z.shape[1]).float()
    return torch.stack([(z.argmax(1) == labels).float(), gold - others, (probs - onehot).norm(dim=1),
                        torch.logsumexp(z, 1) - gold], dim=1)


class TrainingDynamicsCallback(L.Callback):
    def __init__(self):
        self.seconds = 0.0                            # this callback's own time
        self._epoch_parts: list[tuple[torch.Tensor, torch.Tensor]] = []   # on device, this epoch
        self._rows: list[dict[str, np.ndarray]] = []  # per finished epoch

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            raise ConfigError("training dynamics are recorded in a single process; set candidates.dynamics=false under DDP")

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_parts = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        started = time.perf_counter()
        if not isinstance(outputs, dict) or "logits" not in outputs:
            raise ConfigError("training dynamics need the training step to return {'loss', 'logits'} "
                              "(memlab.model.classifier.ClassifierModule does)")
        labels = batch["labels"]
        index = torch.as_tensor(batch["sample_index"])
        self._epoch_parts.append((index.detach(), presentation_stats(outputs["logits"], labels.to(outputs["logits"].device))))
        self.seconds += time.perf_counter() - started

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        started = time.perf_counter()
        if self._epoch_parts:
            index = torch.cat([i.cpu() for i, _ in self._epoch_parts]).numpy().astype(np.int64)
            stats = torch.cat([s for _, s in self._epoch_parts]).cpu().numpy()
            rows = {"sample_index": index, "epoch": np.full(len(index), trainer.current_epoch, dtype=np.int32)}
            rows.update({name: stats[:, k] for k, name in enumerate(STATS)})
            rows["correct"] = rows["correct"].astype(bool)
            self._rows.append(rows)
        self._epoch_parts = []
        self.seconds += time.perf_counter() - started

    def records(self) -> pd.DataFrame:
        """One row per presentation: ``sample_index, epoch, correct, margin, el2n, loss``."""
        columns = ("sample_index", "epoch", *STATS)
        if not self._rows:
            return pd.DataFrame({c: [] for c in columns})
        return pd.DataFrame({c: np.concatenate([r[c] for r in self._rows]) for c in columns})

    def save(self, path: str | Path) -> None:
        """The records as one ``.npz`` (numpy arrays, one row per presentation) and ``seconds``."""
        records = self.records()
        atomic_write(path, lambda tmp: np.savez(tmp, seconds=np.float64(self.seconds),
                                                **{c: records[c].to_numpy() for c in records.columns}))


def load_records(path: str | Path) -> tuple[pd.DataFrame, float]:
    """(records, the callback's overhead seconds) saved by :meth:`TrainingDynamicsCallback.save`."""
    with np.load(path) as f:
        return pd.DataFrame({c: f[c] for c in f.files if c != "seconds"}), float(f["seconds"])
