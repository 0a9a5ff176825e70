"""memlab's one family of atomic writes: a file appears whole or not at all (a killed job leaves no
partial output, a reader never sees a half-written file), with the permissions the user's umask
gives any new file; and reading a cache entry that may be bad.

    atomic_write(path, write)           write(tmp_path), then os.replace onto path: every writer below
    atomic_write_text / _csv / _jsonl   text (UTF-8), a DataFrame without its index, one JSON per line
    atomic_torch_save, update_json      a torch payload; merge values into a JSON object
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger("memlab")


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; a finished output gets what open() would have given it
FILE_MODE = 0o666 & ~_current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temp file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temp name keeps the extension: some writers (matplotlib, numpy) infer the format from it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_csv(df, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def atomic_write_jsonl(records, path: str | os.PathLike) -> Path:
    """One JSON object per line."""
    return atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def to_jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def update_json(path: str | os.PathLike, values: dict) -> dict:
    """Merge ``values`` into the JSON object at ``path`` (created if missing), atomically."""
    path = Path(path)
    current = json.loads(path.read_text()) if path.is_file() else {}
    current.update(to_jsonable(values))
    atomic_write_text(path, json.dumps(current, indent=2, sort_keys=True))
    return current


def warn_bad_cache_entry(path: str | os.PathLike, reason: str) -> None:
    """The one warning a bad cache entry gets before it is recomputed (never used)."""
    log.warning("cache entry %s is not usable (%s); recomputing it", path, reason)


def load_torch_entry(path: str | os.PathLike, mmap: bool = False) -> dict | None:
    """The dict saved at ``path``; None (after one warning naming the file) when it cannot be read."""
    try:
        payload = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as err:  # truncated, overwritten, not a torch file: recompute, do not crash later
        warn_bad_cache_entry(path, f"unreadable: {type(err).__name__}")
        return None
    if not isinstance(payload, dict):
        warn_bad_cache_entry(path, "not a memlab cache entry")
        return None
    return payload
