"""The curvature scale of the mean training Hessian H (Eq. 7, L2 term included): its top eigenvalue
(Lanczos) and its mean eigenvalue tr(H)/P (Hutchinson), from which relative damping
(:mod:`.damping`) sets λ, so that one setting means the same across models and tasks.

    spec = estimate_hessian_spectrum(module, params, batches, objective)   # {"top", "mean", ...}
    lam = absolute_damping(damping_rel=0.1, mean_eigenvalue=spec["mean"])

A fitted EK-FAC (or exact) solver already holds eigenvalues: :func:`spectrum_from_solver` is free.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from .functional import Params, TrainingObjective, hvp_many, num_params
from .sampling import batch_size_of, eval_mode, on_device, params_device, seeded_subsample

if TYPE_CHECKING:  # the solvers use this module (Arnoldi's Lanczos, relative damping): no import at run time
    from .solver.base import InverseHessianSolver

Matvec = Callable[[Tensor], Tensor]


def lanczos(matvec: Matvec, dim: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float64,
            device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """k Lanczos steps with full reorthogonalisation on the symmetric operator ``matvec`` ([dim] -> [dim]).

    Returns (Ritz values [m] descending, Ritz vectors [m, dim]) with m = min(k, dim) (fewer if an
    invariant subspace is found). Holds m vectors of size dim.
    """
    if k < 1 or dim < 1:
        raise ValueError(f"lanczos needs k >= 1 and dim >= 1, got k={k}, dim={dim}")
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    q = q / q.norm()
    basis = torch.empty(min(k, dim), dim, dtype=dtype, device=device)
    alphas, betas = [], []
    scale = 0.0
    for j in range(min(k, dim)):
        basis[j] = q
        w = matvec(q).to(dtype)
        alpha = torch.dot(q, w)
        alphas.append(alpha)
        # full reorthogonalisation (twice is enough, Parlett): keeps the Ritz values free of ghosts
        for _ in range(2):
            w = w - basis[:j + 1].T @ (basis[:j + 1] @ w)
        beta = w.norm()
        scale = max(scale, float(alpha.abs()), float(beta))
        if j == min(k, dim) - 1:
            break
        if beta <= 1e3 * torch.finfo(dtype).eps * scale:
            # invariant subspace found (e.g. a repeated eigenvalue): continue in a fresh direction
            w = torch.randn(dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
            for _ in range(2):
                w = w - basis[:j + 1].T @ (basis[:j + 1] @ w)
            q = w / w.norm()
            betas.append(torch.zeros((), dtype=dtype, device=device))
            continue
        betas.append(beta)
        q = w / beta
    m = len(alphas)
    tri = torch.diag(torch.stack(alphas).double())
    if m > 1:
        off = torch.stack(betas[:m - 1]).double()
        tri += torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(tri)
    order = values.argsort(descending=True)
    ritz_vectors = vectors[:, order].T.to(dtype) @ basis[:m]
    return values[order], ritz_vectors


def lanczos_eigenvalues(matvec: Matvec, dim: int, k: int, seed: int = 0, dtype: torch.dtype = torch.float64,
                        device: torch.device | str | None = None) -> Tensor:
    """Ritz values (descending) of k Lanczos steps with full reorthogonalisation: the extreme
    eigenvalues of the operator converge first, the top one within a few tens of steps."""
    return lanczos(matvec, dim, k, seed, dtype, device)[0]


def hutchinson_trace(matvec: Matvec, dim: int, n_probes: int, seed: int = 0, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> float:
    """tr(M) ≈ mean of zᵀMz over Rademacher probes z (unbiased; variance 2(‖M‖_F² − Σ M_ii²)/n_probes)."""
    if n_probes < 1:
        raise ValueError(f"hutchinson_trace needs n_probes >= 1, got {n_probes}")
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(n_probes):
        z = (torch.randint(0, 2, (dim,), generator=gen) * 2 - 1).to(dtype=dtype, device=device)
        total += float(torch.dot(z, matvec(z).to(dtype)))
    return total / n_probes


def hessian_matvec(module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
                   objective: TrainingObjective = TrainingObjective()) -> Matvec:
    """v -> H v, the example-weighted mean HVP over ``batches`` (one pass per call), for one vector
    [P] or a block [k, P] (all k in the same pass)."""
    device, dtype = params_device(params), next(iter(params.values())).dtype

    def matvec(v: Tensor) -> Tensor:
        block = v.to(device=device, dtype=dtype)
        block = block.unsqueeze(0) if v.ndim == 1 else block
        total, count = torch.zeros_like(block), 0
        with eval_mode(module):
            for batch in on_device(batches, device):
                n = batch_size_of(batch)
                total += hvp_many(module, params, batch, block, objective) * n
                count += n
        mean = total / count
        return (mean[0] if v.ndim == 1 else mean).to(v.dtype)

    return matvec


def estimate_hessian_spectrum(module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
                              objective: TrainingObjective = TrainingObjective(), k: int = 20, n_probes: int = 10,
                              max_examples: int | None = 1000, seed: int = 0) -> dict:
    """Top eigenvalue (Lanczos, ``k`` HVP passes) and mean eigenvalue tr(H)/P (Hutchinson,
    ``n_probes`` passes) of the mean Hessian H (Eq. 7) over a seeded subsample of ``max_examples``.

    Returns {"top", "bottom" (smallest Ritz value), "mean", "trace", "num_params", "ritz", "method"}.
    """
    data = seeded_subsample(batches, max_examples, seed)
    dim = num_params(params)
    dtype = next(iter(params.values())).dtype
    device = params_device(params)
    matvec = hessian_matvec(module, params, data, objective)
    ritz = lanczos_eigenvalues(matvec, dim, k, seed, dtype=dtype, device=device)
    trace = hutchinson_trace(matvec, dim, n_probes, seed + 1, dtype=dtype, device=device)
    return {"top": float(ritz[0]), "bottom": float(ritz[-1]), "mean": trace / dim, "trace": trace,
            "num_params": dim, "ritz": [float(r) for r in ritz], "method": "lanczos+hutchinson"}


def spectrum_from_solver(solver: InverseHessianSolver) -> dict | None:
    """The same keys as :func:`estimate_hessian_spectrum` from a fitted solver that holds all P
    eigenvalues of its approximation of H (ekfac, exact); None for the others."""
    values = solver.eigenvalues()
    if values is None:
        return None
    values = values.double().reshape(-1)
    trace = float(values.sum())
    return {"top": float(values.max()), "bottom": float(values.min()), "mean": trace / values.numel(),
            "trace": trace, "num_params": values.numel(), "ritz": None, "method": solver.name}

