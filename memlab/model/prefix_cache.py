"""Frozen-prefix reuse: embeddings and layers [0, k) never change, so their output for every example
is computed once, stored per example (unpadded), and optionally kept on disk. The file name is a key
of what makes the content (a hash of the prefix's weights, the tokenised data, k and the dtype); each
file also carries that key and its row count and is checked on read: a bad file is recomputed with
one warning naming it. Training, scoring and retraining then run only the trainable suffix.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.base import ListDataset
from ..utils.fingerprint import short_hash
from ..utils.io import atomic_torch_save, load_torch_entry, warn_bad_cache_entry


def prefix_key(weights_fingerprint: str, freeze_layers: int, data_fingerprint: str, dtype: str) -> str:
    """Key of a prefix-cache entry: the prefix's weights (not its name: a seed or a changed checkpoint
    folder gives other hidden states), how many layers it holds, the tokenised data and the dtype."""
    return short_hash({"weights": weights_fingerprint, "freeze_layers": freeze_layers,
                       "data": data_fingerprint, "dtype": dtype})


@torch.no_grad()
def compute_prefix_outputs(prefix: torch.nn.Module, examples: list[dict], batch_size: int = 64,
                           dtype: torch.dtype = torch.float32, desc: str = "prefix") -> list[torch.Tensor]:
    """Layer-k hidden states of each example, ``[len_i, H]``; batches are length-sorted for speed."""
    prefix.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    out: list[torch.Tensor | None] = [None] * len(examples)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[start:start + batch_size]
        ids = torch.nn.utils.rnn.pad_sequence([examples[i]["input_ids"] for i in idx], batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(examples[i]["input_ids"]) for i in idx],
                                               batch_first=True)
        types = None
        if "token_type_ids" in examples[idx[0]]:
            types = torch.nn.utils.rnn.pad_sequence([examples[i]["token_type_ids"] for i in idx], batch_first=True)
        hidden = prefix(ids, mask, types)
        for row, i in enumerate(idx):
            out[i] = hidden[row, : len(examples[i]["input_ids"])].to(dtype).clone()
    return out


def entry_problem(stored: dict, key: str | None, dataset: ListDataset, dtype: torch.dtype) -> str | None:
    """Why a stored entry does not hold this data set's prefix outputs (None: it does)."""
    hidden, rows = stored.get("hidden"), stored.get("rows")
    if key is not None and stored.get("key") != key:
        return f"key {stored.get('key')!r}, expected {key!r}"
    if not isinstance(hidden, list) or rows != len(dataset) or len(hidden) != rows:
        return f"{len(hidden) if isinstance(hidden, list) else 'no'} hidden states for {rows} rows, expected {len(dataset)}"
    if stored.get("sample_index") != dataset.sample_indices():
        return "its sample_index values are not this data set's"
    for h, e in zip(hidden, dataset.examples):
        if not isinstance(h, torch.Tensor) or h.dtype != dtype or h.shape[0] != len(e["input_ids"]):
            return f"sample_index {e['sample_index']}: hidden states do not match its {len(e['input_ids'])} tokens"
    return None


def read_prefix_entry(cache_file: Path, key: str | None, dataset: ListDataset,
                      dtype: torch.dtype) -> list[torch.Tensor] | None:
    """The verified hidden states in ``cache_file``, or None (one warning if the file is bad)."""
    stored = load_torch_entry(cache_file, mmap=True)
    if stored is None:
        return None
    problem = entry_problem(stored, key, dataset, dtype)
    if problem is not None:
        warn_bad_cache_entry(cache_file, problem)
        return None
    return stored["hidden"]


def with_prefix_outputs(prefix: torch.nn.Module, dataset: ListDataset, cache_file: str | os.PathLike | None,
                        batch_size: int = 64, dtype: torch.dtype = torch.float32, desc: str = "prefix",
                        key: str | None = None) -> ListDataset:
    """``dataset`` with a ``hidden`` entry per example, read from ``cache_file`` when it holds them."""
    hidden = None
    if cache_file is not None and Path(cache_file).is_file():
        hidden = read_prefix_entry(Path(cache_file), key, dataset, dtype)
    if hidden is None:
        hidden = compute_prefix_outputs(prefix, dataset.examples, batch_size, dtype, desc)
        if cache_file is not None:
            atomic_torch_save({"key": key, "rows": len(hidden), "sample_index": dataset.sample_indices(),
                               "hidden": hidden}, cache_file)
    return ListDataset([{**e, "hidden": h} for e, h in zip(dataset.examples, hidden)])
