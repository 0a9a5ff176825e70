"""Entry point: ``python -m memlab experiment=smoke`` (any Hydra overrides; ``-m`` for sweeps).

memlab's own errors (config, data, model loading) print one line to stderr and exit 1;
``HYDRA_FULL_ERROR=1`` or ``-v`` shows the traceback. A sweep with failed jobs exits 1 after
its reports are written.
"""
import os
import sys

import hydra
from omegaconf import DictConfig

VERBOSE_FLAGS = ("-v", "--verbose")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from memlab.errors import find_memlab_error, one_line

    try:
        if not _in_multirun():  # a sweep records each job's error instead (memlab.train.run)
            from memlab.config_checks import check_config

            check_config(cfg)  # before importing Lightning: a bad value costs seconds, not half a minute
        from memlab.train import run

        return run(cfg).get(cfg.get("optimized_metric", "test/acc"))
    except Exception as err:
        from memlab.failed_jobs import write_job_failed

        write_job_failed(cfg.paths.output_dir, err)  # also when the early check stopped it
        known = find_memlab_error(err)
        if known is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {one_line(known)}", file=sys.stderr)
        raise SystemExit(1) from None  # not an Exception: Hydra lets it through without a traceback


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def cli() -> None:
    if any(a in VERBOSE_FLAGS for a in sys.argv[1:]):  # ours, not Hydra's: show tracebacks
        sys.argv = [a for a in sys.argv if a not in VERBOSE_FLAGS]
        os.environ["HYDRA_FULL_ERROR"] = "1"
    main()
    from memlab.failed_jobs import FAILED_IN_SWEEPS

    if FAILED_IN_SWEEPS:
        sys.exit(1)


if __name__ == "__main__":
    cli()
