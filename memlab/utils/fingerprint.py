"""Fingerprints of what a cache entry's content is made from: the weights of a module (its state
dict), the files of a pretrained-model folder, a folder of data files. Cache keys hold these instead
of names, so a changed seed, checkpoint or file makes a new entry rather than reusing a stale one.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def short_hash(value: Any, length: int = 16) -> str:
    """A stable hash of the JSON of ``value`` (sorted keys; other objects by ``str``)."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:length]


def module_fingerprint(module: nn.Module) -> str:
    """Hash of a module's state dict (names, dtypes, shapes and values): its weights, whatever their origin."""
    h = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _file_listing(folder: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(path, size, mtime, ctime) of every file: what the in-process memo of the hash is keyed by."""
    stats = ((p, p.stat()) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return tuple(sorted((str(p.relative_to(folder)), st.st_size, st.st_mtime_ns, st.st_ctime_ns) for p, st in stats))


def folder_fingerprint(folder: str | os.PathLike, content: bool = True) -> str:
    """Hash of every file under ``folder``: its relative path and bytes (``content=False``: path, size
    and modification time, for large data folders). Computed once per process while the files stay put."""
    folder = Path(folder).expanduser().resolve()
    return _folder_fingerprint(folder, _file_listing(folder), content)


@functools.lru_cache(maxsize=32)
def _folder_fingerprint(folder: Path, listing: tuple, content: bool) -> str:
    h = hashlib.sha1()
    for rel, size, mtime, _ in listing:
        h.update(f"{rel}|{size}".encode())
        if not content:
            h.update(str(mtime).encode())
            continue
        with open(folder / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def pretrained_fingerprint(name: str | None) -> str | None:
    """What identifies the weights behind a ``model.pretrained`` value: the files of a local or
    packaged model folder; a hub id or ``tiny-random`` stands for itself (its seed is keyed apart)."""
    if not name:
        return name
    if name.startswith("packaged:") or os.path.isdir(name):
        from .pretrained import resolve_pretrained

        path, _ = resolve_pretrained(name)
        return f"files:{folder_fingerprint(path)}"
    return name


def file_sha1(path: str | os.PathLike) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
