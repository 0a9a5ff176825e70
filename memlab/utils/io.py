"""Atomic writes: a file appears whole or not at all (a killed job leaves no partial output)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temp file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temp name keeps the extension: some writers (matplotlib, numpy) infer the format from it
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_csv(df, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


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
