"""Callback for TracIn self-influence (TracInCP, Pruthi et al. 2020): at the end of every training
epoch, each training instance's squared loss-gradient norm at that checkpoint, weighted by the
epoch's mean learning rate and summed,

    tracin(z) = Σ_epochs  η_e · ‖∇θ CE(z; θ_e)‖²,

over the trainable parameters θ (the L2 term's gradient, shared by every instance, is left out).
The norms come from the identity solver's fast path (token factors, no per-example gradient), one
pass over the training split per epoch. Writes ``tracin.csv`` (``sample_index, tracin`` and one
``grad_norm_sq_epoch<e>`` column per epoch) and ``tracin.json`` (learning rates, seconds) into
``output_dir`` (default: the trainer's root dir). Only the validate and label-noise experiments
enable it; single process only.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytorch_lightning as L
import pandas as pd
import torch

from ..influence.functional import trainable_params
from ..influence.self_influence import memorization_scores
from ..influence.solver import IdentitySolver
from ..utils.io import atomic_write_csv, atomic_write_text

log = logging.getLogger("memlab")


class TracInCallback(L.Callback):
    def __init__(self, output_dir: str | None = None, batch_size: int = 64, enabled: bool = True):
        self.output_dir = Path(output_dir) if output_dir else None
        self.batch_size, self.enabled = batch_size, enabled
        self.norms: list[pd.Series] = []   # per epoch: ‖∇CE‖² by sample_index
        self.learning_rates: list[float] = []
        self.seconds = 0.0                 # the gradient passes only
        self._lr_sum, self._steps = 0.0, 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._lr_sum, self._steps = 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._lr_sum += float(trainer.optimizers[0].param_groups[0]["lr"])  # the step this batch takes
        self._steps += 1

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self.enabled:
            return
        if trainer.world_size > 1:
            raise RuntimeError("TracIn self-influence runs in a single process; disable callbacks.tracin under DDP")
        started = time.perf_counter()
        module = pl_module.scoring_module
        if module is not pl_module.net and not getattr(trainer.datamodule, "prefix_cached", False):
            module = pl_module.net  # callbacks.prefix_cache.enabled=false: no cached hidden states until fit ends
        params = trainable_params(module)
        solver = IdentitySolver().fit(module, params, [], pl_module.training_objective)
        loader = trainer.datamodule.score_dataloader(self.batch_size)
        with torch.enable_grad():
            parts = list(memorization_scores(module, params, loader, solver, pl_module.training_objective))
        index = torch.cat([p["sample_index"] for p in parts]).numpy()
        norm_sq = torch.cat([p["grad_norm_sq"] for p in parts]).double().numpy()
        self.norms.append(pd.Series(norm_sq, index=index))
        self.learning_rates.append(self._lr_sum / max(self._steps, 1))
        self.seconds += time.perf_counter() - started

    def table(self) -> pd.DataFrame:
        """``sample_index, tracin, grad_norm_sq_epoch0, ...`` over the epochs recorded so far."""
        frame = pd.DataFrame({f"grad_norm_sq_epoch{e}": s for e, s in enumerate(self.norms)})
        frame.insert(0, "tracin", sum(lr * frame[f"grad_norm_sq_epoch{e}"] for e, lr in enumerate(self.learning_rates)))
        return frame.rename_axis("sample_index").reset_index().sort_values("sample_index", ignore_index=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        if not self.enabled or not self.norms or trainer.global_rank != 0:
            return
        out = self.output_dir or Path(trainer.default_root_dir)
        atomic_write_csv(self.table(), out / "tracin.csv")
        atomic_write_text(out / "tracin.json", json.dumps(
            {"learning_rates": self.learning_rates, "seconds": self.seconds, "epochs": len(self.norms)}, indent=2))
        log.info("TracIn self-influence over %d epochs (%.1f s of gradient passes) -> %s", len(self.norms),
                 self.seconds, out / "tracin.csv")
