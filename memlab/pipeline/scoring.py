"""Scoring every training instance (paper Eq. 2) as a resumable job, outside Lightning.

Streams per-example gradients through a fitted inverse-Hessian solver and writes results in chunks
(``<out>/chunks/chunk-00003.pt``, atomic): a rerun with the same model, data, solver and batch layout
skips finished chunks and ends with identical scores. Every chunk carries the job's fingerprint, its
number and its sample indices, and is checked before it is reused or merged: a chunk that is
unreadable or holds other rows is recomputed (one warning naming it). ``chunks/manifest.json`` marks
the folder as memlab's; memlab deletes only its own chunk files there, and refuses a ``chunks/``
folder it did not make. Under data parallelism each rank scores the chunks with
``chunk_id % world_size == rank`` and rank 0 merges. The merged table is what scores.csv holds.

    frame, info, solver = score_training_set(module, params, objective, score_batches, fit_batches,
                                      solver_cfg={"name": "ekfac", "damping_rel": 0.1}, out_dir=...)
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import ConfigError, MemlabError
from ..influence.functional import Params, TrainingObjective
from ..influence.self_influence import memorization_scores
from ..influence.solver import fit_solver
from ..studies.ranking import memorization_rank, nonfinite_count
from ..utils.io import atomic_torch_save, atomic_write_text, load_torch_entry, warn_bad_cache_entry
from ..utils.memory import release_free_memory

log = logging.getLogger("memlab")
SOLVER_KEYS = ("name", "damping", "damping_rel", "own_term")
MANIFEST = "manifest.json"
MARKER = "memlab scoring chunks"
CHUNK_FILE = re.compile(r"chunk-\d{5}\.pt")
TEMP_FILE = re.compile(r"\..+\.tmp(\.[A-Za-z0-9]+)?")  # what atomic_write leaves while it writes
CHUNK_FIELDS = ("key", "chunk", "rows", "inputs")  # bookkeeping stored with a chunk's columns


def solver_options(solver_cfg: Mapping) -> dict:
    return dict(solver_cfg.get("options") or {})


def state_fingerprint(module: nn.Module, params: Params, sample_indices: list[int], solver_cfg: Mapping,
                      batch_size: int | None = None, batches_per_chunk: int | None = None) -> str:
    """Identifies a scoring job: weights, data order, solver settings and how rows fall into chunks."""
    h = hashlib.sha1(json.dumps({k: solver_cfg.get(k) for k in SOLVER_KEYS}, sort_keys=True, default=str).encode())
    h.update(json.dumps(solver_options(solver_cfg), sort_keys=True, default=str).encode())
    h.update(json.dumps({"batch_size": batch_size, "batches_per_chunk": batches_per_chunk}, sort_keys=True).encode())
    for name, p in sorted(params.items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    h.update(torch.tensor(sample_indices).numpy().tobytes())
    return h.hexdigest()[:16]


def read_manifest(chunk_dir: Path) -> dict | None:
    """memlab's manifest of a chunk folder, or None when there is none (or it is not memlab's)."""
    try:
        manifest = json.loads((chunk_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    # older memlab manifests hold only the fingerprint: they are memlab's too
    return manifest if isinstance(manifest, dict) and "fingerprint" in manifest else None


def foreign_chunk_dir_error(chunk_dir: Path) -> ConfigError | None:
    """The error for a ``chunks/`` folder memlab did not make and must not touch (None: it may use it)."""
    if not chunk_dir.is_dir() or read_manifest(chunk_dir) is not None:
        return None
    entries = [p.name for p in chunk_dir.iterdir() if not TEMP_FILE.fullmatch(p.name)]
    if not entries:
        return None
    return ConfigError(f"{chunk_dir} holds files memlab did not write (e.g. {sorted(entries)[0]}) and no memlab "
                       f"{MANIFEST}; memlab leaves it alone: point callbacks.memorization.output_dir at another folder")


def _prepare_chunk_dir(out_dir: Path, fingerprint: str, layout: dict | None = None) -> Path:
    """Rank 0 only: the chunk folder of this job, emptied of another job's chunks, with its manifest."""
    chunk_dir = out_dir / "chunks"  # score_training_set has refused a foreign one on every rank
    manifest = read_manifest(chunk_dir) if chunk_dir.is_dir() else None
    if manifest is not None and manifest.get("fingerprint") != fingerprint:
        # other model, solver or chunk layout: remove memlab's old chunks, and nothing else
        for p in chunk_dir.iterdir():
            if CHUNK_FILE.fullmatch(p.name) or (TEMP_FILE.fullmatch(p.name) and p.name.startswith(".chunk-")):
                p.unlink()
    chunk_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(chunk_dir / MANIFEST, json.dumps({"created_by": MARKER, "fingerprint": fingerprint,
                                                        **(layout or {})}))
    return chunk_dir


