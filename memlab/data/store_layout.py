"""Where each tensor's bytes lie in a ``torch.save`` file, read from its pickle without loading any
data: what lets :mod:`memlab.data.disk_store` write a store's tensors in place and read rows of them
with ``pread``. Only the dicts memlab stores (builtins and contiguous tensors) are understood.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class TensorRecord:
    """A top-level tensor of a saved dict: its bytes start at ``offset`` in the file."""

    offset: int
    nbytes: int
    shape: tuple[int, ...]
    dtype: torch.dtype


class _StorageRef:
    def __init__(self, key: str, dtype: torch.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef:
    def __init__(self, storage: _StorageRef, offset: int, size: Sequence[int], stride: Sequence[int]):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _LayoutUnpickler(pickle.Unpickler):
    """Reads a torch.save pickle without data: tensors become :class:`_TensorRef` (storage key,
    offset, shape, stride). Only what memlab stores (builtins, tensors) is understood."""

    def find_class(self, module: str, name: str):
        if module == "torch._utils" and name.startswith("_rebuild_tensor"):
            return lambda storage, offset, size, stride, *rest: _TensorRef(storage, offset, size, stride)
        if module == "torch" and name.endswith("Storage"):
            if name == "UntypedStorage":
                return _StorageType(torch.uint8)
            with warnings.catch_warnings():  # the typed storage classes are deprecated, their dtype is not
                warnings.simplefilter("ignore")
                return _StorageType(getattr(torch, name).dtype)
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in a memlab store")

    def persistent_load(self, pid):
        _, storage_type, key, _location, numel = pid
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else torch.uint8
        return _StorageRef(str(key), dtype, int(numel))


def tensor_records(path: str | os.PathLike) -> dict[str, TensorRecord]:
    """Where each contiguous top-level tensor of the dict saved at ``path`` has its bytes."""
    with open(path, "rb") as raw, zipfile.ZipFile(raw) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        payload = _LayoutUnpickler(io.BytesIO(zf.read(pkl))).load()
        if not isinstance(payload, dict):
            raise ValueError("not a dict")
        out = {}
        for name, ref in payload.items():
            if not isinstance(ref, _TensorRef):
                continue
            info = zf.getinfo(f"{prefix}data/{ref.storage.key}")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"record of {name!r} is compressed")
            raw.seek(info.header_offset)
            header = raw.read(30)
            if header[:4] != b"PK\x03\x04":
                raise ValueError(f"bad local header for {name!r}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            itemsize = torch.empty((), dtype=ref.storage.dtype).element_size()
            numel = 1
            for d in ref.size:
                numel *= d
            expected_stride, acc = [], 1
            for d in reversed(ref.size):
                expected_stride.insert(0, acc)
                acc *= d
            if numel > 1 and list(ref.stride) != expected_stride:
                raise ValueError(f"{name!r} is not contiguous")
            start = info.header_offset + 30 + name_len + extra_len + ref.offset * itemsize
            out[name] = TensorRecord(start, numel * itemsize, ref.size, ref.storage.dtype)
        return out
