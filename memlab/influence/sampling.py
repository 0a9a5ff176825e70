"""How the influence code reads the training data: batches moved to the parameters' device, seeded
subsamples of examples (re-batched), counts, and evaluation mode (dropout off) while curvature,
gradients and attributions are measured.

A memlab batch is a dict of tensors whose first dimension is the example; ``batches`` is any
iterable of them (a ``DataLoader`` or a list). Solvers that pass over the data more than once keep
``batches`` as given when it can be iterated again, else they hold it as a list.
"""
from __future__ import annotations

import itertools
from contextlib import contextmanager
from typing import Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

Batch = dict[str, Tensor]


def batch_size_of(batch: Mapping[str, Tensor]) -> int:
    return int(batch["labels"].shape[0])


def to_device(batch: Mapping[str, Tensor], device: torch.device) -> Batch:
    """The tensor entries of a batch on ``device`` (non-tensor entries are dropped)."""
    return {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}


def reiterable(batches: Iterable[Batch]) -> Iterable[Batch]:
    """``batches`` itself if it can be iterated again (a list, a DataLoader), else a list of it."""
    return list(batches) if iter(batches) is batches else batches


class EveryNth:
    """Every ``step``-th batch of ``batches`` (a DataLoader or any re-iterable) from the ``start``-th
    on, read afresh at every pass: one rank's share of the data.

    Why not a list of those batches: a list holds them all (for prefix-cached SST-2 phrases their
    hidden states, ~1.2 GB at 68k instances) for as long as the curvature fit and the scoring pass
    run, while the solvers keep only their seeded subsample (EK-FAC: 1000 examples) in memory."""

    def __init__(self, batches: Iterable[Batch], start: int = 0, step: int = 1):
        if iter(batches) is batches:
            raise TypeError("EveryNth needs batches that can be iterated again (a DataLoader, a list)")
        self.batches, self.start, self.step = batches, int(start), int(step)

    def __iter__(self) -> Iterator[Batch]:
        return itertools.islice(iter(self.batches), self.start, None, self.step)


def count_examples(batches: Iterable[Mapping[str, Tensor]]) -> int:
    return sum(batch_size_of(b) for b in batches)


def _row(batch: Mapping[str, Tensor], i: int) -> Batch:
    # clone so that one kept example does not keep its whole source batch alive
    return {k: v[i:i + 1].clone() for k, v in batch.items() if torch.is_tensor(v)}


def _same_shapes(a: Batch, b: Batch) -> bool:
    return a.keys() == b.keys() and all(a[k].shape[1:] == b[k].shape[1:] for k in a)


def collate_rows(rows: Iterable[Batch], batch_size: int) -> list[Batch]:
    """Concatenate single-example batches into batches of ``batch_size``; a change of the
    non-batch shapes (e.g. text padded to another length) starts a new batch."""
    out, pending = [], []

    def flush():
        if pending:
            out.append({k: torch.cat([r[k] for r in pending]) for k in pending[0]})
            pending.clear()

    for row in rows:
        if pending and (len(pending) >= batch_size or not _same_shapes(pending[0], row)):
            flush()
        pending.append(row)
    flush()
    return out


def take_positions(batches: Iterable[Mapping[str, Tensor]], positions: Iterable[int]) -> dict[int, Batch]:
    """The examples at the given stream positions (0-based over all batches), as 1-example batches."""
    wanted = sorted(set(int(p) for p in positions))
    found, start, j = {}, 0, 0
    for batch in batches:
        n = batch_size_of(batch)
        while j < len(wanted) and wanted[j] < start + n:
            found[wanted[j]] = _row(batch, wanted[j] - start)
            j += 1
        start += n
        if j == len(wanted):
            break
    if j < len(wanted):
        raise ValueError(f"asked for example position {wanted[j]} but the data hold only {start} examples")
    return found


def seeded_subsample(batches: Iterable[Batch], n: int | None, seed: int,
                     batch_size: int | None = None) -> Iterable[Batch]:
    """A uniform random subset of ``n`` examples (seeded), held in memory as re-collated batches;
    ``batches`` itself when ``n`` is None or not smaller than the data."""
    batches = reiterable(batches)
    if n is None:
        return batches
    total = count_examples(batches)
    if n >= total:
        return batches
    if batch_size is None:
        batch_size = max(batch_size_of(next(iter(batches))), 1)
    gen = torch.Generator().manual_seed(seed)
    chosen = sorted(torch.randperm(total, generator=gen)[:n].tolist())
    rows = take_positions(batches, chosen)
    return collate_rows((rows[p] for p in chosen), batch_size)


def random_stream_positions(total: int, length: int, seed: int) -> list[int]:
    """``length`` example positions drawn epoch by epoch from seeded shuffles of ``range(total)``."""
    gen = torch.Generator().manual_seed(seed)
    out: list[int] = []
    while len(out) < length:
        out.extend(torch.randperm(total, generator=gen).tolist())
    return out[:length]


def on_device(batches: Iterable[Batch], device: torch.device) -> Iterator[Batch]:
    for batch in batches:
        yield to_device(batch, device)


def params_device(params: Mapping[str, Tensor]) -> torch.device:
    return next(iter(params.values())).device


@contextmanager
def eval_mode(module: nn.Module):
    """Dropout off while curvature, gradients and attributions are measured (they must be
    deterministic properties of the trained model); the training flag is restored."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def summed(t: Tensor, all_reduce) -> Tensor:
    """``t`` summed over processes by ``all_reduce`` (identity in a single process)."""
    return all_reduce(t) if all_reduce is not None else t
