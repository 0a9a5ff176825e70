"""On-disk cache of frozen-backbone features, one file per split.

A file holds ``features [N, D, 7, 7]`` (stored dtype, float16 by default), ``labels [N]``,
``sample_index [N]``, its row count ``rows`` and the ``key`` fields it was made from. Its name carries
a hash of those fields (data set and a fingerprint of its files, split sizes, seed, backbone, weights,
...), so changing any of them makes a new file rather than reusing a stale one. On read the key and
the row counts are checked: a bad or unreadable file is recomputed with one warning naming it. Files
are written to a temporary name and renamed (atomic on POSIX), and read memory-mapped, so a large
cache costs page cache rather than resident memory.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from ..utils.io import FILE_MODE, load_torch_entry, warn_bad_cache_entry

FEATURE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def cache_key(fields: dict[str, Any]) -> str:
    """A short stable hash of the JSON of ``fields`` (sorted keys)."""
    blob = json.dumps(fields, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cache_file(cache_dir: str | os.PathLike, dataset: str, split: str, backbone: str, key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset).strip("-")[:40]
    return Path(cache_dir).expanduser() / f"{slug}_{split}_{backbone}_{key}.pt"


def save_atomic(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cached(path: Path) -> dict[str, Any]:
    """The payload of a cache file, tensors memory-mapped (read on first touch)."""
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)


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


def cached_features(path: Path, fields: dict[str, Any], compute: Callable[[], tuple[Tensor, Tensor, Tensor]],
                    rows: int | None = None) -> tuple[dict[str, Any], bool]:
    """Load ``path`` when present, made from ``fields`` and whole; else ``compute()`` -> (features,
    labels, sample_index), save, and return that. Second value: whether it was a cache hit."""
    if path.exists():
        payload = load_torch_entry(path, mmap=True)
        problem = None if payload is None else entry_problem(payload, fields, rows)
        if payload is not None and problem is None:
            return payload, True
        if problem is not None:
            warn_bad_cache_entry(path, problem)
    features, labels, sample_index = compute()
    payload = {"features": features.contiguous(), "labels": labels.to(torch.long),
               "sample_index": sample_index.to(torch.long), "key": fields, "rows": len(sample_index)}
    save_atomic(path, payload)
    return payload, False