def batches_digest(batches: list[Mapping[str, Tensor]]) -> str:
    """Hash of what a chunk was computed from (every tensor of its batches: tokens, cached hidden
    states or features, labels), so that a chunk is reused only for the very same inputs."""
    h = hashlib.sha1()
    for batch in batches:
        for key in sorted(batch):
            value = batch[key]
            if isinstance(value, Tensor):
                t = value.detach().cpu().contiguous()
                h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def chunk_problem(payload: dict, fingerprint: str, chunk: int, expected: Tensor, inputs: str | None = None) -> str | None:
    """Why a stored chunk is not chunk ``chunk`` of this job (None: it is)."""
    if payload.get("key") != fingerprint or payload.get("chunk") != chunk:
        return f"made for chunk {payload.get('chunk')} of job {payload.get('key')}, not chunk {chunk} of {fingerprint}"
    if inputs is not None and payload.get("inputs") != inputs:
        return "computed from other inputs"
    columns = [v for k, v in payload.items() if k not in CHUNK_FIELDS]
    if payload.get("rows") != len(expected) or any(not isinstance(v, Tensor) or len(v) != len(expected)
                                                   for v in columns):
        return f"{payload.get('rows')} rows, expected {len(expected)}"
    if not torch.equal(payload["sample_index"].long(), expected.long()):
        return "its sample_index values are not this chunk's"
    return None


def read_chunk(file: Path, fingerprint: str, chunk: int, expected: Tensor, inputs: str | None = None) -> dict | None:
    """The verified columns of a stored chunk; None (after one warning naming it) when it is bad."""
    payload = load_torch_entry(file)
    if payload is None:
        return None
    problem = chunk_problem(payload, fingerprint, chunk, expected, inputs)
    if problem is not None:
        warn_bad_cache_entry(file, problem)
        return None
    return {k: v for k, v in payload.items() if k not in CHUNK_FIELDS}


def fit_scoring_solver(module: nn.Module, params: Params, objective: TrainingObjective, fit_batches,
                       solver_cfg: Mapping, all_reduce: Callable[[Tensor], Tensor] | None = None):
    """(solver, spectrum) with λ from ``solver.damping`` or ``solver.damping_rel`` (fit_solver decides which)."""
    return fit_solver(solver_cfg["name"], module, params, fit_batches, objective, damping=solver_cfg.get("damping"),
                      damping_rel=solver_cfg.get("damping_rel"), all_reduce=all_reduce, **solver_options(solver_cfg))


