"""The Hydra-facing layer: the only code that reads a composed config. ``python -m memlab`` hands
its config to :func:`memlab.tasks.runner.main`; tests and scripts call :func:`memlab.tasks.runner.run`.

Two config keys name a job, and they are not the same thing:

    task       what runs: a key of :data:`TASKS` (``task=fz``); default ``train``
    task_name  what the run is called: its folder (``outputs/<task_name>/...``) and its W&B run

``task=train`` with a removal strategy other than ``none`` (``removal=default``) is a removal job
(:mod:`memlab.tasks.removal`). Each task module has ``run(cfg) -> metrics``; it is imported only
after the config check, so a bad value fails within seconds, before Lightning is imported.

:func:`memlab.tasks.runner.run` is the one wrapper around every task: the config check, W&B finished whatever happens
(multirun jobs never merge into one W&B run), a failure written to ``job_failed.json`` (and to a
removal job's ``removal_job.json``), and in a multirun the failure logged instead of stopping the
sweep (the sweep exits non-zero at its end: :mod:`memlab.jobs.failed_jobs`).
"""
