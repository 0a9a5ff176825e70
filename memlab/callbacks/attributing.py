"""The Lightning shell around :mod:`memlab.pipeline.attributing`: after the memorization scores, attributes
the top-N% memorized instances to tokens or image regions (Eq. 5) and measures the reduction rate
(Eq. 6). Writes into ``<run>/memorization/``: attributions.jsonl, attributions.html (text) or
attributions.png (images: every class's most memorized image, paper Fig. 3; its top-1 is attributed too
when it is not in the top-N%), reduction_rate.csv/.png (text and images, over the top-N% only).

It reuses the scores and the fitted solver of the :class:`~memlab.callbacks.scoring.ScoringCallback`,
found among ``trainer.callbacks`` by type when fitting starts (a clear error when there is none, or
when it would run after this one)."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import pytorch_lightning as L
import torch

from ..influence.functional import trainable_params
from ..pipeline.attributing import (attribute_images, attribute_text, image_reduction_rate, text_reduction_rate,
                                    top_instances, top_of_each_class)
from ..utils.io import atomic_write_csv, atomic_write_jsonl, update_json
from .scoring import ScoringCallback, find_scoring_callback

log = logging.getLogger("memlab")


class AttributionCallback(L.Callback):
    def __init__(self, output_dir: str, top_pct: float = 10.0, steps: int = 50, rule: str = "left",
                 mask_special: bool = True, placement: str = "layer", reduction_rate: bool = True, random_draws: int = 3, seed: int = 0,
                 max_instances: int | None = None, metrics_file: str | None = None, group_size: int = 1):
        self.output_dir = Path(output_dir)
        self.top_pct, self.steps, self.rule, self.mask_special = top_pct, steps, rule, mask_special
        self.placement, self.group_size = placement, group_size
        self.reduction, self.random_draws, self.seed, self.max_instances = reduction_rate, random_draws, seed, max_instances
        self.metrics_file = Path(metrics_file) if metrics_file else self.output_dir.parent / "metrics.json"
        self.scorer: ScoringCallback | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":  # before training: a missing or misplaced scoring callback fails at once
            self.scorer = find_scoring_callback(trainer, self)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        result = (self.scorer or find_scoring_callback(trainer, self)).result
        if trainer.global_rank != 0 or result is None:  # None: scoring disabled
            return
        started = time.perf_counter()
        dm = trainer.datamodule
        scores = result.scores
        solver = result.solver
        chosen = top_instances(scores, self.top_pct)[: self.max_instances]
        num_top = len(chosen)  # Eq. 6's set: the top-N% only, not the classes' top-1 added for Fig. 3
        if hasattr(dm, "images"):  # Fig. 3 shows every class's most memorized image
            chosen += [i for i in top_of_each_class(scores) if i not in set(chosen)]
        train = dm.splits["train"]
        position = {index: p for p, index in enumerate(train.sample_indices())}
        examples = [train.examples[position[int(i)]] for i in chosen]  # only these examples built
        module, net = pl_module.scoring_module, pl_module.net
        params, objective = trainable_params(module), pl_module.training_objective
        by_sample = scores.set_index("sample_index")
        mem = by_sample.loc[chosen, "mem_score"]
        # attributions explain ∇Pᵀs with s = (H+λI)⁻¹∇L from the solver's own H; with the own term added
        # (mem_score = loo_score / (1 + ...), a per-instance factor) that is loo_score: the reduction
        # rate re-scores masked inputs the same way, so it compares with loo_score
        explained = by_sample.loc[chosen, "loo_score"] if "loo_score" in by_sample else mem
        pl_module.eval()
        with torch.enable_grad():
            if "hidden" in examples[0]:
                records = attribute_text(net, module, params, solver, objective, examples, dm.tokenizer, self.steps,
                                         self.rule, self.mask_special, self.placement, group_size=self.group_size)
            else:
                records = attribute_images(module, params, solver, objective, examples, self.steps, self.rule)
        for r in records:
            r["mem_score"] = float(mem.loc[r["sample_index"]])
            if explained is not mem:
                r["loo_score"] = float(explained.loc[r["sample_index"]])
        out = self.output_dir
        atomic_write_jsonl(records, out / "attributions.jsonl")
        gaps = torch.tensor([r["completeness_gap"] for r in records])
        metrics = {"attribution/instances": len(records), "attribution/completeness_gap_median": float(gaps.median()),
                   "attribution/seconds": time.perf_counter() - started}
        is_text = "tokens" in records[0]  # image records hold 7x7 cells instead
        if is_text:
            from ..report.plots import attribution_html

            attribution_html(records, out / "attributions.html", class_names=getattr(dm, "class_names", None))
        elif hasattr(dm, "images"):
            from ..report.image_figures import plot_image_heatmaps

            predictions = dict(zip(by_sample.index, by_sample["prediction"])) if "prediction" in by_sample else None
            plot_image_heatmaps(records, dm.images, out / "attributions.png", getattr(dm, "class_names", None),
                                predictions)
        if self.reduction:
            t0 = time.perf_counter()
            before = torch.tensor(explained.values[:num_top])
            with torch.enable_grad():
                if is_text:
                    rows = text_reduction_rate(net, module, params, solver, objective, examples[:num_top],
                                               records[:num_top], before, dm.tokenizer, self.random_draws, self.seed)
                else:
                    rows = image_reduction_rate(module, params, solver, objective, examples[:num_top],
                                                records[:num_top], before, self.random_draws, self.seed)
            self.write_reduction(rows, out, masked="tokens" if is_text else "cells")
            metrics["reduction_rate/seconds"] = time.perf_counter() - t0
            metrics.update({f"reduction_rate/{r['method']}_{r['k_percent']}": r["reduction_rate"] for r in rows})
        update_json(self.metrics_file, metrics)
        log.info("attributed %d instances in %.1f s -> %s", len(records), metrics["attribution/seconds"], out)

    @staticmethod
    def write_reduction(rows, out: Path, masked: str = "tokens") -> None:
        import pandas as pd

        from ..report.plots import plot_reduction_rate

        df = pd.DataFrame(rows)[["k_percent", "method", "reduction_rate"]]
        atomic_write_csv(df, out / "reduction_rate.csv")
        plot_reduction_rate(df, out / "reduction_rate.png", masked=masked)
