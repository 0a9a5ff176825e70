"""Estimators of (H + λI)⁻¹ for the self-influence of Eq. 2, built by name:

    solver = make_solver("ekfac", damping=0.0, fit_examples=2000).fit(module, params, batches, objective)
    solver.solve(V)   # [k, P] -> [k, P]

exact (dense Hessian, small models), cg (conjugate gradient on HVPs), lissa (the study's stochastic
recursion), ekfac (eigenvalue-corrected K-FAC, large models), identity (gradient-norm baseline),
arnoldi (top-r eigenpairs by Lanczos, the rest damped).
"""
from __future__ import annotations

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
        import inspect
        options = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "damping")]
        raise ValueError(f"solver {name!r}: {err}; its options are {', '.join(options) or 'none'}") from None


__all__ = ["InverseHessianSolver", "SOLVERS", "make_solver", "ExactSolver", "ConjugateGradientSolver",
           "LissaSolver", "EKFACSolver", "IdentitySolver", "ArnoldiSolver"]
