"""Hydra callback that writes the removal study's report when a multirun ends (and logs it to W&B)."""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("memlab")


class RemovalReport(Callback):
    def __init__(self, wandb: bool = True):
        self.wandb = wandb

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from .report_removal import report_removal_sweep

        report_removal_sweep(Path(config.hydra.sweep.dir), log_wandb=self.wandb)
