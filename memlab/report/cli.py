"""Re-make the report of a finished run or sweep:

    python -m memlab.report multirun/sst2_removal/<date>/<time>   # removal_summary.csv + removal.png
    python -m memlab.report outputs/sst2_memorization/<date>/<time>  # score vs loss, disagreements
    python -m memlab.report paper DIR... [--paper PATH] [--out docs/paper_vs_memlab.md]  # memlab beside the paper
    python -m memlab.report archive RUNDIR... --to docs/results/NAME  # keep a run's small result files in git
    python -m memlab.report estimators DIR... [--out docs/estimators.md]  # which memorization estimator to use
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def report_scores(run_dir: Path) -> list[Path]:
    import pandas as pd

    from ..studies.diagnostics import score_diagnostics
    from ..utils.io import atomic_write_csv, atomic_write_text
    from .plots import disagreement_table, plot_score_vs_loss

    mem = run_dir / "memorization"
    scores = pd.read_csv(mem / "scores.csv")
    diag_file = mem / "diagnostics.json"
    old = json.loads(diag_file.read_text()) if diag_file.is_file() else {}
    info = {"solver": {"solver": old.get("solver"), "damping": old.get("damping")}, "spectrum": old.get("spectrum")}
    diagnostics = {**old, **score_diagnostics(scores, info)}
    atomic_write_text(diag_file, json.dumps(diagnostics, indent=2, default=str))
    metrics_file = run_dir / "metrics.json"
    class_names = json.loads(metrics_file.read_text()).get("data/class_names") if metrics_file.is_file() else None
    out = [plot_score_vs_loss(scores, mem / "score_vs_loss.png", class_names=class_names),
           atomic_write_csv(disagreement_table(scores, n=20), mem / "disagreement.csv"), diag_file]
    print(f"Spearman(score, loss) = {diagnostics['spearman_vs_loss']:.3f}; "
          f"Spearman(score, P*|grad L|^2) = {diagnostics['spearman_vs_identity']:.3f}")
    return out


SUBCOMMANDS = {"paper": "paper_command", "archive": "archive", "estimators": "estimators"}  # each module's main(argv) runs it


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(f".{SUBCOMMANDS[argv[0]]}", __package__).main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m memlab.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a multirun sweep dir or a run dir")
    parser.add_argument("--no-wandb", action="store_true", help="do not log the report to W&B")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the findings are logged, as in a sweep
    path = args.path
    if not path.is_dir():
        print(f"error: {path} is not a directory", file=sys.stderr)
        return 2
    if (path / "memorization" / "scores.csv").is_file():
        written = report_scores(path)
    elif (path / "multirun.yaml").is_file() or any(path.glob("*/removal_job.json")):
        from .removal_report import report_removal_sweep

        written = list(report_removal_sweep(path, log_wandb=not args.no_wandb).values())
    else:
        print(f"error: {path} holds neither memorization/scores.csv nor a removal sweep", file=sys.stderr)
        return 2
    for p in written:
        print(p)
    return 0

