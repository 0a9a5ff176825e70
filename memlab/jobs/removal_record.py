"""The record of one removal job, ``<run dir>/removal_job.json`` (its format: :mod:`memlab.studies.removal_selection`):
written ``running`` when the job starts, then marked ``ok``, ``failed`` or ``skipped-duplicate``.

Several random draws in one removal sweep (``removal.draw_seed=0,1,2``, as the study's three): the
draw seed only changes which instances a ``random`` job removes at X > 0. A ``top`` or ``bottom``
job, or any job at X = 0, run with another draw seed would repeat the job of the sweep's first draw
seed exactly. Hydra's basic sweeper always launches the full cartesian product, and a sweeper that
drops jobs would have to be a plugin in the ``hydra_plugins`` package, so such a job stops before it
trains (or computes a ranking) and records ``"status": "skipped-duplicate"``; the sweep report
leaves it out.

The first draw seed is the first value of the sweep's ``removal.draw_seed``, read from the sweep's
``multirun.yaml`` (Hydra writes it before any job starts) the way Hydra's sweeper resolves it: the
``hydra.sweeper.params`` entry, replaced by a command-line override of the same key. A job that
cannot tell (no multirun, no readable multirun.yaml) runs: a duplicate costs time, a skip a result.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..studies.removal_selection import DEFAULT_SCORE, JOB_FILE, SKIPPED
from ..utils.io import atomic_write_text

log = logging.getLogger("memlab")
DRAW_KEY = "removal.draw_seed"


def is_removal_job(cfg: DictConfig) -> bool:
    """Whether ``cfg`` asks for a removal (``removal.strategy`` other than ``none``)."""
    return bool(cfg.get("removal")) and cfg.removal.get("strategy", "none") != "none"


def write_job_record(output_dir: Path, record: dict) -> None:
    atomic_write_text(Path(output_dir) / JOB_FILE, json.dumps(record, indent=2))


def finish_job_record(output_dir: Path, metrics: dict | None = None, error: BaseException | None = None,
                      cfg: DictConfig | None = None) -> None:
    """Mark the job's record ok or failed. A job stopped by the config check has none yet: with ``cfg``
    its failure is recorded from the config, so the sweep report names it."""
    file = Path(output_dir) / JOB_FILE
    if not file.is_file():
        if error is None or cfg is None:
            return
        r = cfg.removal
        write_job_record(output_dir, {"strategy": r.get("strategy"), "removal_pct": r.get("pct"), "seed": cfg.get("seed"),
                                      "draw_seed": r.get("draw_seed", 0), "status": "running"})
    record = json.loads(file.read_text())
    if error is not None:
        record.update({"status": "failed", "error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"})
    else:
        record.update({"status": "ok", "test_acc": metrics.get("test/acc")})
    write_job_record(output_dir, record)


# -- duplicate draws -----------------------------------------------------------------------------------
def sweep_draw_seeds(multirun_cfg: DictConfig) -> list[int] | None:
    """The draw seeds a sweep runs, in its order; None when it does not set ``removal.draw_seed``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # unresolved: `removal.draw_seed=${seed}` must stay an interpolation, not become the sweep's first seed
    params = OmegaConf.to_container(multirun_cfg.hydra.sweeper, resolve=False).get("params") or {}
    task = OmegaConf.to_container(multirun_cfg.hydra.overrides, resolve=False).get("task") or []
    arguments = [f"{k}={v}" for k, v in params.items()] + list(task)
    relevant = [a for a in arguments if a.lstrip("+~").split("=", 1)[0] == DRAW_KEY]
    if not relevant:
        return None
    override = OverridesParser.create().parse_overrides(relevant)[-1]  # the command line wins, as in the sweeper
    if override.is_sweep_override():
        return [int(v) for v in override.sweep_string_iterator()]
    value = override.value()
    if isinstance(value, str) and "${" in value:  # follows another key (e.g. the seed): one draw per job
        return None
    return [int(value)]


def first_draw_seed() -> int | None:
    """The first draw seed of the running multirun, or None outside one (or when unreadable)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    try:
        seeds = sweep_draw_seeds(OmegaConf.load(Path(HydraConfig.get().sweep.dir) / "multirun.yaml"))
    except Exception as err:  # never lose a job to a bookkeeping problem
        log.warning("could not read the sweep's draw seeds (%s): running this job", err)
        return None
    return seeds[0] if seeds else None


def depends_on_draw(strategy: str, pct: float) -> bool:
    """Only a random removal of X > 0 changes with the draw seed."""
    return strategy == "random" and float(pct) > 0


def skip_if_duplicate_draw(cfg: DictConfig, output_dir: Path) -> bool:
    """True (and a removal_job.json marked skipped-duplicate) when this job repeats the sweep's first draw."""
    r = cfg.removal
    draw_seed = int(r.get("draw_seed", 0))
    if depends_on_draw(r.strategy, r.pct):
        return False
    first = first_draw_seed()
    if first is None or draw_seed == first:
        return False
    write_job_record(output_dir, {"strategy": r.strategy, "removal_pct": float(r.pct), "seed": int(cfg.seed),
                                  "draw_seed": draw_seed, "score": r.get("score") or DEFAULT_SCORE,
                                  "status": SKIPPED, "same_as_draw_seed": first})
    log.info("skipped: strategy=%s X=%g%% does not depend on the draw seed; the job of draw_seed=%d runs it",
             r.strategy, float(r.pct), first)
    return True