def score_training_set(module: nn.Module, params: Params, objective: TrainingObjective,
                       score_batches: Iterable[Mapping[str, Tensor]], fit_batches: Iterable[Mapping[str, Tensor]],
                       solver_cfg: Mapping, out_dir: str | Path, sample_indices: list[int],
                       batches_per_chunk: int = 32, rank: int = 0, world_size: int = 1,
                       all_reduce: Callable[[Tensor], Tensor] | None = None, barrier: Callable[[], None] = lambda: None,
                       progress: bool = True) -> tuple[pd.DataFrame | None, dict, object]:
    """(scores, info, fitted solver) for every example in ``score_batches`` (rank 0 gets the merged frame)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    layout = {"batch_size": getattr(score_batches, "batch_size", None), "batches_per_chunk": batches_per_chunk}
    fingerprint = state_fingerprint(module, params, sample_indices, solver_cfg, **layout)
    error = foreign_chunk_dir_error(out_dir / "chunks")
    if error is not None:  # on every rank: none may wait at the barrier for a rank that stopped
        raise error
    if rank == 0:
        _prepare_chunk_dir(out_dir, fingerprint, layout)
    barrier()
    chunk_dir = out_dir / "chunks"
    solver, spectrum = fit_scoring_solver(module, params, objective, fit_batches, solver_cfg, all_reduce)
    fit_seconds = time.perf_counter() - started
    # the solver's H lacks each instance's own term (population estimate): add it, keep loo_score
    own_term_n = len(sample_indices) if solver_cfg.get("own_term") else None
    release_free_memory()  # the fit's freed buffers: ~0.8 GB of resident heap on SST-2

    def chunks():  # lazily: (chunk id, its batches); the loader is never held in memory whole
        group, c = [], 0
        for batch in score_batches:
            group.append(batch)
            if len(group) == batches_per_chunk:
                yield c, group
                group, c = [], c + 1
        if group:
            yield c, group

    done_before, expected, inputs = 0, [], []
    bar = tqdm(total=len(sample_indices), desc=f"memorization scores ({solver.name})",
               disable=not progress or rank != 0, unit="ex", dynamic_ncols=True)
    for c, chunk_batches in chunks():
        expected.append(torch.cat([torch.as_tensor(b["sample_index"]) for b in chunk_batches]))
        mine = c % world_size == rank
        inputs.append(batches_digest(chunk_batches) if mine or rank == 0 else None)  # rank 0 checks all at the merge
        file = chunk_dir / f"chunk-{c:05d}.pt"
        if not mine or (file.is_file() and read_chunk(file, fingerprint, c, expected[c], inputs[c]) is not None):
            done_before += mine
            bar.update(len(expected[c]))
            continue
        results = list(memorization_scores(module, params, chunk_batches, solver, objective, own_term_n=own_term_n))
        bar.update(len(expected[c]))
        merged = {k: torch.cat([r[k] for r in results]) for k in results[0]}
        atomic_torch_save({**merged, "key": fingerprint, "chunk": c, "rows": len(expected[c]), "inputs": inputs[c]},
                          file)
        release_free_memory()  # batches grow longer (length order): freed shorter buffers are not reused
    bar.close()
    barrier()
    info = {"solver": solver.describe(), "spectrum": _jsonable_spectrum(spectrum), "fit_seconds": fit_seconds,
            "resumed_chunks": int(done_before), "chunks": len(expected)}
    if rank != 0:
        return None, info, solver
    frame = merge_chunks(chunk_dir, fingerprint, expected, sample_indices, inputs)
    info["seconds"] = time.perf_counter() - started
    return frame, info, solver


def merge_chunks(chunk_dir: Path, fingerprint: str, expected: list[Tensor], sample_indices: list[int],
                 inputs: list[str | None]) -> pd.DataFrame:
    """One table of every chunk, each checked to hold its own rows (a rank's chunk cannot be redone here)."""
    parts = []
    for c, rows in enumerate(expected):
        part = read_chunk(chunk_dir / f"chunk-{c:05d}.pt", fingerprint, c, rows, inputs[c])
        if part is None:
            raise MemlabError(f"{chunk_dir / f'chunk-{c:05d}.pt'} changed while scoring; run again to recompute it")
        parts.append(part)
    frame = pd.DataFrame({k: torch.cat([p[k] for p in parts]).double().numpy() if k not in ("sample_index", "label", "prediction")
                          else torch.cat([p[k] for p in parts]).long().numpy() for k in parts[0]})
    if frame["sample_index"].tolist() != [int(i) for i in sample_indices]:  # every instance once, in order
        raise MemlabError(f"the chunks under {chunk_dir} do not cover the {len(sample_indices)} instances scored; "
                          "the score batches and sample_indices disagree")
    return frame


def _jsonable_spectrum(spectrum: dict | None) -> dict | None:
    if spectrum is None:
        return None
    return {k: v for k, v in spectrum.items() if k != "ritz" or v is None or len(v) <= 50}


def finalize_scores(frame: pd.DataFrame, texts: Mapping[int, str],
                    class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """scores.csv's table: sample_index,label[,class_name],text,prob,prediction,mem_score,rank (+ loss,
    grad_norm_sq, and loo_score when the solver's H needed the own term: the score without it, see
    ``with_own_term``); ``class_name`` is ``class_names[label]`` when they are given; rank 1 is the most
    memorized by ``loo_score`` where there is one, else by ``mem_score``
    (:func:`memlab.studies.ranking.rank_by_memorization`)."""
    frame = frame.copy()
    frame["text"] = frame["sample_index"].map(lambda i: texts.get(int(i), ""))
    frame["rank"] = memorization_rank(frame)  # ties: the smaller sample_index first
    if nonfinite_count(frame):
        log.warning("%d of %d memorization scores are not finite; they are ranked last (diagnostics.json: "
                    "nonfinite_scores)", nonfinite_count(frame), len(frame))
    cols = ["sample_index", "label", "text", "prob", "prediction", "mem_score", "rank", "loss", "grad_norm_sq"]
    if class_names:
        names = list(class_names)
        frame["class_name"] = [names[y] if 0 <= y < len(names) else str(y) for y in frame["label"].astype(int)]
        cols.insert(2, "class_name")
    cols += [c for c in ("loo_score",) if c in frame]
    return frame[cols].sort_values("sample_index").reset_index(drop=True)
