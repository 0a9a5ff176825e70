"""The one interface every inverse-Hessian estimator implements: apply (H + λI)⁻¹ to a block of
vectors, and the quadratic form uᵀ(H + λI)⁻¹v that self-influence (Eq. 2) needs.

H is the mean Hessian of the training loss (L2 term included) over the parameters θ of
:mod:`memlab.influence.functional`; λ (``damping``) is explicit in every solver.

Two abilities are optional, and declared here with their defaults so that callers ask the solver
instead of probing it with ``hasattr``:

* ``holds_eigenvalues``: a fitted solver knows all P eigenvalues of its H, and :meth:`eigenvalues`
  returns them (the mean eigenvalue of relative damping then costs nothing);
* ``has_self_influence_terms``: :meth:`self_influence_terms` scores a batch by the solver's own
  path (hooks and token factors) instead of flat per-example gradients.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterable, Mapping

from torch import Tensor, nn

from ..functional import Params, TrainingObjective


class InverseHessianSolver(ABC):
    """Estimator of (H + λI)⁻¹. Call :meth:`fit` once with the training data, then :meth:`solve`."""

    name: str = "base"
    holds_eigenvalues: bool = False          # see eigenvalues()
    has_self_influence_terms: bool = False   # see self_influence_terms()

    def __init__(self, damping: float = 0.0):
        if damping < 0:
            raise ValueError(f"damping must be >= 0, got {damping}")
        self.damping = float(damping)
        self.module: nn.Module | None = None
        self.params: Params | None = None
        self.objective = TrainingObjective()

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "InverseHessianSolver":
        """Remember the model and gather whatever curvature statistics the solver needs.

        ``all_reduce`` (DDP) sums a tensor over processes: statistics are kept as sums and counts,
        summed with it, then normalised, so every process ends with the global estimate.
        """
        self.module, self.params, self.objective = module, params, objective
        return self

    @abstractmethod
    def solve(self, vectors: Tensor) -> Tensor:
        """(H + λI)⁻¹ V for ``vectors`` of shape ``[k, P]``; returns ``[k, P]``."""

    def quadratic_form(self, left: Tensor, right: Tensor | None = None) -> Tensor:
        """``[k]`` values leftᵢᵀ (H + λI)⁻¹ rightᵢ (right defaults to left)."""
        right = left if right is None else right
        return (left * self.solve(right)).sum(-1)

    def eigenvalues(self) -> Tensor | None:
        """All P eigenvalues of the fitted solver's approximation of H (L2 term included, no damping);
        None where the solver does not hold them (``holds_eigenvalues`` False)."""
        return None

    def self_influence_terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
                             ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """For the gold-label cross-entropy gradient g_i of every example of ``batch``, bound to the
        fitted model: (probs [B, C], g_iᵀ(H+λI)⁻¹g_i [B], g_iᵀ(H+λI)⁻¹l2_grad [B] or None, ‖g_i‖² [B]),
        float64. Only where ``has_self_influence_terms``; the others score through :meth:`solve`."""
        raise NotImplementedError(f"solver {self.name!r} has no per-batch self-influence path; "
                                  f"check has_self_influence_terms and use solve()")

    def state_dict(self) -> dict:
        """Curvature statistics to cache or all-reduce (empty for solvers without any)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def describe(self) -> dict:
        return {"solver": self.name, "damping": self.damping}

