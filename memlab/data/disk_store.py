"""Large cached tensors (frozen-prefix hidden states, frozen-backbone features) on disk, never all in
memory: written piece by piece, read memory-mapped, and read per batch with ``pread``.

A store is an ordinary ``torch.save`` file (``torch.load(path, mmap=True)`` reads it, so do older
tools), made in three steps so that building it streams:

1. its layout is saved with no data (``torch.serialization.skip_data`` over fake tensors of the
   final shapes): the small pickle and a sparse file with room for every tensor;
2. each tensor's bytes are written into that room piece by piece (``os.pwrite`` at the offset of
   the tensor's record in the zip, found by :mod:`.store_layout`), as the producer computes them;
3. once every byte is written it is fsynced and renamed onto its final name (atomic on POSIX).

Until step 3 the file is ``.<name>.<random>.partial`` next to its final name, locked (``flock``) by
the writer: a killed build leaves a partial file that is never read, and a later build of the same
entry deletes it (unlocked and untouched for a minute: a dead one). A store that is there is whole.

Reading (:func:`open_store`): ``torch.load(mmap=True)`` gives tensors backed by the file's pages. The
rows handed to examples are views of them, *tagged* with where their bytes lie in the file (made
when an example is indexed, :class:`StoreRows`: no per-row object lives between batches); a
batch reads them with :func:`materialize`, i.e. ``os.preadv`` into a fresh tensor, which costs page
cache (the kernel's, shared and reclaimable) but not the process's resident memory, so the RSS of a
run stays flat however many rows the store holds. Untagged tensors pass through unchanged.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..utils.io import FILE_MODE, load_torch_entry
from .store_layout import TensorRecord, tensor_records

STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_TAG = "_memlab_disk_rows"  # attribute of a row view: (DiskFile, byte offset in the file)


def storage_dtype(name: str | torch.dtype) -> torch.dtype:
    """``float32`` / ``float16`` / ``bfloat16`` (or ``torch.float16``...) as a torch dtype; ValueError otherwise."""
    if isinstance(name, torch.dtype):
        if name in STORE_DTYPES.values():
            return name
        name = str(name)
    key = str(name).removeprefix("torch.")
    if key not in STORE_DTYPES:
        raise ValueError(f"unknown storage dtype {name!r}; use one of {', '.join(STORE_DTYPES)}")
    return STORE_DTYPES[key]


# -- writing -------------------------------------------------------------------------------------------
def _partial_files(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.*.partial"))


def remove_dead_partials(path: str | os.PathLike, min_age: float = 60.0) -> int:
    """Delete the partial files of ``path`` that no live writer holds (a killed build's) and that were
    not written to in the last ``min_age`` seconds (a writer locks its file just after creating it);
    returns how many."""
    removed = 0
    for partial in _partial_files(Path(path)):
        try:
            if time.time() - partial.stat().st_mtime < min_age:
                continue
            fd = os.open(partial, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it (or the file system cannot tell: keep it)
            os.close(fd)
            continue
        try:
            partial.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


class StoreWriter:
    """Writes a dict of big tensors to ``path`` piece by piece; ``commit()`` makes it appear whole.

    ``meta``: small picklable values (str, int, float, lists, dicts) saved as they are. ``tensors``:
    name -> (shape, dtype) of each tensor, whose bytes :meth:`write` fills in, rows at a time. Used
    as a context manager, an exception discards the partial file.
    """

    def __init__(self, path: str | os.PathLike, meta: Mapping[str, Any],
                 tensors: Mapping[str, tuple[Sequence[int], torch.dtype]]):
        from torch._subclasses.fake_tensor import FakeTensorMode

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_partials(self.path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        self.fd, self.tmp, self.done = fd, Path(tmp), False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # "alive": see remove_dead_partials
            except OSError:
                pass  # a file system without locks: the partial file is then never cleaned up, only ignored
            with FakeTensorMode():
                fakes = {name: torch.empty(tuple(shape), dtype=dtype) for name, (shape, dtype) in tensors.items()}
            with torch.serialization.skip_data(materialize_fake_tensors=True):
                torch.save({**meta, **fakes}, self.tmp)  # truncates the file this fd holds
            self.records = tensor_records(self.tmp)
            self.filled = {name: 0 for name in tensors}
        except BaseException:
            self.abort()
            raise

    def row_bytes(self, name: str) -> int:
        rec = self.records[name]
        return rec.nbytes // rec.shape[0] if rec.shape and rec.shape[0] else rec.nbytes

    def write(self, name: str, row: int, values: Tensor) -> None:
        """Rows ``row, row+1, ...`` of tensor ``name`` are ``values`` (same dtype and row shape)."""
        rec = self.records[name]
        if values.dtype != rec.dtype or tuple(values.shape[1:]) != rec.shape[1:]:
            raise ValueError(f"{name}: rows of {tuple(values.shape[1:])} {values.dtype}, "
                             f"expected {rec.shape[1:]} {rec.dtype}")
        if row < 0 or row + len(values) > (rec.shape[0] if rec.shape else 1):
            raise ValueError(f"{name}: rows {row}..{row + len(values)} out of {rec.shape[0]}")
        data = values.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        view = memoryview(data)
        offset = rec.offset + row * self.row_bytes(name)
        while len(view):
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n
        self.filled[name] += data.nbytes

    def commit(self) -> Path:
        """Check every byte was written, fsync and move onto ``path`` (replacing what was there)."""
        short = {n: (done, self.records[n].nbytes) for n, done in self.filled.items() if done != self.records[n].nbytes}
        if short:
            self.abort()
            raise RuntimeError(f"incomplete store {self.path}: bytes written / expected {short}")
        os.fsync(self.fd)
        os.chmod(self.tmp, FILE_MODE)
        os.replace(self.tmp, self.path)
        try:  # the rename itself survives a crash
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
        self.done = True
        os.close(self.fd)
        return self.path

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        self.tmp.unlink(missing_ok=True)
        os.close(self.fd)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.done:
            self.commit()


# -- reading -------------------------------------------------------------------------------------------
class DiskFile:
    """An open store file for ``pread``: survives fork (positionless reads); reopened by path after
    pickling (spawned workers), or left closed when the path is gone (then rows read through the mmap)."""

    def __init__(self, path: str | os.PathLike, fd: int | None = None):
        self.path = str(path)
        self.fd = os.open(self.path, os.O_RDONLY) if fd is None else fd

    def read_into(self, out: Tensor, offset: int) -> Tensor:
        view = memoryview(out.view(torch.uint8).numpy()).cast("B")
        while len(view):
            n = os.preadv(self.fd, [view], offset)
            if n <= 0:
                raise OSError(f"{self.path}: short read at byte {offset}")
            view, offset = view[n:], offset + n
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            self.fd = None


def tag_rows(view: Tensor, file: DiskFile, offset: int) -> Tensor:
    """Mark ``view`` (rows of a store's mmapped tensor) as readable from ``file`` at byte ``offset``."""
    setattr(view, _TAG, (file, offset))
    return view


def is_tagged(t: Tensor) -> bool:
    return getattr(t, _TAG, None) is not None


def materialize(t: Tensor) -> Tensor:
    """A fresh in-memory copy of a tagged row view, read with ``pread`` (no page of the mapping is
    touched); any other tensor as it is."""
    tag = getattr(t, _TAG, None)
    if tag is None or tag[0].fd is None:
        return t
    file, offset = tag
    return file.read_into(torch.empty(t.shape, dtype=t.dtype), offset)


@dataclass
class Store:
    """An opened store: ``payload`` as ``torch.load(mmap=True)`` gives it, ``records`` the byte
    offsets of its tensors, ``file`` open for reads."""

    path: Path
    payload: dict
    records: dict[str, TensorRecord]
    file: DiskFile

    def row_views(self, name: str, starts: Sequence[int], lengths: Sequence[int] | None = None) -> "StoreRows":
        """Tagged views of tensor ``name``: rows ``starts[i] : starts[i] + lengths[i]`` (one row
        each, its leading dimension dropped, when ``lengths`` is None), made when indexed."""
        tensor, rec = self.payload[name], self.records[name]
        return StoreRows(tensor, self.file, rec.offset, rec.nbytes // max(1, rec.shape[0]),
                         torch.as_tensor(starts, dtype=torch.int64),
                         None if lengths is None else torch.as_tensor(lengths, dtype=torch.int64))


class StoreRows(SequenceABC):
    """A sequence of tagged row views of one stored tensor, each made when it is indexed.

    Why not a list of views: a tensor view is a Python object with its own TensorImpl and tag, so a
    list of them grows the heap by 0.7 KB per example (47 MiB at 68k SST-2 phrases); two int64s
    per item (where its rows start, how many) take 16 bytes. Items of one index are equal, not the
    same object."""

    def __init__(self, tensor: Tensor, file: DiskFile, base: int, row_bytes: int, starts: Tensor,
                 lengths: Tensor | None = None):
        self.tensor, self.file, self.base, self.row_bytes = tensor, file, int(base), int(row_bytes)
        self.starts, self.lengths = starts, lengths

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        s = int(self.starts[i])
        view = self.tensor[s] if self.lengths is None else self.tensor[s:s + int(self.lengths[i])]
        return tag_rows(view, self.file, self.base + s * self.row_bytes)

    def take(self, positions: Tensor) -> "StoreRows":
        """The items at ``positions`` (an int64 tensor), as another lazy sequence of the same store."""
        return StoreRows(self.tensor, self.file, self.base, self.row_bytes, self.starts[positions],
                         None if self.lengths is None else self.lengths[positions])


def open_store(path: str | os.PathLike, unlink: bool = False) -> Store | None:
    """The store at ``path`` memory-mapped, with an fd for reads; None (after one warning naming the
    file, see :func:`memlab.utils.io.load_torch_entry`) when it cannot be read. ``unlink``: remove
    the name once open (a temporary store lives as long as its mapping and fd)."""
    from ..utils.io import warn_bad_cache_entry

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        payload = load_torch_entry(path, mmap=True)
        now = os.stat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):  # replaced meanwhile: mapped another file
            os.close(fd)
            return open_store(path, unlink)
        if payload is None:
            os.close(fd)
            return None
        try:
            records = tensor_records(path)
        except Exception as err:
            warn_bad_cache_entry(path, f"unreadable layout: {type(err).__name__}")
            os.close(fd)
            return None
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise
    if unlink:
        path.unlink(missing_ok=True)
    return Store(path, payload, records, DiskFile(path, fd))


def temporary_store_path(tag: str) -> Path:
    """A fresh name in the temporary folder (``TMPDIR``) for a store no cache folder keeps."""
    fd, name = tempfile.mkstemp(prefix=f"memlab-{tag}-", suffix=".pt")
    os.close(fd)
    return Path(name)
