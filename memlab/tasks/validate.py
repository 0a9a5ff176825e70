"""Task ``validate``: does the score measure memorization? Every candidate score against the Feldman-Zhang reference:

    python -m memlab experiment=sst2_validate [data.source=local data.dir=DIR model=minilm] [fz.models=64]

Reuses (or trains) the FZ subset models (:mod:`memlab.tasks.fz`) and the scored model with
its candidate scores (:mod:`memlab.jobs.candidate_scores`), then writes ``validation.csv``
(``score,spearman_vs_fz,spearman_ci_low,spearman_ci_high,spearman_vs_fz_top10,ceiling,fz_top10_recovered,
recovered_vs_loss,ci_low,ci_high,seconds,cost_epochs``: :mod:`memlab.studies.validation`; ``cost_epochs`` is a
score's cost beyond the training run in units of the scored model's mean training epoch, measured in the
same run), ``validation.png`` (the table as bars),
``validation_by_percentile.png`` (mean FZ memorization per percentile of each score),
``spearman_intervals.csv`` (each Spearman's interval and its paired-bootstrap difference to the best
candidate, for ``python -m memlab.report estimators``), ``scores.csv`` (every candidate beside the
reference), ``fz_scores.csv`` and ``fz_reliability.csv/.png`` (:func:`memlab.tasks.fz.write_fz_reference`);
``fz_reliability`` and each candidate's Spearman go into metrics.json. With ``candidates.trak.ablation``,
``trak_ablation.csv`` (``proj_dim,damping_rel,spearman_vs_fz,spearman_vs_fz_top10``: TRAK of the scored
model alone, M = 1, per grid point) and its Spearman as ``validate/trak_ablation/proj_dim=<k>,damping_rel=<r>``.
The ceiling is sqrt(fz_reliability), the highest
agreement the reference's noise allows.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..report.study_figures import plot_scores_vs_fz, plot_validation
from ..studies.feldman_zhang import attenuation_ceiling, spearman_against
from ..studies.validation import spearman_intervals, validation_table
from ..jobs.data_classes import data_set_name
from ..utils.io import atomic_write_csv, update_json
from ..jobs.candidate_scores import candidate_scores, candidates_dir
from ..jobs.trak_candidates import ablation_column, trak_ablation
from .fz import write_fz_reference

log = logging.getLogger("memlab")


def run(cfg: DictConfig) -> dict:
    """Task ``validate``: validation.csv and its figures; returns the metrics written to metrics.json."""
    out = Path(cfg.paths.output_dir)
    fz_table, metrics = write_fz_reference(cfg, out)
    candidates, seconds, _ = candidate_scores(cfg)
    ceiling = attenuation_ceiling(metrics["fz_reliability"])
    intervals = spearman_intervals(candidates, fz_table)  # one bootstrap for both files
    table = validation_table(candidates, fz_table, ceiling, seconds=seconds, intervals=intervals)
    atomic_write_csv(table, out / "validation.csv")
    atomic_write_csv(intervals, out / "spearman_intervals.csv")  # small: archived
    atomic_write_csv(candidates.merge(fz_table, on="sample_index"), out / "scores.csv")
    title = f"{data_set_name(cfg)}: Spearman with FZ ({int(cfg.fz.models)} models, reliability {metrics['fz_reliability']:.2f})"
    plot_validation(table, out / "validation.png", title=title)
    plot_scores_vs_fz(candidates, fz_table, out / "validation_by_percentile.png")
    metrics["validate/ceiling"] = ceiling
    for row in table.itertuples():
        metrics[f"validate/{row.score}"] = row.spearman_vs_fz
        metrics[f"validate/{row.score}/top10"] = row.spearman_vs_fz_top10
        metrics[f"validate/{row.score}/fz_top10_recovered"] = row.fz_top10_recovered
        metrics[f"validate/{row.score}/cost_epochs"] = row.cost_epochs
    metrics.update(write_trak_ablation(cfg, fz_table, out))
    log.info("validation against Feldman-Zhang (ceiling %.3f):\n%s", ceiling, table.round(3).to_string(index=False))
    return update_json(out / "metrics.json", metrics)


def write_trak_ablation(cfg: DictConfig, fz_table: pd.DataFrame, out: Path) -> dict:
    """trak_ablation.csv (one row per (proj_dim, damping_rel)) and its metrics; {} without the ablation."""
    ablation = trak_ablation(cfg, candidates_dir(cfg))
    if ablation is None:
        return {}
    scores, grid = ablation
    rows, metrics = [], {}
    for k, rel in grid:
        column = ablation_column(k, rel)
        rho = spearman_against(scores[["sample_index", column]], fz_table, score_column=column)
        rows.append({"proj_dim": k, "damping_rel": rel, "spearman_vs_fz": rho["overall"],
                     "spearman_vs_fz_top10": rho["top"]})
        metrics[f"validate/trak_ablation/proj_dim={k},damping_rel={rel:g}"] = rho["overall"]
    atomic_write_csv(pd.DataFrame(rows), out / "trak_ablation.csv")
    return metrics
