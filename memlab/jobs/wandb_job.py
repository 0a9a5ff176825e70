"""Each job's W&B run, opened before its task runs and finished after it whatever happens
(:func:`job_run`, used by :func:`memlab.tasks.runner.run`), when the config's loggers include
``logger.wandb`` and ``WANDB_MODE`` is not ``disabled``:

- the resolved config, nested (sweep parameters such as ``removal.pct`` are columns of the runs table);
- the group: ``logger.wandb.group`` when set, else in a multirun the sweep's
  (:func:`memlab.report.wandb_run.sweep_group`: every job of one sweep, and its report, in one group;
  two sweeps never share one), else ``task_name``;
- the job type: ``logger.wandb.job_type`` when set, else a removal job's strategy, else the study;
- at the end, every figure and HTML page the job wrote and metrics.json
  (:func:`memlab.report.wandb_run.log_job_files`).

Lightning's WandbLogger finds this run open and logs its metrics into it; the scoring callback logs the
scores table into it too.
"""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .removal_record import is_removal_job

log = logging.getLogger("memlab")
# what wandb.init takes from logger.wandb besides what is set here
PASSED_SETTINGS = ("project", "entity", "name", "tags", "notes")
# where a launcher (Lightning's DDP, torchrun, SLURM) puts a process's rank, in Lightning's order
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """This process's rank as its launcher set it (0 when none did): only rank 0 opens the W&B run, as
    Lightning's WandbLogger logs from rank 0 only."""
    return next((int(os.environ[k]) for k in RANK_VARIABLES if os.environ.get(k) is not None), 0)


def wandb_settings(cfg: DictConfig) -> DictConfig | None:
    """``logger.wandb`` when the job logs to W&B, else None."""
    loggers = cfg.get("logger") or {}
    settings = loggers.get("wandb") if isinstance(loggers, DictConfig) else None
    return settings if isinstance(settings, DictConfig) and "_target_" in settings else None


def job_type(cfg: DictConfig) -> str:
    """A removal job's strategy (``top``, ``random``, ``bottom``), else the study: the task, or for
    ``task=train`` the callbacks' (``attribution``, ``memorization``), else ``train``."""
    if is_removal_job(cfg):
        return str(cfg.removal.strategy)
    task = str(cfg.get("task", "train"))
    if task != "train":
        return task
    callbacks = cfg.get("callbacks") or {}
    return next((study for study in ("attribution", "memorization") if study in callbacks), task)


def sweep_dir() -> str | None:
    """The sweep dir of this job when it is a job of a Hydra multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(HydraConfig.get().sweep.dir)
    return None


def run_identity(cfg: DictConfig, settings: DictConfig) -> dict:
    """group, job_type and name of the job's run (the module docstring says which)."""
    from ..report.wandb_run import sweep_group

    sweep = sweep_dir()
    name = settings.get("name") or cfg.get("task_name")
    if sweep is not None:
        from hydra.core.hydra_config import HydraConfig

        name = f"{name}-{HydraConfig.get().job.num}"  # the sweep's jobs tell apart in the runs table
    return {"group": settings.get("group") or (sweep_group(sweep) if sweep else cfg.get("task_name")),
            "job_type": settings.get("job_type") or job_type(cfg), "name": name}


def start_run(cfg: DictConfig):
    """Open the job's W&B run (see the module docstring); None when the job does not log to W&B."""
    settings = wandb_settings(cfg)
    mode = (settings.get("mode") if settings is not None else None) or os.environ.get("WANDB_MODE", "offline")
    if settings is None or mode == "disabled" or process_rank() != 0:
        return None
    try:
        import wandb
    except ImportError:
        return None
    save_dir = Path(settings.get("save_dir") or cfg.paths.output_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    passed = {k: settings[k] for k in PASSED_SETTINGS if settings.get(k) is not None}
    run = wandb.init(**{**passed, **run_identity(cfg, settings)}, mode=mode, dir=str(save_dir),
                     config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")
    # as Lightning's WandbLogger does for a run it opens itself (it skips this for one it attaches to)
    run.define_metric("trainer/global_step")
    run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    # the logger reusing this run is the intent here, not the mistake Lightning warns about
    warnings.filterwarnings("ignore", message="There is a wandb run already in progress")
    return run


@contextlib.contextmanager
def job_run(cfg: DictConfig):
    """The job's W&B run (:func:`start_run`) around the task; at the end the job's files are logged and
    the run finished, also after an error (multirun jobs never merge into one W&B run)."""
    try:
        run = start_run(cfg)
    except Exception as err:  # the job still runs (and its config check says what is wrong); the logger may retry
        log.warning("could not open the job's W&B run: %s", err)
        run = None
    try:
        yield run
    finally:
        try:
            import wandb
        except ImportError:
            wandb = None
        if wandb is not None and wandb.run is not None:
            if run is not None and wandb.run is run:
                try:
                    from ..report.wandb_run import log_job_files

                    log_job_files(run, cfg.paths.output_dir)
                except Exception as err:  # a W&B problem must never hide the job's own result or error
                    log.warning("could not log the job's files to W&B: %s", err)
            wandb.finish()
