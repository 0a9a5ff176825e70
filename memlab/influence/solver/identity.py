"""The gradient-norm baseline: (H + λI)⁻¹ replaced by I/λ (or I when λ = 0).

With it the self-influence of Eq. 2 becomes P(y|x)·‖∇θL(z)‖² (divided by λ): the score a
Hessian-free estimator gives, and what the study's LiSSA (effective damping 50) nearly reduces to.
Its fast path reads ‖∇θCE‖² from the hooks' token factors (:mod:`memlab.influence.tracking`) by the
Gram identity ‖Σ_t g_t a_tᵀ‖² = Σ_tt' (g_t·g_t')(a_t·a_t') instead of forming per-example gradients.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..functional import Params, TrainingObjective, unflatten
from ..tracking import FactorTracker, gram_norm_sq
from .base import InverseHessianSolver


class IdentitySolver(InverseHessianSolver):
    """(H + λI)⁻¹ ≈ I/λ: no curvature at all; ``fit`` only remembers the model."""

    name = "identity"
    has_self_influence_terms = True

    def __init__(self, damping: float = 0.0):
        super().__init__(damping)
        self._tracker: FactorTracker | None = None

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "IdentitySolver":
        super().fit(module, params, batches, objective)
        self._tracker = None  # the token-factor hooks are bound lazily to this model
        return self

    def solve(self, vectors: Tensor) -> Tensor:
        return vectors / self.damping if self.damping > 0 else vectors.clone()

    def self_influence_terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                             ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """(probs, ‖g_i‖²/λ, g_iᵀl2_grad/λ or None, ‖g_i‖²) from per-token factors instead of
        per-example gradients: same values, ~4x faster on a transformer suffix."""
        if self._tracker is None:
            self._tracker = FactorTracker(self.module, self.params)
        probs, norm_sq, dot = gradient_terms(self._tracker, batch, l2_grad)
        inverse = 1.0 / self.damping if self.damping > 0 else 1.0
        return probs, norm_sq * inverse, (dot * inverse if dot is not None else None), norm_sq


def gradient_terms(tracker: FactorTracker, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(probs [B, C], ‖g_i‖² [B], g_iᵀ l2_grad [B] or None) for the gold cross-entropy gradient g_i of
    every example, from the token factors alone (no fit, no eigenbasis), float64."""
    probs, draw, factors = tracker.gold_draw(batch)
    b = probs.shape[0]
    norm_sq = torch.zeros(b, dtype=torch.float64, device=probs.device)
    dot = torch.zeros_like(norm_sq) if l2_grad is not None else None
    parts = unflatten(l2_grad.to(next(iter(tracker.params.values())).dtype), tracker.params) \
        if dot is not None else None
    for block, ag in zip(tracker.blocks, factors):
        norm_sq += gram_norm_sq(ag)
        if dot is not None and ag is not None:  # Σ_t g_tᵀ L2 a_t
            a, g = ag
            dot += ((g @ block.matrix(parts)) * a).sum((1, 2)).double()
    for n, grad_n in draw.diag.items():
        flat = grad_n.reshape(b, -1)
        norm_sq += flat.square().sum(1).double()
        if dot is not None:
            dot += (flat @ parts[n].reshape(-1)).double()
    norm_sq = norm_sq * draw.scale ** 2
    return probs, norm_sq, (dot * draw.scale if dot is not None else None)
