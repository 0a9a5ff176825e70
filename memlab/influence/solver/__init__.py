"""Estimators of (H + λI)⁻¹ for the self-influence of Eq. 2, built by name (:mod:`.factory`):

    solver = make_solver("ekfac", damping=0.0, fit_examples=2000).fit(module, params, batches, objective)
    solver, spectrum = fit_solver("ekfac", module, params, batches, objective, damping_rel=0.1)
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
from .factory import SOLVERS, fit_solver, make_solver
from .identity import IdentitySolver
from .lissa import LissaSolver

__all__ = ["InverseHessianSolver", "SOLVERS", "make_solver", "fit_solver", "ExactSolver", "ConjugateGradientSolver",
           "LissaSolver", "EKFACSolver", "IdentitySolver", "ArnoldiSolver"]
