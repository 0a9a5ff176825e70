"""Entry point: ``python -m memlab experiment=smoke`` (any Hydra overrides; ``-m`` for sweeps;
``--help`` for memlab's page, :mod:`memlab.help`; ``--hydra-help`` for Hydra's).

``data=image_folder`` under a generic study adds ``setup=image_folder`` (:mod:`memlab.config_overrides`).
The job is :func:`memlab.tasks.runner.main`: memlab's own errors (config, data, model loading) print one
line to stderr and exit 1; ``HYDRA_FULL_ERROR=1`` or ``-v`` shows the traceback. A sweep with
failed jobs exits 1 after its reports are written. ``data.limit_train=N`` works without ``+`` for every text
data set (:func:`memlab.config_overrides.with_optional_keys`).
"""
import os
import sys

import hydra
from omegaconf import DictConfig

from memlab.config_dir import config_dir
from memlab.config_overrides import with_data_setup, with_optional_keys
from memlab.help import help_text, wants_help

VERBOSE_FLAGS = ("-v", "--verbose")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float | None:
    from memlab.tasks.runner import main as run_job  # here, so that --help loads no torch

    return run_job(cfg)


def cli() -> None:
    if wants_help(sys.argv[1:]):  # memlab's page, not Hydra's generic one with a config dump
        print(help_text(), end="")
        return
    if any(a in VERBOSE_FLAGS for a in sys.argv[1:]):  # ours, not Hydra's: show tracebacks
        sys.argv = [a for a in sys.argv if a not in VERBOSE_FLAGS]
        os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.argv = [sys.argv[0], *with_optional_keys(with_data_setup(sys.argv[1:]))]  # image_folder's setup; data.limit_train
    main()
    from memlab.jobs.failed_jobs import FAILED_IN_SWEEPS

    if FAILED_IN_SWEEPS:
        sys.exit(1)


if __name__ == "__main__":
    cli()
