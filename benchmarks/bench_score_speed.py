"""How fast is scoring next to a training epoch, and what do the fast settings change? One trained SST-2
model, scored with each solver setting against the exact reference (issue #15):

    python benchmarks/bench_score_speed.py                 (make bench-score-speed; needs ../shared/data)
    python benchmarks/bench_score_speed.py --data sst2_phrases --limit-train 6920

Trains ``experiment=sst2_memorization`` (packaged MiniLM, 1 epoch) once in this process, then for each
setting fits EK-FAC (``fit_examples``) and runs the scoring pass (``score_tolerance``: the truncated
eigenbasis of :mod:`memlab.influence.solver.truncation`, none: every direction; ``exact_logits``: P(y|x)
and the loss from a separate float32 forward) over every training instance. Prints per setting the
fit's and the pass's seconds, (fit + pass) / epoch, the truncated Linears, and the agreement of
``mem_score`` and ``loo_score`` with the reference (the first setting, memlab's previous default: the
2000-example fit, exact pass, exact logits): Spearman over all instances and over the reference's top 10% by ``loo_score``, and the median / 99th percentile /
largest relative difference. The agreement holds whatever else runs; the seconds only on an idle
machine (run it alone).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit_examples import ROOT, compose  # noqa: E402

# (fit_examples, score_tolerance, exact_logits): the old default first (the reference), then each change
SETTINGS = [(2000, None, True), (1000, None, True), (1000, 0.01, True), (1000, 0.01, False), (1000, 0.03, False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--data", default="sst2", help="sst2 (the study's sentences) or sst2_phrases")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--out", default=None, help="CSV of the table (default: benchmarks/results/score_speed.csv)")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    import numpy as np
    import pandas as pd
    import torch
    from omegaconf import OmegaConf
    from scipy.stats import spearmanr

    from memlab.callbacks.timing import EpochTimer
    from memlab.influence.functional import trainable_params
    from memlab.influence.sampling import EveryNth
    from memlab.influence.self_influence import memorization_scores
    from memlab.influence.solver import fit_solver
    from memlab.jobs.subset_training import train_on_subset

    work = Path(tempfile.mkdtemp(prefix="bench-score-speed-"))
    overrides = ["experiment=sst2_memorization", f"data={args.data}", "data.source=local",
                 f"data.dir={Path(args.data_dir).resolve()}", "model=minilm", "trainer.max_epochs=1", "logger=none",
                 f"paths.cache_dir={work / 'cache'}"]
    if args.limit_train:
        overrides.append(f"++data.limit_train={args.limit_train}")
    cfg = compose(overrides, work)
    _, model, trainer, _ = train_on_subset(cfg, int(cfg.seed))
    epoch = next(c for c in trainer.callbacks if isinstance(c, EpochTimer)).mean_seconds
    dm = trainer.datamodule
    loader = dm.score_dataloader(64)
    module, objective = model.scoring_module, model.training_objective
    params = trainable_params(module)
    n = len(dm.splits["train"])
    solver_cfg = OmegaConf.to_container(cfg.solver, resolve=True)
    varied = ("fit_examples", "score_tolerance", "exact_logits")
    options = {k: v for k, v in solver_cfg.get("options", {}).items() if k not in varied}

    rows, scores = [], []
    for fit_examples, tolerance, exact in SETTINGS:
        started = time.perf_counter()
        solver, _ = fit_solver(solver_cfg["name"], module, params, EveryNth(loader), objective, damping=None,
                               damping_rel=solver_cfg["damping_rel"], fit_examples=fit_examples,
                               score_tolerance=tolerance, exact_logits=exact, **options)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        out = list(memorization_scores(module, params, loader, solver, objective, own_term_n=n))
        seconds = time.perf_counter() - started
        scores.append({k: torch.cat([r[k] for r in out]).double().numpy() for k in ("mem_score", "loo_score")})
        info = solver.describe()
        rows.append({"fit_examples": fit_examples, "score_tolerance": tolerance, "exact_logits": exact,
                     "fit_s": fit, "pass_s": seconds,
                     "scoring_per_epoch": (fit + seconds) / epoch,
                     "truncated": "; ".join(info.get("truncated_blocks", [])) or "-"})
    reference = scores[0]
    top = np.argsort(-reference["loo_score"])[: max(1, n // 10)]
    for row, got in zip(rows, scores):
        for column in ("mem_score", "loo_score"):
            rel = np.abs(got[column] - reference[column]) / np.abs(reference[column])
            row[f"{column}_rho"] = float(spearmanr(got[column], reference[column]).statistic)
            row[f"{column}_rho_top10"] = float(spearmanr(got[column][top], reference[column][top]).statistic)
            row[f"{column}_rel_median"], row[f"{column}_rel_p99"] = float(np.median(rel)), float(np.quantile(rel, 0.99))
            row[f"{column}_rel_max"] = float(rel.max())
    table = pd.DataFrame(rows)
    out = Path(args.out or ROOT / "benchmarks" / "results" / "score_speed.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"{args.data} (n = {n}), MiniLM, 1 epoch: one training epoch {epoch:.1f} s; reference: the first row")
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(table.drop(columns="truncated").round(5).to_string(index=False))
        print(table[["fit_examples", "score_tolerance", "exact_logits", "truncated"]].to_string(index=False))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
