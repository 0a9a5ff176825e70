"""Failed jobs leave a record and make a sweep fail: every failing ``python -m memlab`` job writes
``job_failed.json`` (the error, its type and traceback, the job's overrides) into its run
directory, and a Hydra callback counts them when a multirun ends, after the sweep's reports are
written, so that ``python -m memlab -m ...`` exits non-zero (see ``memlab/__main__.py``). The callback is
``hydra.callbacks.failed_jobs`` in ``conf/hydra/default.yaml``.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..errors import find_memlab_error, one_line
from ..utils.io import atomic_write_text

log = logging.getLogger("memlab")
JOB_FAILED = "job_failed.json"
FAILED_IN_SWEEPS: list[Path] = []  # filled when a multirun of this process ends


def _overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write_job_failed(output_dir: str | Path, err: BaseException) -> None:
    """Record ``err`` as ``<output_dir>/job_failed.json``; never masks ``err`` itself."""
    known = find_memlab_error(err)
    record = {"created_by": "memlab", "error": one_line(known or err), "type": type(known or err).__name__,
              "overrides": _overrides(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "traceback": "".join(traceback.format_exception(err))}
    try:
        atomic_write_text(Path(output_dir) / JOB_FAILED, json.dumps(record, indent=2))
    except Exception as write_err:  # an unwritable folder must not hide the job's own error
        log.warning("could not write %s in %s: %s", JOB_FAILED, output_dir, write_err)


class FailedJobs(Callback):
    """At the end of a multirun: log how many jobs failed and remember them for the exit code."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = sorted(sweep_dir.rglob(JOB_FAILED)) if sweep_dir.is_dir() else []
        if failed:
            FAILED_IN_SWEEPS.extend(failed)
            log.error("%d job(s) of the sweep failed; see %s", len(failed), ", ".join(str(f) for f in failed[:5]))
