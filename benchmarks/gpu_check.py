"""Does memlab work on this CUDA machine, and how fast? One script, under 10 minutes:

    make gpu-check                     (python benchmarks/gpu_check.py)
    python benchmarks/gpu_check.py --dry-run      the commands only

Without CUDA it says so in one line and exits 0. With CUDA, each step a subprocess with a timeout
(the whole stays under ``--budget`` seconds, 570 by default):

1. the fast tests that touch the device (``pytest -m gpu``: tests/gpu/);
2. one SST-2 ``recipe=study`` training (1 epoch) + memorization scoring on the GPU, ``trainer=gpu``:
   data from ../shared/data/sst2 when present (else the hub), DistilBERT when the hub is reachable,
   else the packaged MiniLM (``model=minilm``);
3. the same with ``trainer=ddp trainer.devices=N`` when N > 1 GPUs are present.

Then, per run, from its metrics.json: the epoch's seconds (``train/epoch_seconds``), the scoring seconds
(curvature fit + scoring pass, ``memorization/seconds``), their ratio and the peak GPU memory
(``gpu/max_memory_allocated_gib``: torch.cuda.max_memory_allocated of the run, training, scoring and
testing together). The run commands printed are the README's GPU commands.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NO_CUDA = "gpu-check: no CUDA device (torch.cuda.is_available() is False); nothing to check"
# where the study's SST-2 files may be: beside the checkout (../shared) or inside it (shared/)
SST2_DIRS = (ROOT.parent / "shared" / "data" / "sst2", ROOT / "shared" / "data" / "sst2")
TEST_SECONDS, RUN_SECONDS = 150, 300  # caps per step; the budget's remainder caps them further


def sst2_dir() -> Path | None:
    return next((d for d in SST2_DIRS if (d / "train.csv").is_file()), None)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers (and offline mode is off): DistilBERT then, else MiniLM."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def run_overrides(out_dir: Path, name: str, data_dir: Path | None, hub: bool, devices: int = 1) -> list[str]:
    """The ``python -m memlab`` overrides of one check run: SST-2, the study's recipe, 1 epoch, scored."""
    trainer = ["trainer=gpu"] if devices == 1 else ["trainer=ddp", f"trainer.devices={devices}"]
    data = [] if data_dir is None else ["data.source=local", f"data.dir={data_dir}"]
    model = [] if hub else ["model=minilm"]
    return ["experiment=sst2_memorization", *data, *model, *trainer, "trainer.max_epochs=1", "logger=none",
            f"task_name=gpu_check_{name}", f"hydra.run.dir={out_dir / name}"]


def commands(out_dir: Path, n_gpus: int, data_dir: Path | None, hub: bool) -> list[tuple[str, list[str]]]:
    """(name, argv) of every step, in order: the device tests, the 1-GPU run, the DDP run (N > 1)."""
    steps = [("tests", [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu"]),
             ("gpu", [sys.executable, "-m", "memlab", *run_overrides(out_dir, "gpu", data_dir, hub)])]
    if n_gpus > 1:
        steps.append(("ddp", [sys.executable, "-m", "memlab",
                              *run_overrides(out_dir, "ddp", data_dir, hub, devices=n_gpus)]))
    return steps


def run_step(name: str, argv: list[str], timeout: float) -> tuple[str, float]:
    """Run one step (its output streams through); ``ok``, ``failed (exit N)`` or ``timed out``."""
    print(f"\n== {name}: {shlex.join(argv)}  (timeout {timeout:.0f} s)", flush=True)
    started = time.perf_counter()
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    try:
        rc = subprocess.run(argv, cwd=ROOT, env=env, timeout=timeout).returncode
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        status = "timed out"
    return status, time.perf_counter() - started


def run_numbers(run_dir: Path) -> dict:
    """Epoch seconds, scoring seconds, their ratio and the peak GPU memory from a run's metrics.json."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    epoch, scoring = metrics.get("train/epoch_seconds"), metrics.get("memorization/seconds")
    return {"epoch_s": epoch, "scoring_s": scoring,
            "ratio": scoring / epoch if epoch and scoring is not None else None,
            "peak_gib": metrics.get("gpu/max_memory_allocated_gib"), "test_acc": metrics.get("test/acc")}


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for all steps together")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.dry_run:
        print(NO_CUDA)
        return 0
    n_gpus = torch.cuda.device_count()
    data_dir, hub = sst2_dir(), hub_reachable()
    steps = commands(args.out, n_gpus, data_dir, hub)
    if args.dry_run:
        for name, cmd in steps:
            print(f"{name}: {shlex.join(cmd)}")
        return 0
    print(f"gpu-check: {n_gpus} x {torch.cuda.get_device_name(0)}; SST-2 from {data_dir or 'the hub'}; "
          f"model {'distilbert' if hub else 'minilm (hub unreachable)'}; runs in {args.out}")
    deadline = time.perf_counter() + args.budget
    results = []
    for name, cmd in steps:
        left = deadline - time.perf_counter()
        if left < 30:
            results.append((name, "not run (budget spent)", 0.0))
            continue
        status, seconds = run_step(name, cmd, min(left, TEST_SECONDS if name == "tests" else RUN_SECONDS))
        results.append((name, status, seconds))

    print("\n== gpu-check summary")
    print(f"{'step':<6} {'status':<22} {'wall s':>7} {'epoch s':>8} {'scoring s':>10} {'scoring/epoch':>14} "
          f"{'peak GPU GiB':>13} {'test acc':>9}")
    for name, status, seconds in results:
        n = run_numbers(args.out / name) if name != "tests" else {}
        print(f"{name:<6} {status:<22} {seconds:>7.1f} {fmt(n.get('epoch_s'), '.1f'):>8} "
              f"{fmt(n.get('scoring_s'), '.1f'):>10} {fmt(n.get('ratio'), '.2f'):>14} "
              f"{fmt(n.get('peak_gib'), '.2f'):>13} {fmt(n.get('test_acc'), '.4f'):>9}")
    return 0 if all(status == "ok" for _, status, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
