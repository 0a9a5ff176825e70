"""The gradient-norm baseline: (H + λI)⁻¹ replaced by I/λ (or I when λ = 0).

With it the self-influence of Eq. 2 becomes P(y|x)·‖∇θL(z)‖² (divided by λ): the score a
Hessian-free estimator gives, and what the study's LiSSA (effective damping 50) nearly reduces to.
"""
from __future__ import annotations

from torch import Tensor

from .base import InverseHessianSolver


class IdentitySolver(InverseHessianSolver):
    """(H + λI)⁻¹ ≈ I/λ: no curvature at all; ``fit`` only remembers the model."""

    name = "identity"

    def solve(self, vectors: Tensor) -> Tensor:
        return vectors / self.damping if self.damping > 0 else vectors.clone()
