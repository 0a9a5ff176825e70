"""The gradient-norm baseline: (H + λI)⁻¹ replaced by I/λ (or I when λ = 0).

With it the self-influence of Eq. 2 becomes P(y|x)·‖∇θL(z)‖² (divided by λ): the score a
Hessian-free estimator gives, and what the study's LiSSA (effective damping 50) nearly reduces to.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from torch import Tensor, nn

from ..functional import Params, TrainingObjective
from .base import InverseHessianSolver


class IdentitySolver(InverseHessianSolver):
    """(H + λI)⁻¹ ≈ I/λ: no curvature at all; ``fit`` only remembers the model."""

    name = "identity"

    def __init__(self, damping: float = 0.0):
        super().__init__(damping)
        self._factors = None

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "IdentitySolver":
        super().fit(module, params, batches, objective)
        self._factors = None  # the token-factor hooks are bound lazily to this model
        return self

    def solve(self, vectors: Tensor) -> Tensor:
        return vectors / self.damping if self.damping > 0 else vectors.clone()

    def self_influence_terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                             ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """(probs, ‖g_i‖²/λ, g_iᵀl2_grad/λ or None, ‖g_i‖²) from per-token factors (the Gram identity
        ‖Σ_t g_t a_tᵀ‖² = Σ_tt' (g_t·g_t')(a_t·a_t')) instead of per-example gradients: same values,
        ~4x faster on a transformer suffix."""
        from .ekfac import EKFACSolver

        if self._factors is None:
            self._factors = EKFACSolver().attach(self.module, self.params, self.objective)
        probs, norm_sq, dot = self._factors.gradient_terms(batch, l2_grad)
        inverse = 1.0 / self.damping if self.damping > 0 else 1.0
        return probs, norm_sq * inverse, (dot * inverse if dot is not None else None), norm_sq
