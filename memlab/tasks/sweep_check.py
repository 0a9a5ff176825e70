"""One check per sweep, before any job starts: ``python -m memlab -m ...`` with a bad value or missing
data stops in seconds with one line, instead of composing every job, failing each with the same error
and writing empty reports. The callback is ``hydra.callbacks.sweep_check`` in ``conf/hydra/default.yaml``.

The sweep's lists (the study's ``hydra.sweeper.params`` and the command line, expanded by Hydra's own
override parser as the basic sweeper does) are checked one swept value at a time: one job config with
every key at its first value, then one per other value of each key (the sum of the list lengths, not
their product). Each is checked as a job checks itself (:func:`memlab.jobs.config_checks.check_config`),
and its data read once (:func:`memlab.jobs.data_classes.resolve_data_classes`). What fails only for a
combination of values is still caught by that job's own check, and reported at the end of the sweep.
"""
from __future__ import annotations

import json
import logging
from typing import Collection, Iterator

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from ..errors import exit_on_memlab_error

log = logging.getLogger("memlab")


def sweep_lists(config: DictConfig) -> list[list[str]]:
    """Each swept key's ``key=value`` overrides, in the basic sweeper's order: the study's
    ``hydra.sweeper.params`` first, then the command line (a key given twice: the command line wins)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    overrides = OverridesParser.create().parse_overrides(lines)
    batches = BasicSweeper.split_arguments(overrides, None)  # noqa: the expansion the sweep itself uses
    jobs = batches[0]
    return [list(dict.fromkeys(job[i] for job in jobs)) for i in range(len(jobs[0]))] if jobs else []


def overrides_to_check(lists: list[list[str]]) -> Iterator[list[str]]:
    """Every key at its first value; then each other value of each key, the rest at their first."""
    first = [values[0] for values in lists]
    yield first
    for i, values in enumerate(lists):
        for value in values[1:]:
            yield first[:i] + [value] + first[i + 1:]


def check_sweep(config: DictConfig, tasks: Collection[str] | None = None) -> int:
    """Check every swept value of the multirun ``config`` (see the module docstring); the first bad one
    raises its one-line error. Returns how many job configs were checked."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from ..jobs.config_checks import check_config
    from ..jobs.data_classes import resolve_data_classes

    loader = GlobalHydra.instance().config_loader()
    seen_sources: set[str] = set()
    previous = HydraConfig.instance().cfg
    checked = 0
    try:
        for overrides in overrides_to_check(sweep_lists(config)):
            job = loader.load_sweep_config(config, overrides)
            with open_dict(job):  # the job's own folder does not exist yet: interpolations see the sweep's
                job.hydra.runtime.output_dir = str(config.hydra.sweep.dir)
                job.hydra.job.num = checked
            HydraConfig.instance().set_config(job)
            # data and model read and probed once per distinct data/model config, values every time
            sources = json.dumps([OmegaConf.to_container(job[k], resolve=True) if job.get(k) is not None else None
                                  for k in ("data", "model")], sort_keys=True, default=str)
            check_config(job, tasks=tasks, sources=sources not in seen_sources)
            if sources not in seen_sources:
                resolve_data_classes(job)
                seen_sources.add(sources)
            checked += 1
    finally:  # the sweep's own config (or none, in tests) again
        HydraConfig.instance().cfg = previous
    return checked


class SweepCheck(Callback):
    """Before a multirun's first job: :func:`check_sweep`; memlab's errors print one line and exit 1
    (no job runs, no report is written; ``HYDRA_FULL_ERROR=1`` shows the traceback)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from .runner import TASKS

        try:
            n = check_sweep(config, tasks=TASKS)
        except Exception as err:
            exit_on_memlab_error(err, " (checked before the sweep; no job ran)")
        log.info("sweep check: %d job config(s) checked, one per swept value", n)
