"""Training: the one training loop of memlab (the task that trains and tests one model is
:mod:`memlab.tasks.train`).

:func:`train_model` seeds, builds data / model / callbacks / loggers / trainer from the config,
leaves out the excluded training instances, fits and tests; every task that trains goes through
it (:func:`fit_and_test` when only the metrics matter).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Iterable

import hydra
import pytorch_lightning as L
from omegaconf import DictConfig, OmegaConf

from ..callbacks.timing import EpochTimer, peak_gpu_memory
from ..utils.io import update_json
from .data_classes import resolve_data_classes

log = logging.getLogger("memlab")


def instantiate_list(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a config group that is a dict of objects."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def build(cfg: DictConfig):
    """(datamodule, model, trainer) from a composed config; no training happens here."""
    L.seed_everything(cfg.seed, workers=True)
    resolve_data_classes(cfg)  # data=custom outside runner.run (scripts): the head needs its class count
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_list(cfg.get("callbacks")) + [EpochTimer()]
    loggers = instantiate_list(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, model, trainer


@dataclasses.dataclass
class Trained:
    datamodule: L.LightningDataModule
    model: L.LightningModule
    trainer: L.Trainer
    metrics: dict[str, float]


def scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def train_model(cfg: DictConfig, exclude: Iterable[int] | None = None, callbacks: Iterable = ()) -> Trained:
    """Build from ``cfg``, leave out ``exclude`` (sample indices), fit (``cfg.train``) and test (``cfg.test``).
    ``callbacks`` join the config's. The metrics: the trainer's scalars, ``train/epoch_seconds``,
    ``train/n_examples``, ``data/class_names``, for a CSV source ``data/split_from_train``, and on CUDA
    ``gpu/max_memory_allocated_gib``."""
    datamodule, model, trainer = build(cfg)
    trainer.callbacks.extend(callbacks)
    if exclude is not None:
        datamodule.set_exclude(list(exclude))
    metrics = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))  # a finished one: fit ends at once
        metrics.update(scalar_metrics(trainer))  # trainer.test() replaces callback_metrics
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update(scalar_metrics(trainer))
    timer = next(c for c in trainer.callbacks if isinstance(c, EpochTimer))
    metrics["train/epoch_seconds"] = timer.mean_seconds
    metrics.update(peak_gpu_memory(trainer.strategy.root_device))  # on CUDA: training, scoring and testing
    metrics["train/n_examples"] = len(datamodule.splits["train"]) if datamodule.splits else 0
    if "split_from_train" in cfg.data:  # whether dev/test were carved out of train.csv (stratified, data_seed)
        metrics["data/split_from_train"] = int(bool(cfg.data.split_from_train))
        for split in ("val", "test"):
            metrics[f"data/n_{split}"] = len(datamodule.splits[split]) if datamodule.splits else 0
    if getattr(datamodule, "drop_empty", False):  # data.drop_empty=true: how many empty-text rows were left out
        metrics["data/dropped_empty"] = sum(datamodule.dropped_empty.values())
    if getattr(datamodule, "class_names", None):  # label i of scores.csv is class_names[i]
        metrics["data/class_names"] = list(datamodule.class_names)
    return Trained(datamodule, model, trainer, metrics)


def fit_and_test(cfg: DictConfig, exclude: Iterable[int] | None = None) -> dict[str, float]:
    """The metrics of one model trained from ``cfg`` without ``exclude`` (:func:`train_model`)."""
    return train_model(cfg, exclude).metrics


def save_metrics(output_dir: str | Path, metrics: dict, started: float) -> dict:
    """``metrics`` + ``job/seconds`` (since ``started``, a ``time.perf_counter()``) merged into
    ``<output_dir>/metrics.json`` (callbacks may have written there); returns the merged metrics."""
    metrics = update_json(Path(output_dir) / "metrics.json", {**metrics, "job/seconds": time.perf_counter() - started})
    log.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return metrics
