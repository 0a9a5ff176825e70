"""Solvers by name: the registry, :func:`make_solver` (unfitted, absolute λ) and :func:`fit_solver`
(fitted, with λ absolute or relative to the mean eigenvalue of H, :mod:`memlab.influence.damping`).

    solver, spectrum = fit_solver("ekfac", module, params, batches, objective, damping_rel=0.1)
"""
from __future__ import annotations

import inspect
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..damping import absolute_damping, chosen_damping
from ..functional import Params, TrainingObjective
from ..sampling import reiterable
from ..spectrum import estimate_hessian_spectrum, spectrum_from_solver
from .arnoldi import ArnoldiSolver
from .base import InverseHessianSolver
from .cg import ConjugateGradientSolver
from .ekfac import EKFACSolver
from .exact import ExactSolver
from .identity import IdentitySolver
from .lissa import LissaSolver

SOLVERS: dict[str, type[InverseHessianSolver]] = {
    "exact": ExactSolver,
    "cg": ConjugateGradientSolver,
    "lissa": LissaSolver,
    "ekfac": EKFACSolver,
    "identity": IdentitySolver,
    "arnoldi": ArnoldiSolver,
}


def make_solver(name: str, damping: float, **kwargs) -> InverseHessianSolver:
    """A solver by name with absolute damping λ; ``kwargs`` are the solver's own options."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    cls = SOLVERS[name]
    try:
        return cls(damping=damping, **kwargs)
    except TypeError as err:  # an option the solver does not have: say which ones it has
        options = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "damping")]
        raise ValueError(f"solver {name!r}: {err}; its options are {', '.join(options) or 'none'}") from None


def fit_solver(name: str, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
               objective: TrainingObjective = TrainingObjective(), damping: float | None = None,
               damping_rel: float | None = None, all_reduce: Callable[[Tensor], Tensor] | None = None,
               spectrum_kwargs: dict | None = None, **solver_kwargs) -> tuple[InverseHessianSolver, dict | None]:
    """Build and fit solver ``name`` with λ = ``damping``, or λ = ``damping_rel`` × mean eigenvalue of H
    (an absolute ``damping`` wins when both are given: :func:`~memlab.influence.damping.chosen_damping`).

    The mean eigenvalue comes from the fitted solver when it holds the spectrum (ekfac, exact), else
    from :func:`estimate_hessian_spectrum` (``spectrum_kwargs``). Returns (solver, spectrum or None).
    The ``l2`` of a preset belongs to ``objective`` (TrainingObjective), not to the solver.
    """
    damping, damping_rel = chosen_damping(damping, damping_rel)
    solver = make_solver(name, damping if damping is not None else 0.0, **solver_kwargs)
    spectrum = None
    if damping_rel is not None and not solver.holds_eigenvalues:
        # the solver will not know H's spectrum: estimate it before fitting with the final λ
        batches = reiterable(batches)
        spectrum = estimate_hessian_spectrum(module, params, batches, objective, **(spectrum_kwargs or {}))
        if all_reduce is not None:  # every process must use the same λ: average the estimates
            spectrum = _averaged(spectrum, all_reduce, next(iter(params.values())).device)
        solver.damping = absolute_damping(damping_rel=damping_rel, mean_eigenvalue=spectrum["mean"])
    solver.fit(module, params, batches, objective, all_reduce=all_reduce)
    if damping_rel is not None and spectrum is None:
        spectrum = spectrum_from_solver(solver)
        solver.damping = absolute_damping(damping_rel=damping_rel, mean_eigenvalue=spectrum["mean"])
    elif spectrum is None:
        spectrum = spectrum_from_solver(solver)
    return solver, spectrum


def _averaged(spectrum: dict, all_reduce: Callable[[Tensor], Tensor], device: torch.device) -> dict:
    """Top and mean eigenvalue averaged over processes (each estimated on its own shard)."""
    sums = all_reduce(torch.tensor([spectrum["top"], spectrum["trace"], 1.0], dtype=torch.float64, device=device))
    top, trace = float(sums[0] / sums[2]), float(sums[1] / sums[2])
    return {**spectrum, "top": top, "trace": trace, "mean": trace / spectrum["num_params"]}
