"""What a job's W&B run holds besides Lightning's metrics and the config: the scores table, a histogram
of the score, every figure the job wrote as an image and every HTML page (the attributions) as HTML,
metrics.json in the summary; and the group that a sweep's runs share.

    log_scores(run, scores, images=dm.images)   # memorization/scores (+ thumbnails), memorization/score_histogram
    log_job_files(run, output_dir)              # figures/<path>, html/<path>, metrics.json -> summary
    sweep_group(sweep_dir)                      # e.g. smoke_removal-2026-12-06-11-10-19-123456

``run`` is a ``wandb`` run (``wandb.init``'s, or a WandbLogger's ``experiment``); nothing here knows
Lightning or Hydra.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..studies.ranking import memorization_column, rank_by_memorization

log = logging.getLogger("memlab")

# wandb.Table's own row limit (Table.MAX_ROWS): a larger table is cut by wandb, silently in the UI
TABLE_ALL_ROWS = 10_000
TABLE_EACH_END = 1_000
# folders of a run dir that hold no figures of the job: loggers' own files, caches, score chunks
NOT_JOB_OUTPUTS = ("wandb", "csv", "chunks", "cache", ".hydra")


def sweep_group(sweep_dir: str | os.PathLike) -> str:
    """The W&B group of one sweep's runs, its jobs' and its report's: the last three parts of the sweep
    dir (memlab's default ``multirun/<task_name>/<date>/<time with microseconds>``), so that two sweeps
    never share a group and a report re-made later (``python -m memlab.report DIR``) joins its sweep's."""
    return "-".join(Path(sweep_dir).resolve().parts[-3:])


def table_rows(scores: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the W&B scores table, most memorized first, and what they are: every row up to
    ``TABLE_ALL_ROWS``; beyond that the top and bottom ``TABLE_EACH_END`` (scores.csv has them all)."""
    ordered = (rank_by_memorization(scores, "rank", ascending=True) if "rank" in scores.columns
               else rank_by_memorization(scores))
    n = len(ordered)
    if n <= TABLE_ALL_ROWS:
        return ordered, f"all {n} training instances"
    kept = pd.concat([ordered.head(TABLE_EACH_END), ordered.tail(TABLE_EACH_END)])
    return kept, (f"the top and bottom {TABLE_EACH_END} of {n} training instances by {memorization_column(scores)} "
                  f"(all of them in scores.csv)")


def scores_table(scores: pd.DataFrame, images: Callable[[Sequence[int]], np.ndarray] | None = None):
    """A ``wandb.Table`` of :func:`table_rows` with, for image data, an ``image`` thumbnail column beside
    the text (``images(sample_indices)`` gives uint8 ``[N, H, W, 3]`` pictures); and its note."""
    import wandb

    rows, note = table_rows(scores)
    columns = list(rows.columns)
    data = rows.astype(object).where(rows.notna(), None).values.tolist()
    if images is not None:
        pictures = images(rows["sample_index"].astype(int).tolist())
        columns.insert(0, "image")
        # wandb.Table(dataframe=) turns media into the string "Image": the rows carry the objects
        data = [[wandb.Image(picture)] + row for picture, row in zip(pictures, data)]
    return wandb.Table(columns=columns, data=data), note


def log_scores(run, scores: pd.DataFrame, images: Callable[[Sequence[int]], np.ndarray] | None = None,
               prefix: str = "memorization") -> None:
    """``<prefix>/scores`` (:func:`scores_table`) and ``<prefix>/score_histogram`` (the ranking score of
    every instance) into ``run``; the summary says which rows the table holds and by which score."""
    import wandb

    table, note = scores_table(scores, images)
    column = memorization_column(scores)
    values = scores[column].astype(float).to_numpy()
    values = values[np.isfinite(values)]  # a numerical failure (counted in diagnostics.json) has no bin
    run.log({f"{prefix}/scores": table, f"{prefix}/score_histogram": wandb.Histogram(values, num_bins=64)})
    run.summary[f"{prefix}/scores_table_rows"] = note
    run.summary[f"{prefix}/score_histogram_of"] = column


def job_files(output_dir: str | os.PathLike, suffix: str) -> list[Path]:
    """The files with ``suffix`` that a job wrote under ``output_dir`` (not the loggers' or caches')."""
    out = Path(output_dir)
    return sorted(p for p in out.rglob(f"*{suffix}")
                  if p.is_file() and not set(p.relative_to(out).parts[:-1]) & set(NOT_JOB_OUTPUTS))


def _key(output_dir: Path, path: Path) -> str:
    return path.relative_to(output_dir).with_suffix("").as_posix()


def log_job_files(run, output_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Every PNG the job wrote as ``figures/<path>`` (an image), every HTML page as ``html/<path>``,
    and metrics.json's numbers into the summary. Returns the keys logged (``figures``, ``html``)."""
    import wandb

    out = Path(output_dir)
    media = {f"figures/{_key(out, p)}": wandb.Image(str(p)) for p in job_files(out, ".png")}
    pages = {f"html/{_key(out, p)}": wandb.Html(p.read_text(encoding="utf-8")) for p in job_files(out, ".html")}
    if media or pages:
        run.log({**media, **pages})
    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        run.summary.update({k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))})
    return {"figures": sorted(media), "html": sorted(pages)}
