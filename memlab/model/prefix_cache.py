"""Frozen-prefix reuse: embeddings and layers [0, k) never change, so their output for every example
is computed once, stored per example (unpadded), and optionally kept on disk keyed by the model and
the tokenised data. Training, scoring and retraining then run only the trainable suffix.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.base import ListDataset
from ..utils.io import atomic_torch_save


def prefix_key(model_name: str, freeze_layers: int, data_fingerprint: str, dtype: str) -> str:
    return hashlib.sha1(f"{model_name}|{freeze_layers}|{data_fingerprint}|{dtype}".encode()).hexdigest()[:16]


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


def with_prefix_outputs(prefix: torch.nn.Module, dataset: ListDataset, cache_file: str | os.PathLike | None,
                        batch_size: int = 64, dtype: torch.dtype = torch.float32, desc: str = "prefix") -> ListDataset:
    """``dataset`` with a ``hidden`` entry per example, read from ``cache_file`` when it exists."""
    hidden = None
    if cache_file is not None and Path(cache_file).is_file():
        stored = torch.load(cache_file, mmap=True, weights_only=True)
        if stored["sample_index"] == dataset.sample_indices():
            hidden = stored["hidden"]
    if hidden is None:
        hidden = compute_prefix_outputs(prefix, dataset.examples, batch_size, dtype, desc)
        if cache_file is not None:
            atomic_torch_save({"sample_index": dataset.sample_indices(), "hidden": hidden}, cache_file)
    return ListDataset([{**e, "hidden": h} for e, h in zip(dataset.examples, hidden)])
