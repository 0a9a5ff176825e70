"""On-disk cache of frozen-backbone features, one file per split.

A file holds ``features [N, D, 7, 7]`` (stored dtype, float16 by default), ``labels [N]``,
``sample_index [N]`` and the ``key`` fields it was made from. Its name carries a hash of those fields
(data set, split sizes, seed, backbone, weights, ...), so changing any of them makes a new file rather
than reusing a stale one. Files are written to a temporary name and renamed (atomic on POSIX), and
read memory-mapped, so a large cache costs page cache rather than resident memory.
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cached(path: Path) -> dict[str, Any]:
    """The payload of a cache file, tensors memory-mapped (read on first touch)."""
    return torch.load(path, map_location="cpu", mmap=True, weights_only=True)


def cached_features(path: Path, fields: dict[str, Any],
                    compute: Callable[[], tuple[Tensor, Tensor, Tensor]]) -> tuple[dict[str, Any], bool]:
    """Load ``path`` when present and made from ``fields``; else ``compute()`` -> (features, labels,
    sample_index), save, and return that. Second value: whether it was a cache hit."""
    if path.exists():
        payload = load_cached(path)
        if payload.get("key") == fields:
            return payload, True
    features, labels, sample_index = compute()
    payload = {"features": features.contiguous(), "labels": labels.to(torch.long),
               "sample_index": sample_index.to(torch.long), "key": fields}
    save_atomic(path, payload)
    return payload, False
