"""Task ``validate``: does the score measure memorization? Every candidate score against the Feldman-Zhang reference:

    python -m memlab experiment=sst2_validate [data.source=local data.dir=DIR model=minilm] [fz.models=64]

Reuses (or trains) the FZ subset models (:mod:`memlab.tasks.fz`) and the scored model with
its candidate scores (:mod:`memlab.jobs.candidate_scores`), then writes ``validation.csv``
(``score,spearman_vs_fz,spearman_ci_low,spearman_ci_high,spearman_vs_fz_top10,ceiling,fz_top10_recovered,
recovered_vs_loss,ci_low,ci_high``: :mod:`memlab.studies.validation`), ``validation.png`` (the table as bars),
``validation_by_percentile.png`` (mean FZ memorization per percentile of each score),
``spearman_intervals.csv`` (each Spearman's interval and its paired-bootstrap difference to the best
candidate, for ``python -m memlab.report estimators``), ``scores.csv`` (every candidate beside the
reference), ``fz_scores.csv`` and ``fz_reliability.csv/.png`` (:func:`memlab.tasks.fz.write_fz_reference`);
``fz_reliability`` and
each candidate's Spearman go into metrics.json. The ceiling is sqrt(fz_reliability), the highest
agreement the reference's noise allows.
"""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from ..report.study_figures import plot_scores_vs_fz, plot_validation
from ..studies.feldman_zhang import attenuation_ceiling
from ..studies.validation import spearman_intervals, validation_table
from ..utils.io import atomic_write_csv, update_json
from ..jobs.candidate_scores import candidate_scores
from .fz import write_fz_reference

log = logging.getLogger("memlab")


def run(cfg: DictConfig) -> dict:
    """Task ``validate``: validation.csv and its figures; returns the metrics written to metrics.json."""
    out = Path(cfg.paths.output_dir)
    fz_table, metrics = write_fz_reference(cfg, out)
    candidates, _, _ = candidate_scores(cfg)
    ceiling = attenuation_ceiling(metrics["fz_reliability"])
    table = validation_table(candidates, fz_table, ceiling)
    atomic_write_csv(table, out / "validation.csv")
    atomic_write_csv(spearman_intervals(candidates, fz_table), out / "spearman_intervals.csv")  # small: archived
    atomic_write_csv(candidates.merge(fz_table, on="sample_index"), out / "scores.csv")
    title = f"{cfg.data.name}: Spearman with FZ ({int(cfg.fz.models)} models, reliability {metrics['fz_reliability']:.2f})"
    plot_validation(table, out / "validation.png", title=title)
    plot_scores_vs_fz(candidates, fz_table, out / "validation_by_percentile.png")
    metrics["validate/ceiling"] = ceiling
    for row in table.itertuples():
        metrics[f"validate/{row.score}"] = row.spearman_vs_fz
        metrics[f"validate/{row.score}/top10"] = row.spearman_vs_fz_top10
        metrics[f"validate/{row.score}/fz_top10_recovered"] = row.fz_top10_recovered
    log.info("validation against Feldman-Zhang (ceiling %.3f):\n%s", ceiling, table.round(3).to_string(index=False))
    return update_json(out / "metrics.json", metrics)
