"""Callback that records a full-data training's learning curve: after every validation, the epoch's
``val/acc`` and (``test_every_epoch``, the default) the test split's accuracy, evaluated here; at the end
of training ``curve/epoch``, ``curve/val_acc``, ``curve/test_acc`` as lists in metrics.json and
``learning_curve.png`` with the plateau epoch (:func:`memlab.studies.learning_curve.plateau_epoch`).
Enabled by ``study=learning_curve`` (experiment=snli_learning_curve, yahoo_learning_curve).

The test pass runs under a forked RNG: the training it watches is the one a run without it trains."""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as L
import torch
from pytorch_lightning.trainer.states import TrainerFn

from ..report.study_figures import plot_learning_curve
from ..studies.learning_curve import plateau_epoch
from ..utils.io import update_json

log = logging.getLogger("memlab")


class LearningCurve(L.Callback):
    def __init__(self, output_dir: str, test_every_epoch: bool = True):
        self.output_dir, self.test_every_epoch = Path(output_dir), test_every_epoch
        self.epochs: list[int] = []
        self.val_acc: list[float] = []
        self.test_acc: list[float] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:  # not trainer.validate()
            return
        value = trainer.callback_metrics.get("val/acc")
        self.epochs.append(trainer.current_epoch + 1)
        self.val_acc.append(float(value) if value is not None else float("nan"))
        if self.test_every_epoch:
            self.test_acc.append(self.test_accuracy(trainer, pl_module))

    @torch.no_grad()
    def test_accuracy(self, trainer: L.Trainer, pl_module: L.LightningModule) -> float:
        """The test split's accuracy now (the model in eval mode, then back in the mode it was in). Under DDP
        every rank reads the whole split (a plain loader, no distributed sampler): the same number on each."""
        was_training, device = pl_module.training, pl_module.device
        correct = total = 0
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            pl_module.eval()
            for batch in trainer.datamodule.test_dataloader():
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                logits = pl_module.predict_logits(batch) if hasattr(pl_module, "predict_logits") else pl_module(batch)
                predicted = logits.argmax(-1)
                correct += int((predicted == batch["labels"]).sum())
                total += len(predicted)
        pl_module.train(was_training)
        return correct / total if total else float("nan")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or not self.epochs:
            return
        curves = {"validation": self.val_acc}
        metrics = {"curve/epoch": self.epochs, "curve/val_acc": self.val_acc}
        if self.test_acc:
            curves["test"] = metrics["curve/test_acc"] = self.test_acc
        plateau = plateau_epoch(self.epochs, self.test_acc or self.val_acc)
        metrics["curve/plateau_epoch"] = plateau
        self.output_dir.mkdir(parents=True, exist_ok=True)
        update_json(self.output_dir / "metrics.json", metrics)
        plot_learning_curve(self.epochs, curves, self.output_dir / "learning_curve.png", plateau)
        log.info("learning curve: plateau at epoch %s of %d (%s acc within 0.5 pp of its best) -> %s", plateau,
                 len(self.epochs), "test" if self.test_acc else "val", self.output_dir / "learning_curve.png")
