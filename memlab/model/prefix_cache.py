"""Frozen-prefix reuse: embeddings and layers [0, k) never change, so their output for every example
is computed once and kept on disk; training, scoring and retraining then run only the trainable suffix.

One store per split (:mod:`memlab.data.disk_store`), never held in memory as a whole: the hidden
states of all examples, unpadded, one after another in a flat ``hidden [T, H]`` tensor (T = the
split's number of tokens; rows in the length-sorted order they are computed in, so a build writes
sequentially), with ``offsets [N]`` / ``lengths [N]`` locating example i's ``[len_i, H]`` rows, in
the storage dtype (float32 by default). The build streams: each length-sorted batch of the prefix is
written as soon as it is computed, into a partial file renamed whole at the end. Examples get
memory-mapped views of their rows; batches read them with ``pread`` (resident memory stays flat).

The file name is a key of what makes the content (a hash of the prefix's weights, the tokenised data,
k, the dtype and the file format); each file also carries that key, its sample indices and lengths,
checked on read: a bad file is recomputed with one warning naming it. Without a cache folder the
store is a temporary file, deleted once open (it lives as long as the data module).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from ..data.base import ExampleDataset
from ..data.disk_store import StoreRows, StoreWriter, open_store, storage_dtype, temporary_store_path
from ..utils.fingerprint import short_hash
from ..utils.io import warn_bad_cache_entry

PREFIX_FORMAT = 2  # 2: one flat memory-mapped tensor per split, streamed (1: a list of tensors)


def prefix_key(weights_fingerprint: str, freeze_layers: int, data_fingerprint: str, dtype: str) -> str:
    """Key of a prefix-cache entry: the prefix's weights (not its name: a seed or a changed checkpoint
    folder gives other hidden states), how many layers it holds, the tokenised data, the dtype and
    the file format."""
    return short_hash({"weights": weights_fingerprint, "freeze_layers": freeze_layers,
                       "data": data_fingerprint, "dtype": dtype, "format": PREFIX_FORMAT})


def length_order(examples: list[dict]) -> list[int]:
    """Positions of ``examples`` by length (stable): the order prefix batches are computed and stored in."""
    return sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))


@torch.no_grad()
def iter_prefix_outputs(prefix: torch.nn.Module, examples: list[dict], batch_size: int = 64,
                        dtype: torch.dtype = torch.float32, desc: str = "prefix",
                        order: list[int] | None = None) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    """Per length-sorted batch: (positions in ``examples``, their layer-k hidden states ``[len_i, H]``).
    Computed on the prefix's device (a GPU when it is there), returned on the CPU, where the store is."""
    prefix.eval()
    device = next(prefix.parameters()).device
    order = length_order(examples) if order is None else order
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[start:start + batch_size]
        ids = torch.nn.utils.rnn.pad_sequence([examples[i]["input_ids"] for i in idx], batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(examples[i]["input_ids"]) for i in idx],
                                               batch_first=True)
        types = None
        if "token_type_ids" in examples[idx[0]]:
            types = torch.nn.utils.rnn.pad_sequence([examples[i]["token_type_ids"] for i in idx], batch_first=True)
        hidden = prefix(ids.to(device), mask.to(device), None if types is None else types.to(device)).cpu()
        yield idx, [hidden[row, : len(examples[i]["input_ids"])].to(dtype) for row, i in enumerate(idx)]


def compute_prefix_outputs(prefix: torch.nn.Module, examples: list[dict], batch_size: int = 64,
                           dtype: torch.dtype = torch.float32, desc: str = "prefix") -> list[torch.Tensor]:
    """Layer-k hidden states of each example, ``[len_i, H]``, all in memory (small data and tests only)."""
    out: list[torch.Tensor | None] = [None] * len(examples)
    for idx, states in iter_prefix_outputs(prefix, examples, batch_size, dtype, desc):
        for i, h in zip(idx, states):
            out[i] = h.clone()
    return out


