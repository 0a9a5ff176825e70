"""The Lightning shell around a classifier network (text or image features): SGD with momentum,
optional linear decay, the study's optional explicit L2 term, accuracy metrics. The network's
trainable part (``scoring_module``) and training objective are what the influence functions use.
A non-finite training loss, or weights left non-finite by the last step, stop the job at once with
one line (:class:`~memlab.errors.TrainingDiverged`): the curvature fit would die on them later.
"""
from __future__ import annotations

import warnings

import pytorch_lightning as L
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from ..errors import TrainingDiverged
from ..influence.functional import TrainingObjective, default_l2_names, split_batch

# The frozen prefix (text) and backbone (images) are in eval mode by design: no dropout, the outputs
# the prefix cache holds. Lightning warns about any module in eval mode at the start of training.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


class ClassifierModule(L.LightningModule):
    def __init__(self, net: nn.Module, num_classes: int, lr: float = 0.01, momentum: float = 0.9,
                 l2: float = 0.0, lr_schedule: str = "constant", pretrained: str | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.num_classes = num_classes
        metrics = {f"{s}_acc": torchmetrics.Accuracy(task="multiclass", num_classes=num_classes) for s in ("train", "val", "test")}
        self.acc = nn.ModuleDict(metrics)

    # -- what influence functions see ---------------------------------------------------------
    @property
    def scoring_module(self) -> nn.Module:
        """θ's module: the trainable suffix on cached prefix outputs, or the whole net."""
        return getattr(self.net, "suffix", self.net)

    @property
    def training_objective(self) -> TrainingObjective:
        module = self.scoring_module
        return TrainingObjective(l2=self.hparams.l2, l2_names=default_l2_names(module))

    def l2_penalty(self) -> torch.Tensor | float:
        obj = self.training_objective
        return obj.l2_penalty(dict(self.scoring_module.named_parameters()))

    # -- training -----------------------------------------------------------------------------
    def forward(self, batch: dict) -> torch.Tensor:
        features, _ = split_batch(batch)
        return self.net(**features)

    @torch.no_grad()
    def predict_logits(self, batch: dict) -> torch.Tensor:
        """Logits for prediction only: a text network's last layer at [CLS] alone (the same values as
        the full layer there, at a fraction of the cost); any other network as ``forward``."""
        features, _ = split_batch(batch)
        if hasattr(self.net, "suffix"):
            return self.net(**features, first_token_only=True)
        return self.net(**features)

    def _step(self, batch: dict, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss to minimise, the logits it came from)."""
        logits = self(batch)
        loss = F.cross_entropy(logits, batch["labels"])
        on_step = stage == "train"
        # the data loss is what is logged: the L2 term (~35 at the start of SST-2) would hide it
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=on_step, batch_size=len(logits))
        self.acc[f"{stage}_acc"](logits.argmax(-1), batch["labels"])
        self.log(f"{stage}/acc", self.acc[f"{stage}_acc"], on_step=False, on_epoch=True, prog_bar=True)
        if stage == "train" and self.hparams.l2:
            penalty = self.l2_penalty()
            self.log("train/l2_penalty", penalty, on_step=False, on_epoch=True, batch_size=len(logits))
            loss = loss + penalty
        return loss, logits

    def on_train_start(self) -> None:
        # Lightning keeps each submodule's mode, and a module made with from_pretrained starts in eval
        # mode: without this the trainable encoder layers would train without their dropout. Frozen
        # parts (text prefix, image backbone) stay in eval mode by their own train().
        self.net.train()

    def training_step(self, batch, batch_idx):
        loss, logits = self._step(batch, "train")
        if not torch.isfinite(loss):
            raise self.diverged(f"the training loss is {loss.item()}")
        # the logits reach callbacks' on_train_batch_end (training dynamics: no second forward)
        return {"loss": loss, "logits": logits.detach()}

    def on_train_end(self) -> None:
        # the last step's update can leave NaN weights behind a finite loss; scoring must not start on them
        bad = [name for name, p in self.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if bad:
            raise self.diverged(f"{len(bad)} weight tensors are not finite after the last step (e.g. {bad[0]})")

    def diverged(self, what: str) -> TrainingDiverged:
        """The one-line error for non-finite training: where it happened and what to try."""
        trainer = self._trainer  # None outside a fit (self.trainer would raise)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer is not None and trainer.optimizers else self.hparams.lr
        lower = f"{self.hparams.lr / 10:g}"
        return TrainingDiverged(f"training diverged at epoch {self.current_epoch}, step {self.global_step} "
                                f"(learning rate {lr:g}): {what}; try a lower model.lr (e.g. model.lr={lower}) "
                                f"or gradient clipping (trainer.gradient_clip_val=1.0, part of recipe=study)")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.hparams.lr, momentum=self.hparams.momentum)
        if self.hparams.lr_schedule == "constant":
            return opt
        if self.hparams.lr_schedule != "linear":
            raise ValueError(f"model.lr_schedule={self.hparams.lr_schedule!r}: use constant or linear")
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1 - step / total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
