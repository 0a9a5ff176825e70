"""The task every ``python -m memlab`` job runs: seed, build data/model/callbacks/loggers/trainer from
the config, fit, test, and write ``metrics.json`` in the run directory. W&B is always finished, even
when the job fails, so Hydra multirun jobs never merge into one W&B run.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from .callbacks.timing import EpochTimer
from .utils.io import update_json

log = logging.getLogger("memlab")


def instantiate_list(group: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a config group that is a dict of objects."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


@contextlib.contextmanager
def finish_wandb():
    try:
        yield
    finally:
        try:
            import wandb

            if wandb.run is not None:
                wandb.finish()
        except ImportError:
            pass


def build(cfg: DictConfig):
    """(datamodule, model, trainer) from a composed config; no training happens here."""
    L.seed_everything(cfg.seed, workers=True)
    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_list(cfg.get("callbacks")) + [EpochTimer()]
    loggers = instantiate_list(cfg.get("logger"))
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return datamodule, model, trainer


def run(cfg: DictConfig, nested: bool = False) -> dict:
    """Check the config, then train and test one model (or run ``cfg.task``); returns the metrics
    written to ``metrics.json``.

    A failing job leaves ``job_failed.json`` in its run directory (removal jobs also mark
    removal_job.json); in a multirun it is logged instead of stopping the sweep, and the sweep exits
    non-zero at the end (:mod:`memlab.failed_jobs`). ``nested``: a run inside another job (a removal
    job's ranking run), whose errors belong to that job.
    """
    from .config_checks import check_config

    output_dir = Path(cfg.paths.output_dir)
    removal = cfg.get("removal") and cfg.removal.get("strategy", "none") != "none"
    with finish_wandb():
        try:
            check_config(cfg)  # bad values fail here in seconds, before any data, model or training
            task = cfg.get("task", "train")
            if task != "train":
                from .studies.tasks import TASKS

                return TASKS[task](cfg)
            return _run(cfg, output_dir, removal)
        except Exception as err:
            if removal:
                from .studies.removal_job import finish_job_record

                finish_job_record(output_dir, error=err, cfg=cfg)
            if nested:
                raise
            from .failed_jobs import write_job_failed

            write_job_failed(output_dir, err)
            if not _in_multirun():
                raise
            _log_failure(err)
            return {"status": "failed", "error": str(err)}


def _log_failure(err: Exception) -> None:
    from .errors import find_memlab_error, one_line

    known = find_memlab_error(err)
    if known is not None:  # its message says it all
        log.error("job failed (the sweep goes on): %s", one_line(known))
    else:
        log.exception("job failed (the sweep goes on): %s", err)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def scalar_metrics(trainer: L.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def _run(cfg: DictConfig, output_dir: Path, removal: bool) -> dict:
    started = time.perf_counter()
    exclude = None
    if removal:  # before build(): a ranking run must not disturb this job's seeded state
        from .studies import removal_job
        from .studies.removal_draws import skip_if_duplicate_draw

        if skip_if_duplicate_draw(cfg, output_dir):  # top/bottom/X = 0 repeat the sweep's first draw seed
            return {"status": "skipped-duplicate"}
        exclude = removal_job.removal_exclusions(cfg, output_dir)
        cached = removal_job.cached_full_data_metrics(cfg)
        if cached is not None:  # X = 0 is the same job for every strategy: train it once per seed
            log.info("full-data result for seed %s reused from the cache", cfg.seed)
            metrics = update_json(output_dir / "metrics.json", {**cached, "removal/reused_full_data": 1})
            removal_job.finish_job_record(output_dir, metrics)
            return metrics
    datamodule, model, trainer = build(cfg)
    if exclude is not None:
        datamodule.set_exclude(exclude)
    metrics = {}
    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))  # a finished one: fit ends at once
        metrics.update(scalar_metrics(trainer))  # trainer.test() replaces callback_metrics
    if cfg.get("test", True):
        trainer.test(model, datamodule=datamodule, verbose=False)
        metrics.update(scalar_metrics(trainer))
    timer = next(c for c in trainer.callbacks if isinstance(c, EpochTimer))
    metrics["train/epoch_seconds"] = timer.mean_seconds
    metrics["train/n_examples"] = len(datamodule.splits["train"]) if datamodule.splits else 0
    if "split_from_train" in cfg.data:  # whether dev/test were carved out of train.csv
        metrics["data/split_from_train"] = int(bool(cfg.data.split_from_train))
    metrics["job/seconds"] = time.perf_counter() - started
    metrics = update_json(output_dir / "metrics.json", metrics)
    if removal:
        from .studies.removal_job import finish_job_record, store_full_data_metrics

        finish_job_record(output_dir, metrics)
        store_full_data_metrics(cfg, metrics)
    log.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return metrics
