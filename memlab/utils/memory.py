"""Give freed heap memory back to the operating system between phases of a long job.

glibc keeps freed blocks of up to 32 MB in its heap for reuse; scoring allocates buffers whose size
grows with the (length-sorted) batches, so freed smaller blocks pile up unused: on SST-2 the resident
size of a scoring job grew by ~0.9 GB this way. ``malloc_trim`` returns them; elsewhere a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``); True when it could."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def resident_memory() -> dict[str, int]:
    """This process's resident memory in bytes from ``/proc/self/status``: ``rss`` (VmRSS), ``anon``
    (RssAnon: heap, what the process itself holds) and ``file`` (RssFile: mapped file pages, e.g. a
    memory-mapped store's pages once touched); ``{}`` where there is no ``/proc``.

    RSS alone cannot tell a leak from pages of the on-disk stores that were read through their
    mapping; the split can, which is what the memory tests and ``benchmarks/bench_rss_phases.py`` check."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                parts = line.split()  # "VmRSS:", "123456", "kB"
                if parts and parts[0] in fields:
                    out[fields[parts[0]]] = int(parts[1]) * 1024
    except OSError:
        return {}
    return out
