"""Scale: how training, scoring and memory grow with the number of training instances n.

    python benchmarks/bench_scale.py                  (make bench-scale; needs ../shared/data, ~7 min on 2 idle cores)
    python benchmarks/bench_scale.py --dry-run        the commands only
    python benchmarks/bench_scale.py --tiny           the whole pipeline on a generated treebank (a check, minutes)

Each run is one fresh ``python -m memlab experiment=sst2_memorization`` process (MiniLM, 1 epoch, then
every training instance scored), in its own run and cache folder (the frozen-prefix cache is built
cold: it is part of the job and of its peak memory):

    sst2_phrases:1000   a seeded sample of 1,000 training phrases   (data.limit_train=1000)
    sst2_phrases:6920   of 6,920 phrases (as many as SST-2 has sentences)
    sst2_phrases:all    every phrase of the training trees (67,903 here; GLUE: 67,349)
    sst2:all            the 6,920 sentences, for reference (longer inputs than the phrases)

Per run: the epoch's wall time (metrics.json ``train/epoch_seconds``), the scoring time (curvature fit +
scoring pass, ``memorization/seconds``; with the files and plots: ``memorization/total_seconds``), the
job's time, the peak resident memory of the memlab process (``ru_maxrss`` of a fresh wrapper process's
only child, so runs do not mix), and the size of the prefix cache on disk. The table also gives the
ratio scoring / epoch, the peak RSS per instance and its growth per instance over the smallest run of
the same data (flat memory: close to the tokenised data's own few KB), and is written to ``--out``
(CSV). Run it alone on an idle machine: other work distorts every time.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUNS = "sst2_phrases:1000,sst2_phrases:6920,sst2_phrases:all,sst2:all"
TINY_RUNS = "sst2_phrases:40,sst2_phrases:all,sst2:all"


def memlab_command(data: str, n: str, args, run_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "memlab", "experiment=sst2_memorization", f"data={data}", "data.source=local",
           f"data.dir={Path(args.data_dir).resolve()}", f"model={args.model}", f"trainer.max_epochs={args.epochs}",
           "test=false", "logger=none", f"hydra.run.dir={run_dir}", f"paths.cache_dir={run_dir / 'cache'}"]
    if n != "all":
        cmd.append(f"++data.limit_train={int(n)}")  # ++: sst2.yaml has no limit_train key
    if args.prefix_dtype:
        cmd.append(f"++callbacks.prefix_cache.dtype={args.prefix_dtype}")
    return cmd + list(args.override)


def measured(cmd: list[str], log: Path, env: dict) -> dict:
    """Run ``cmd`` as the only child of a fresh wrapper process; its exit code, wall time and peak RSS."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "with open(sys.argv[1], 'w') as log:\n"
               "    rc = subprocess.call(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT)\n"
               "print(json.dumps({'rc': rc, 'wall_seconds': time.perf_counter() - t,\n"
               "                  'peak_rss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    out = subprocess.run([sys.executable, "-c", wrapper, str(log), *cmd], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_row(spec: str, args, env: dict) -> dict:
    data, _, n = spec.partition(":")
    n = n or "all"
    run_dir = Path(args.workdir).resolve() / f"{data}-{n}"
    cmd = memlab_command(data, n, args, run_dir)
    if args.dry_run:
        print(shlex.join(cmd))
        return {}
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {spec}: {shlex.join(cmd)}", flush=True)
    result = measured(cmd, run_dir / "memlab.log", env)
    metrics = read_json(run_dir / "metrics.json")
    diagnostics = read_json(run_dir / "memorization" / "diagnostics.json")
    cache = run_dir / "cache" / "prefix"
    epoch = metrics.get("train/epoch_seconds", float("nan"))
    scoring = metrics.get("memorization/seconds", diagnostics.get("seconds", float("nan")))
    n_train = int(metrics.get("train/n_examples", 0)) or None
    row = {"data": data, "n": n_train or n, "rc": result["rc"], "epoch_seconds": epoch,
           "scoring_seconds": scoring, "solver_fit_seconds": diagnostics.get("fit_seconds", float("nan")),
           "scoring_total_seconds": metrics.get("memorization/total_seconds", float("nan")),
           "job_seconds": metrics.get("job/seconds", float("nan")), "wall_seconds": result["wall_seconds"],
           "peak_rss_mb": result["peak_rss_kb"] / 1024,
           "prefix_cache_mb": sum(p.stat().st_size for p in cache.glob("*.pt")) / 2**20 if cache.is_dir() else 0.0,
           "run_dir": str(run_dir)}
    row["scoring_over_epoch"] = scoring / epoch if epoch and epoch == epoch else float("nan")
    row["peak_rss_kb_per_instance"] = result["peak_rss_kb"] / n_train if n_train else float("nan")
    if result["rc"] != 0:
        print(f"  failed (exit {result['rc']}); see {run_dir / 'memlab.log'}", flush=True)
    return row


