"""Read an offline W&B run back from its own log, ``<run dir>/run-<id>.wandb`` (tests).

wandb-core writes every record of a run (the run with its group and job type, config updates, history
rows, summary updates, files, artifacts) into that file; it is what ``wandb sync`` uploads. The file is a
LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks,
each ``crc32 (4) | length (2) | type (1) | data``, a record being one FULL chunk or FIRST, MIDDLE...,
LAST; the data are ``wandb.proto.wandb_internal_pb2.Record`` messages, parsed here with wandb's classes.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32768
HEADER = struct.Struct("<4sHB")
CHUNK = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path):
    """Every Record of a ``.wandb`` file, in the order written (checksums checked)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert HEADER.unpack_from(data) == (b":W&B", 0xBEE1, 0), f"{path} is not a W&B run log"
    pos, pending = HEADER.size, b""
    while pos + CHUNK.size <= len(data):
        if BLOCK - pos % BLOCK < CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        checksum, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0:  # zeros: the end of what was written
            break
        body = data[pos + CHUNK.size: pos + CHUNK.size + length]
        assert zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF == checksum, f"bad chunk at byte {pos} of {path}"
        pos += CHUNK.size + length
        pending = body if kind in (FULL, FIRST) else pending + body
        if kind in (FULL, LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def _items(items) -> dict:
    """Items as a dict; a logged object (an image, a table) comes as one item per field under
    ``nested_key = [key, field]`` and is put back together as a dict."""
    out: dict = {}
    for item in items:
        value = json.loads(item.value_json)
        if item.key:
            out[item.key] = value
            continue
        *path, last = item.nested_key
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@dataclass
class OfflineRun:
    """What one offline run holds, as its log says."""

    dir: Path
    group: str = ""
    job_type: str = ""
    name: str = ""
    config: dict = field(default_factory=dict)    # top-level key -> value (nested dicts as logged)
    history: list = field(default_factory=list)   # one dict per logged row
    summary: dict = field(default_factory=dict)
    files: list = field(default_factory=list)     # paths under <run dir>/files
    artifacts: list = field(default_factory=list)  # wandb_internal_pb2.ArtifactRecord

    def logged(self, key: str) -> list:
        """Every value logged under ``key`` (history rows)."""
        return [row[key] for row in self.history if key in row]


def read_run(run_dir: str | Path) -> OfflineRun:
    run_dir = Path(run_dir)
    (log_file,) = run_dir.glob("run-*.wandb")
    run = OfflineRun(run_dir)
    for record in records(log_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            # a run record can repeat (an update at finish) without every field: keep what one has set
            run.group = record.run.run_group or run.group
            run.job_type = record.run.job_type or run.job_type
            run.name = record.run.display_name or run.name
            run.config.update(_items(record.run.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
        elif kind == "files":
            run.files += [f.path for f in record.files.files]
        elif kind == "artifact":
            run.artifacts.append(record.artifact)
    return run


def offline_runs(folder: str | Path, settle_seconds: float = 20.0) -> list[OfflineRun]:
    """Every offline run under ``folder`` (any depth). wandb-core may still be writing a finished run's log
    on a loaded machine: read again (up to ``settle_seconds``) until every run names its group."""
    import time

    deadline = time.monotonic() + settle_seconds
    while True:
        runs = [read_run(p) for p in sorted(Path(folder).rglob("offline-run-*")) if p.is_dir()]
        if all(r.group for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)
