"""On-disk cache of frozen-backbone features, one file per split.

A file holds ``features [N, D, 7, 7]`` (stored dtype, float16 by default), ``labels [N]``,
``sample_index [N]``, its row count ``rows`` and the ``key`` fields it was made from. Its name carries
a hash of those fields (data set and a fingerprint of its files, split sizes, seed, backbone, weights,
...), so changing any of them makes a new file rather than reusing a stale one. On read the key and
the row counts are checked: a bad or unreadable file is recomputed with one warning naming it.

Never all in memory (:mod:`memlab.data.disk_store`): the features are written chunk by chunk as the
backbone computes them, into a partial file renamed whole at the end (atomic on POSIX), read
memory-mapped, and each batch reads its rows with ``pread``. Without a cache folder the file is a
temporary one, deleted once open. The files are ordinary ``torch.save`` files.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from ..utils.io import warn_bad_cache_entry
from .disk_store import STORE_DTYPES, Store, StoreWriter, open_store, temporary_store_path

FEATURE_DTYPES = STORE_DTYPES


def cache_key(fields: dict[str, Any]) -> str:
    """A short stable hash of the JSON of ``fields`` (sorted keys)."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cache_file(cache_dir: str | os.PathLike, dataset: str, split: str, backbone: str, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-")[:40]
    return Path(cache_dir).expanduser() / f"{slug}_{split}_{backbone}_{key}.pt"


def entry_problem(payload: dict[str, Any], fields: dict[str, Any], rows: int | None = None) -> str | None:
    """Why a stored payload is not the features made from ``fields`` (None: it is). ``rows``: the
    number of examples the split must have, when known."""
    if payload.get("key") != fields:
        return "made from other data, backbone or settings"
    tensors = [payload.get(k) for k in ("features", "labels", "sample_index")]
    if not all(isinstance(t, Tensor) for t in tensors):
        return "features, labels or sample_index missing"
    lengths = {len(t) for t in tensors}
    if lengths != {payload.get("rows")} or (rows is not None and payload.get("rows") != rows):
        return f"{sorted(lengths)} rows stored, {payload.get('rows')} recorded, {rows} expected"
    if len(torch.unique(payload["sample_index"])) != payload["rows"]:
        return "repeated sample_index values"
    return None


def write_features(path: Path, fields: dict[str, Any], labels: Tensor, sample_index: Tensor,
                   dtype: torch.dtype, chunks: Iterator[Tensor]) -> Path:
    """Stream ``chunks`` (consecutive row blocks of the features) into a store at ``path``, stored
    in ``dtype``; the file is laid out when the first chunk gives the feature shape."""
    n = len(sample_index)
    writer, row = None, 0
    try:
        for chunk in chunks:
            if writer is None:
                layout = {"features": ((n, *chunk.shape[1:]), dtype), "labels": ((n,), torch.long),
                          "sample_index": ((n,), torch.long)}
                writer = StoreWriter(path, {"key": fields, "rows": n}, layout)
            writer.write("features", row, chunk.to(dtype))
            row += len(chunk)
        if writer is None:
            raise ValueError("no features to store")
        writer.write("labels", 0, labels.to(torch.long))
        writer.write("sample_index", 0, sample_index.to(torch.long))
        return writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def cached_features(path: Path | None, fields: dict[str, Any],
                    produce: Callable[[], tuple[Tensor, Tensor, Iterator[Tensor]]],
                    rows: int | None = None) -> tuple[Store, bool]:
    """The store at ``path`` when present, made from ``fields`` and whole; else what ``produce()``
    gives, (labels, sample_index, an iterator of feature row blocks), streamed into it (``path`` None:
    a temporary file), features in ``fields["dtype"]``. Second value: whether it was a cache hit."""
    if path is not None and path.exists():
        store = open_store(path)
        problem = None if store is None else entry_problem(store.payload, fields, rows)
        if store is not None and problem is None:
            return store, True
        if problem is not None:
            store.file.close()
            warn_bad_cache_entry(path, problem)
    temporary = path is None
    target = temporary_store_path("features") if temporary else path
    try:
        labels, sample_index, chunks = produce()
        write_features(target, fields, labels, sample_index, FEATURE_DTYPES[fields["dtype"]], chunks)
        store = open_store(target, unlink=temporary)
    finally:
        if temporary:
            target.unlink(missing_ok=True)
    if store is None:
        raise RuntimeError(f"the feature store just written to {target} cannot be read back")
    return store, False