def write_prefix_entry(prefix: torch.nn.Module, dataset: ExampleDataset, path: str | os.PathLike, key: str | None,
                       batch_size: int = 64, dtype: torch.dtype = torch.float32, desc: str = "prefix") -> Path:
    """Compute the prefix outputs of ``dataset`` batch by batch, each written to ``path``'s store as it
    comes (at most one batch in memory); the file appears, whole, when the last one is written."""
    examples = dataset.examples
    order = length_order(examples)
    lengths = torch.tensor([len(e["input_ids"]) for e in examples], dtype=torch.int64)
    offsets = torch.empty(len(examples), dtype=torch.int64)
    offsets[torch.tensor(order, dtype=torch.int64)] = torch.cumsum(lengths[order], 0) - lengths[order]
    total = int(lengths.sum())
    writer, row = None, 0
    try:
        for idx, states in iter_prefix_outputs(prefix, examples, batch_size, dtype, desc, order):
            block = torch.cat(states)
            if writer is None:  # the hidden size is known from the first batch
                meta = {"key": key, "rows": len(examples), "sample_index": dataset.sample_indices(),
                        "format": PREFIX_FORMAT, "dtype": str(dtype)}
                writer = StoreWriter(path, meta, {"hidden": ((total, block.shape[-1]), dtype),
                                                  "offsets": ((len(examples),), torch.int64),
                                                  "lengths": ((len(examples),), torch.int64)})
            assert int(offsets[idx[0]]) == row
            writer.write("hidden", row, block)
            row += len(block)
        if writer is None:
            raise ValueError("no examples to compute prefix outputs for")
        writer.write("offsets", 0, offsets)
        writer.write("lengths", 0, lengths)
        return writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def entry_problem(stored: dict, key: str | None, dataset: ExampleDataset, dtype: torch.dtype) -> str | None:
    """Why a stored entry does not hold this data set's prefix outputs (None: it does)."""
    if key is not None and stored.get("key") != key:
        return f"key {stored.get('key')!r}, expected {key!r}"
    hidden, offsets, lengths = (stored.get(k) for k in ("hidden", "offsets", "lengths"))
    if not all(isinstance(t, torch.Tensor) for t in (hidden, offsets, lengths)) or hidden.dim() != 2:
        return "not a flat store of hidden states (an older format?)"
    rows = stored.get("rows")
    if rows != len(dataset) or len(offsets) != rows or len(lengths) != rows:
        return f"{len(offsets)} offsets and {len(lengths)} lengths for {rows} rows, expected {len(dataset)}"
    if stored.get("sample_index") != dataset.sample_indices():
        return "its sample_index values are not this data set's"
    if hidden.dtype != dtype:
        return f"hidden states stored as {hidden.dtype}, expected {dtype}"
    expected = torch.tensor([len(e["input_ids"]) for e in dataset.examples], dtype=torch.int64)
    if not torch.equal(lengths, expected):
        i = int((lengths != expected).nonzero()[0])
        return (f"sample_index {dataset.examples[i]['sample_index']}: {int(lengths[i])} hidden states for its "
                f"{int(expected[i])} tokens")
    if len(offsets) and (int(offsets.min()) < 0 or int((offsets + lengths).max()) > len(hidden)
                         or int(lengths.sum()) != len(hidden)):
        return f"offsets outside the {len(hidden)} stored rows"
    return None


def read_prefix_entry(cache_file: Path, key: str | None, dataset: ExampleDataset, dtype: torch.dtype,
                      unlink: bool = False) -> StoreRows | None:
    """Views (memory-mapped, tagged for per-batch reads, made when indexed) of the verified hidden
    states in ``cache_file``, in ``dataset``'s order, or None (one warning if the file is bad)."""
    store = open_store(cache_file, unlink=unlink)
    if store is None:
        return None
    problem = entry_problem(store.payload, key, dataset, dtype)
    if problem is not None:
        warn_bad_cache_entry(cache_file, problem)
        store.file.close()
        return None
    return store.row_views("hidden", store.payload["offsets"].tolist(), store.payload["lengths"].tolist())


def with_prefix_outputs(prefix: torch.nn.Module, dataset: ExampleDataset, cache_file: str | os.PathLike | None,
                        batch_size: int = 64, dtype: torch.dtype = torch.float32, desc: str = "prefix",
                        key: str | None = None) -> ExampleDataset:
    """``dataset`` with a ``hidden`` entry per example (a view of the store, read per batch), read
    from ``cache_file`` when it holds them, else computed into it (a temporary file when None)."""
    dtype = storage_dtype(dtype)
    hidden = None
    if cache_file is not None and Path(cache_file).is_file():
        hidden = read_prefix_entry(Path(cache_file), key, dataset, dtype)
    if hidden is None:
        temporary = cache_file is None
        path = temporary_store_path("prefix") if temporary else Path(cache_file)
        try:
            write_prefix_entry(prefix, dataset, path, key, batch_size, dtype, desc)
            hidden = read_prefix_entry(path, key, dataset, dtype, unlink=temporary)
        finally:
            if temporary:
                path.unlink(missing_ok=True)
        if hidden is None:
            raise RuntimeError(f"the prefix store just written to {path} cannot be read back")
    return dataset.with_column("hidden", hidden)  # StoreRows: each view made when its example is read