def write_tiny_fixture(root: Path, sentences: int = 60, seed: int = 0) -> Path:
    """A generated stand-in for ../shared/data/sst2: trees/train.txt (PTB, labels 0-4) and the
    sentence CSVs, in the vocabulary of the tiny test tokenizer."""
    import random

    rng = random.Random(seed)
    pos, neg = "good great fine lovely superb".split(), "bad awful dull boring poor".split()
    fill = "the a film movie story plot is was and but it this".split()
    rows = {"train": [], "dev": [], "test": []}
    lines = []
    for i in range(sentences + 40):
        y = rng.randrange(2)
        words = rng.sample(fill, rng.randint(2, 5)) + [rng.choice(pos if y else neg)]
        rng.shuffle(words)
        split = "train" if i < sentences else ("dev" if i < sentences + 20 else "test")
        rows[split].append({"label": y, "sentence": " ".join(words), "sample_index": i})
        if split == "train":  # right-branching; a span is polar iff it holds the cue word
            def tree(ws):
                cue = any(w in pos or w in neg for w in ws)
                label = (4 if y else 0) if cue else 2
                if len(ws) == 1:
                    return f"({3 if ws[0] in pos else 1 if ws[0] in neg else 2} {ws[0]})"
                return f"({label} {tree(ws[:1])} {tree(ws[1:])})"
            lines.append(tree(words))
    (root / "trees").mkdir(parents=True, exist_ok=True)
    (root / "trees" / "train.txt").write_text("\n".join(lines) + "\n")
    import csv

    for split, name in (("train", "train.csv"), ("dev", "dev.csv"), ("test", "test.csv")):
        with open(root / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["label", "sentence", "sample_index"])
            writer.writeheader()
            writer.writerows(rows[split])
    return root


def add_growth(rows: list[dict]) -> None:
    """``rss_growth_kb_per_instance``: peak RSS above the smallest run of the same data, per extra
    instance (the fixed cost of Python, torch and the model cancels out); NaN for that smallest run."""
    for row in rows:
        same = [r for r in rows if r["data"] == row["data"] and isinstance(r["n"], int) and r["rc"] == 0]
        base = min(same, key=lambda r: r["n"], default=None)
        growth = float("nan")
        if base is not None and isinstance(row["n"], int) and row["n"] > base["n"]:
            growth = (row["peak_rss_mb"] - base["peak_rss_mb"]) * 1024 / (row["n"] - base["n"])
        row["rss_growth_kb_per_instance"] = growth


def print_table(rows: list[dict]) -> None:
    cols = [("data", "data", "{}"), ("n", "n", "{}"), ("epoch s", "epoch_seconds", "{:.1f}"),
            ("scoring s", "scoring_seconds", "{:.1f}"), ("scoring/epoch", "scoring_over_epoch", "{:.2f}"),
            ("job s", "job_seconds", "{:.0f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
            ("RSS KB/inst", "peak_rss_kb_per_instance", "{:.1f}"),
            ("growth KB/inst", "rss_growth_kb_per_instance", "{:.2f}"), ("cache MB", "prefix_cache_mb", "{:.0f}"),
            ("rc", "rc", "{}")]
    print("  ".join(f"{title:>13s}" for title, _, _ in cols))
    for row in rows:
        cells = []
        for _, key, fmt in cols:
            value = row.get(key, "")
            try:
                cells.append(f"{fmt.format(value):>13s}")
            except (TypeError, ValueError):
                cells.append(f"{str(value):>13s}")
        print("  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=None, help=f"comma-separated data:n (default {DEFAULT_RUNS})")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--model", default="minilm", help="model config (default minilm)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--prefix-dtype", default=None, choices=["float32", "float16", "bfloat16"],
                        help="storage dtype of the frozen-prefix cache (default: the config's, float32)")
    parser.add_argument("--workdir", default=str(ROOT / "outputs" / "bench_scale"),
                        help="run and cache folders, one per run")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_scale.csv"))
    parser.add_argument("--threads", type=int, default=None, help="OMP/MKL threads of each run (default: torch's)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--tiny", action="store_true",
                        help="a generated treebank and model=tiny_bert: checks the pipeline, times nothing real")
    parser.add_argument("override", nargs="*", help="more memlab overrides for every run (key=value)")
    args = parser.parse_args()
    if args.tiny:
        default_workdir = args.workdir == parser.get_default("workdir")
        work = ROOT / "outputs" / "bench_scale_tiny" if default_workdir else Path(args.workdir)
        args.workdir = str(work)
        args.data_dir = str(write_tiny_fixture(work.resolve() / "data"))
        args.model = "tiny_bert" if args.model == parser.get_default("model") else args.model
        args.runs = args.runs or TINY_RUNS
        if args.out == parser.get_default("out"):
            args.out = str(work / "bench_scale_tiny.csv")
    runs = [s.strip() for s in (args.runs or DEFAULT_RUNS).split(",") if s.strip()]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows = [row for row in (run_row(spec, args, env) for spec in runs) if row]
    if args.dry_run:
        return
    add_growth(rows)
    print_table(rows)
    import csv

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    if any(row["rc"] != 0 for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
