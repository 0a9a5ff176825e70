"""Scoring every training instance (paper Eq. 2) as a resumable job, outside Lightning.

Streams per-example gradients through a fitted inverse-Hessian solver and writes results in chunks
(``<out>/chunks/chunk-00003.pt``, atomic): a rerun with the same model, data and solver skips finished
chunks and ends with identical scores. Under data parallelism each rank scores the chunks with
``chunk_id % world_size == rank`` and rank 0 merges. The merged table is what scores.csv holds.

    frame, info, solver = score_training_set(module, params, objective, score_batches, fit_batches,
                                      solver_cfg={"name": "ekfac", "damping_rel": 0.1}, out_dir=...)
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .influence.functional import Params, TrainingObjective
from .influence.presets import fit_solver
from .influence.self_influence import memorization_scores
from .utils.io import atomic_torch_save, atomic_write_text
from .utils.memory import release_free_memory

SOLVER_KEYS = ("name", "damping", "damping_rel", "own_term")


def solver_options(solver_cfg: Mapping) -> dict:
    return dict(solver_cfg.get("options") or {})


def state_fingerprint(module: nn.Module, params: Params, sample_indices: list[int], solver_cfg: Mapping) -> str:
    """Identifies a scoring job: weights, data order and solver settings."""
    h = hashlib.sha1(json.dumps({k: solver_cfg.get(k) for k in SOLVER_KEYS}, sort_keys=True, default=str).encode())
    h.update(json.dumps(solver_options(solver_cfg), sort_keys=True, default=str).encode())
    for name, p in sorted(params.items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    h.update(torch.tensor(sample_indices).numpy().tobytes())
    return h.hexdigest()[:16]


def _prepare_chunk_dir(out_dir: Path, fingerprint: str, rank: int) -> Path:
    chunk_dir = out_dir / "chunks"
    manifest = chunk_dir / "manifest.json"
    if rank == 0 and chunk_dir.is_dir():
        old = json.loads(manifest.read_text()).get("fingerprint") if manifest.is_file() else None
        if old != fingerprint:  # other model or solver: old chunks are not ours to reuse
            shutil.rmtree(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        atomic_write_text(manifest, json.dumps({"fingerprint": fingerprint}))
    return chunk_dir


def fit_scoring_solver(module: nn.Module, params: Params, objective: TrainingObjective, fit_batches,
                       solver_cfg: Mapping, all_reduce: Callable[[Tensor], Tensor] | None = None):
    """(solver, spectrum) with λ from ``solver.damping`` or ``solver.damping_rel``."""
    damping, damping_rel = solver_cfg.get("damping"), solver_cfg.get("damping_rel")
    if damping is not None and damping_rel is not None:
        damping_rel = None  # an explicit absolute damping wins
    return fit_solver(solver_cfg["name"], module, params, fit_batches, objective, damping=damping,
                      damping_rel=damping_rel, all_reduce=all_reduce, **solver_options(solver_cfg))


def score_training_set(module: nn.Module, params: Params, objective: TrainingObjective,
                       score_batches: Iterable[Mapping[str, Tensor]], fit_batches: Iterable[Mapping[str, Tensor]],
                       solver_cfg: Mapping, out_dir: str | Path, sample_indices: list[int],
                       batches_per_chunk: int = 32, rank: int = 0, world_size: int = 1,
                       all_reduce: Callable[[Tensor], Tensor] | None = None, barrier: Callable[[], None] = lambda: None,
                       progress: bool = True) -> tuple[pd.DataFrame | None, dict, object]:
    """(scores, info, fitted solver) for every example in ``score_batches`` (rank 0 gets the merged frame)."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    fingerprint = state_fingerprint(module, params, sample_indices, solver_cfg)
    if rank == 0:
        _prepare_chunk_dir(out_dir, fingerprint, rank)
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

    done_before, n_chunks = 0, 0
    bar = tqdm(total=len(sample_indices), desc=f"memorization scores ({solver.name})",
               disable=not progress or rank != 0, unit="ex", dynamic_ncols=True)
    for c, chunk_batches in chunks():
        n_chunks = c + 1
        n = sum(len(b["labels"]) for b in chunk_batches)
        file = chunk_dir / f"chunk-{c:05d}.pt"
        if c % world_size != rank or file.is_file():
            done_before += file.is_file() and c % world_size == rank
            bar.update(n)
            continue
        results = list(memorization_scores(module, params, chunk_batches, solver, objective, own_term_n=own_term_n))
        bar.update(n)
        merged = {k: torch.cat([r[k] for r in results]) for k in results[0]}
        atomic_torch_save(merged, file)
        release_free_memory()  # batches grow longer (length order): freed shorter buffers are not reused
    bar.close()
    barrier()
    info = {"solver": solver.describe(), "spectrum": _jsonable_spectrum(spectrum), "fit_seconds": fit_seconds,
            "resumed_chunks": int(done_before), "chunks": n_chunks}
    if rank != 0:
        return None, info, solver
    parts = [torch.load(chunk_dir / f"chunk-{c:05d}.pt", weights_only=True) for c in range(n_chunks)]
    frame = pd.DataFrame({k: torch.cat([p[k] for p in parts]).double().numpy() if k not in ("sample_index", "label", "prediction")
                          else torch.cat([p[k] for p in parts]).long().numpy() for k in parts[0]})
    info["seconds"] = time.perf_counter() - started
    return frame, info, solver


def _jsonable_spectrum(spectrum: dict | None) -> dict | None:
    if spectrum is None:
        return None
    return {k: v for k, v in spectrum.items() if k != "ritz" or v is None or len(v) <= 50}


def finalize_scores(frame: pd.DataFrame, texts: Mapping[int, str]) -> pd.DataFrame:
    """scores.csv's table: sample_index,label,text,prob,prediction,mem_score,rank (+ loss, grad_norm_sq, and
    loo_score when the solver's H needed the own term: the score without it, see ``with_own_term``)."""
    frame = frame.copy()
    frame["text"] = frame["sample_index"].map(lambda i: texts.get(int(i), ""))
    frame["rank"] = frame["mem_score"].rank(ascending=False, method="first").astype(int)
    cols = ["sample_index", "label", "text", "prob", "prediction", "mem_score", "rank", "loss", "grad_norm_sq"]
    cols += [c for c in ("loo_score",) if c in frame]
    return frame[cols].sort_values("sample_index").reset_index(drop=True)
