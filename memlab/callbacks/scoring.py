"""The Lightning shell around :func:`memlab.pipeline.scoring.score_training_set`: after fit, scores
every training instance's memorization (Eq. 2) and writes ``<run>/memorization/``: scores.csv,
top_bottom.md (+ top_bottom.png for image data), diagnostics.json, score_vs_loss.png, and
``memorization/seconds`` (computing the scores: curvature fit + scoring pass), ``memorization/total_seconds``
(also a compared solver, the files and plots, logging) and the diagnostics in metrics.json; into W&B the
scores table and histogram (:func:`memlab.report.wandb_run.log_scores`). Resumable (chunked) and DDP-sharded.

Its result, a :class:`TrainingSetScores`, stays on the callback (``.result``); a later callback
finds it by type with :func:`find_scoring_callback`, which requires the scoring callback to run first.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as L
import pandas as pd
import torch

from ..errors import ConfigError
from ..influence.functional import trainable_params
from ..influence.sampling import EveryNth
from ..pipeline.scoring import finalize_scores, score_training_set
from ..studies.diagnostics import score_diagnostics
from ..utils.io import atomic_write_csv, atomic_write_text, to_jsonable, update_json

log = logging.getLogger("memlab")


@dataclass
class TrainingSetScores:
    """What :class:`ScoringCallback` computed after fit. Every rank holds the fitted ``solver``;
    only rank 0 holds the rest (scores.csv's table, the solver's info, diagnostics.json's values
    and the folder they were written to)."""

    solver: object
    scores: pd.DataFrame | None = None
    solver_info: dict | None = None
    diagnostics: dict | None = None
    output_dir: Path | None = None


def find_scoring_callback(trainer: L.Trainer, consumer: L.Callback) -> "ScoringCallback":
    """The :class:`ScoringCallback` among ``trainer.callbacks`` that runs before ``consumer``, whose
    ``.result`` ``consumer`` reads in its own ``on_fit_end``; ConfigError when there is none, or only
    one that runs after ``consumer`` (Lightning calls hooks in the order of ``trainer.callbacks``)."""
    callbacks = list(trainer.callbacks)
    mine = next((i for i, c in enumerate(callbacks) if c is consumer), len(callbacks))
    scorers = [i for i, c in enumerate(callbacks) if isinstance(c, ScoringCallback)]
    name = type(consumer).__name__
    if not scorers:
        raise ConfigError(f"{name} needs the memorization scores: add the scoring callback "
                          "(callbacks=attribution includes callbacks.memorization)")
    before = [i for i in scorers if i < mine]
    if not before:
        raise ConfigError(f"{name} runs before the scoring callback that it reads: list callbacks.memorization "
                          f"before it in the callbacks config")
    return callbacks[before[-1]]


class ScoringCallback(L.Callback):
    def __init__(self, solver: dict, output_dir: str, batch_size: int = 64, batches_per_chunk: int = 32,
                 compare_solver: dict | None = None, metrics_file: str | None = None, log_table: bool = True,
                 enabled: bool = True):
        self.solver_cfg = dict(solver)
        self.compare_cfg = dict(compare_solver) if compare_solver else None
        self.output_dir = Path(output_dir)
        self.batch_size, self.batches_per_chunk = batch_size, batches_per_chunk
        self.metrics_file = Path(metrics_file) if metrics_file else self.output_dir.parent / "metrics.json"
        self.log_table, self.enabled = log_table, enabled
        self.result: TrainingSetScores | None = None  # set in on_fit_end; later callbacks reuse the solver

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.enabled:
            self.result = self.score(trainer, pl_module)

    def _score_once(self, trainer, pl_module, solver_cfg: dict, out_dir: Path):
        dm = trainer.datamodule
        module = pl_module.scoring_module
        params = trainable_params(module)
        rank, world = trainer.global_rank, trainer.world_size
        loader = dm.score_dataloader(self.batch_size)
        sample_indices = loader.dataset.sample_indices()
        fit_batches = EveryNth(loader, rank, world)  # re-read per pass: a list would hold every batch
        all_reduce = (lambda t: trainer.strategy.reduce(t, reduce_op="sum")) if world > 1 else None
        return score_training_set(module, params, pl_module.training_objective, loader, fit_batches, solver_cfg,
                                  out_dir, sample_indices, self.batches_per_chunk, rank, world, all_reduce,
                                  barrier=trainer.strategy.barrier)

    def score(self, trainer: L.Trainer, pl_module: L.LightningModule) -> TrainingSetScores:
        started = time.perf_counter()
        pl_module.eval()
        with torch.enable_grad():
            frame, info, solver = self._score_once(trainer, pl_module, self.solver_cfg, self.output_dir)
            other = None
            if self.compare_cfg:
                other, _, _ = self._score_once(trainer, pl_module, self.compare_cfg,
                                            self.output_dir / f"compare-{self.compare_cfg['name']}")
        if trainer.global_rank != 0:
            return TrainingSetScores(solver=solver)
        dm = trainer.datamodule
        texts = {int(e["sample_index"]): dm.describe(e) for e in dm.splits["train"].examples}
        scores = finalize_scores(frame, texts, getattr(dm, "class_names", None))
        diagnostics = score_diagnostics(scores, info, other, self.compare_cfg and self.compare_cfg["name"])
        diagnostics.update({k: info[k] for k in ("seconds", "fit_seconds", "spectrum")})
        self.write_outputs(scores, diagnostics, dm)
        seconds = time.perf_counter() - started
        metrics = {"memorization/seconds": info["seconds"], "memorization/total_seconds": seconds}
        metrics.update({f"memorization/{k}": v for k, v in diagnostics.items()
                        if isinstance(v, (int, float)) and v is not None})
        update_json(self.metrics_file, metrics)
        self.log_to_loggers(trainer, scores, metrics, dm)
        log.info("memorization scores of %d instances in %.1f s (fit %.1f s; %.1f s with outputs) -> %s", len(scores),
                 info["seconds"], info["fit_seconds"], seconds, self.output_dir)
        return TrainingSetScores(solver=solver, scores=scores, solver_info=info, diagnostics=diagnostics,
                                 output_dir=self.output_dir)

    def write_outputs(self, scores, diagnostics, dm) -> None:
        from ..report.plots import disagreement_table, plot_score_vs_loss, write_top_bottom_markdown

        out = self.output_dir
        atomic_write_csv(scores, out / "scores.csv")
        atomic_write_text(out / "diagnostics.json", json.dumps(to_jsonable(diagnostics), indent=2, default=str))
        grid = None
        if hasattr(dm, "images"):  # an image is judged by looking at it, not by its index
            from ..report.image_figures import plot_top_bottom_images

            grid = plot_top_bottom_images(scores, dm.images, out / "top_bottom.png", n=3,
                                          class_names=getattr(dm, "class_names", None)).name
        write_top_bottom_markdown(scores, out / "top_bottom.md", n=3, class_names=getattr(dm, "class_names", None),
                                  image_grid=grid)
        plot_score_vs_loss(scores, out / "score_vs_loss.png", class_names=getattr(dm, "class_names", None))
        atomic_write_csv(disagreement_table(scores, n=20), out / "disagreement.csv")

    def log_to_loggers(self, trainer, scores, metrics, dm) -> None:
        for lg in trainer.loggers:
            lg.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
            if self.log_table and type(lg).__name__ == "WandbLogger":
                from ..report.wandb_run import log_scores

                log_scores(lg.experiment, scores, images=getattr(dm, "images", None))
