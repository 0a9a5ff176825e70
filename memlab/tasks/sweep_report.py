"""The Hydra callback that writes the removal study's report when a multirun ends (and logs it to W&B):
``hydra.callbacks.removal_report`` of the removal experiments, e.g.

    python -m memlab -m experiment=sst2_removal    # -> <sweep dir>/removal_summary.csv, removal.png, ...
"""
from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class RemovalReport(Callback):
    def __init__(self, wandb: bool = True):
        self.wandb = wandb

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from ..report.removal_report import report_removal_sweep  # pandas, matplotlib: only when the sweep ends

        report_removal_sweep(Path(config.hydra.sweep.dir), log_wandb=self.wandb)
