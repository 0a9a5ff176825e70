"""The one wrapper around every task, and the ``task=`` registry: ``python -m memlab`` hands its
config to :func:`main`; tests and scripts call :func:`run`.

:func:`run` checks the config, runs the task inside the job's W&B run (:mod:`memlab.jobs.wandb_job`:
opened before, its files logged and the run finished after, whatever happens; multirun jobs never merge
into one W&B run), writes a failure to ``job_failed.json`` (and to a removal job's ``removal_job.json``),
and in a multirun logs the failure instead of stopping the sweep (the sweep exits non-zero at its end:
:mod:`memlab.jobs.failed_jobs`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..errors import exit_on_memlab_error, find_memlab_error, one_line
from ..jobs.config_checks import check_config
from ..jobs.data_classes import resolve_data_classes
from ..jobs.failed_jobs import write_job_failed
from ..jobs.removal_record import finish_job_record, is_removal_job
from ..jobs.wandb_job import job_run

log = logging.getLogger("memlab")

# task= value -> the module of memlab.tasks whose run(cfg) runs it
TASKS: dict[str, str] = {
    "train": "train",              # fit and test one model (a removal job when removal.strategy != none)
    "typicality": "typicality",    # Table 1, Fig. 4
    "stability": "stability",      # Table 5
    "fz": "fz",                    # the Feldman-Zhang reference estimator
    "validate": "validate",        # every candidate score against FZ
    "label_noise": "label_noise",  # the label-error benchmark beside cleanlab
}


def task_module(cfg: DictConfig) -> str:
    """The module (of memlab.tasks) that runs ``cfg``: ``cfg.task``'s, or ``removal`` for a removal job."""
    task = cfg.get("task", "train")
    return "removal" if task == "train" and is_removal_job(cfg) else TASKS[task]


def task_runner(module: str):
    """The ``run`` function of a task module; imported here, after the config check, because the task
    modules import Lightning (seconds) and a bad value should fail before that."""
    from . import fz, label_noise, removal, stability, train, typicality, validate

    modules = {"fz": fz, "label_noise": label_noise, "removal": removal, "stability": stability,
               "train": train, "typicality": typicality, "validate": validate}
    return modules[module].run


def run(cfg: DictConfig) -> dict:
    """Check ``cfg``, run its task and return the task's metrics (also in ``metrics.json``).

    A failure leaves ``job_failed.json`` (and marks a removal job's record failed) and is raised; in a
    multirun it is logged instead and ``{"status": "failed", "error": ...}`` returned.
    """
    output_dir = Path(cfg.paths.output_dir)
    with job_run(cfg):
        try:
            check_config(cfg, tasks=TASKS)  # bad values fail here in seconds, before any data, model or training
            resolve_data_classes(cfg)  # data=custom: read and checked now; its classes size the model's head
            return task_runner(task_module(cfg))(cfg)
        except Exception as err:
            if is_removal_job(cfg):
                finish_job_record(output_dir, error=err, cfg=cfg)
            write_job_failed(output_dir, err)
            if not in_multirun():
                raise
            log_failure(err)
            return {"status": "failed", "error": str(err)}


def main(cfg: DictConfig) -> float | None:
    """The job of ``python -m memlab``: :func:`run`, returning ``optimized_metric`` for Hydra's sweepers.
    memlab's own errors print one line to stderr and exit 1 (``HYDRA_FULL_ERROR=1``: the traceback)."""
    try:
        return run(cfg).get(cfg.get("optimized_metric", "test/acc"))
    except Exception as err:
        exit_on_memlab_error(err)


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def log_failure(err: Exception) -> None:
    known = find_memlab_error(err)
    if known is not None:  # its message says it all
        log.error("job failed (the sweep goes on): %s", one_line(known))
    else:
        log.exception("job failed (the sweep goes on): %s", err)
