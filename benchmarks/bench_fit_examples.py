"""How few examples can the EK-FAC fit take and keep the ranking? One trained SST-2 model, scored
with the fit on each of ``--fit-examples`` sampled training examples (the default: 2000):

    python benchmarks/bench_fit_examples.py                      (make bench-fit; needs ../shared/data)
    python benchmarks/bench_fit_examples.py --epochs 1 --fit-examples 250 2000

Trains ``experiment=sst2_memorization`` (packaged MiniLM, ``--epochs``) once in this process, then
scores every training instance once per fit size with the default solver (EK-FAC, λ = 0.1 × mean
eigenvalue, own term). Prints, per fit size, the fit's and the scoring pass's seconds, their ratio
to one training epoch, and the Spearman correlation of ``mem_score`` and ``loo_score`` with the
largest fit's, over all instances and over that reference's top 10%. The agreement figures hold
whatever else runs; the seconds only on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str], out: Path):
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir, cfg.paths.root_dir = str(out), str(ROOT)
            del cfg["hydra"]
        OmegaConf.resolve(cfg)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--fit-examples", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--out", default=None, help="CSV of the table (default: benchmarks/results/fit_examples.csv)")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")

    import pandas as pd
    from omegaconf import OmegaConf
    from scipy.stats import spearmanr

    from memlab.callbacks.timing import EpochTimer
    from memlab.studies.ranking import rank_by_memorization, top_count
    from memlab.jobs.candidate_scores import score_with
    from memlab.jobs.subset_training import train_on_subset

    work = Path(tempfile.mkdtemp(prefix="bench-fit-"))
    cfg = compose(["experiment=sst2_memorization", "data.source=local", f"data.dir={Path(args.data_dir).resolve()}",
                   "model=minilm", f"trainer.max_epochs={args.epochs}", "logger=none",
                   f"paths.cache_dir={work / 'cache'}"], work)
    predictions, model, trainer, _ = train_on_subset(cfg, int(cfg.seed))
    # the training epochs alone (EpochTimer): not the cold prefix-cache build before them
    epoch = next(c for c in trainer.callbacks if isinstance(c, EpochTimer)).mean_seconds
    base = OmegaConf.to_container(cfg.solver, resolve=True)
    rows, tables = [], {}
    for m in sorted(args.fit_examples):
        solver = {**base, "options": {**base.get("options", {}), "fit_examples": int(m)}}
        scores, seconds = score_with(trainer, model, solver, work / f"fit-{m}", batch_size=64)  # fit + pass
        fit = json.loads((work / f"fit-{m}" / "metrics.json").read_text())["memorization/fit_seconds"]
        tables[m] = scores
        rows.append({"fit_examples": m, "fit_s": fit, "pass_s": seconds - fit, "scoring_s": seconds,
                     "scoring_per_epoch": seconds / epoch})
    reference = tables[max(tables)].reset_index()
    top = set(rank_by_memorization(reference, "loo_score").head(top_count(len(reference), 10))["sample_index"])
    for row in rows:
        scores = tables[row["fit_examples"]].reset_index()
        merged = reference.merge(scores, on="sample_index", suffixes=("_ref", ""))
        in_top = merged["sample_index"].isin(top)
        for column in ("mem_score", "loo_score"):
            row[f"{column}_rho"] = float(spearmanr(merged[f"{column}_ref"], merged[column]).statistic)
            row[f"{column}_rho_top10"] = float(spearmanr(merged.loc[in_top, f"{column}_ref"],
                                                         merged.loc[in_top, column]).statistic)
    table = pd.DataFrame(rows)
    out = Path(args.out or ROOT / "benchmarks" / "results" / "fit_examples.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"SST-2, MiniLM, {args.epochs} epochs; one training epoch {epoch:.1f} s; reference: the {max(tables)}-example fit")
    print(table.round(4).to_string(index=False))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
