"""The exact inverse: the dense mean Hessian H of the training loss (L2 term included), inverted
through its eigendecomposition. P² memory and P³ time: for small models and for checking the
approximate solvers.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..functional import Params, TrainingObjective, dense_hessian, num_params
from ..sampling import batch_size_of, eval_mode, on_device, params_device, reiterable, summed
from .base import InverseHessianSolver


class ExactSolver(InverseHessianSolver):
    """(H + λI)⁻¹ from the dense Hessian; refuses models above ``max_params`` parameters."""

    name = "exact"
    holds_eigenvalues = True

    def __init__(self, damping: float = 0.0, max_params: int = 5000):
        super().__init__(damping)
        self.max_params = int(max_params)
        self.hessian_eigenvalues: Tensor | None = None   # of H (ascending), float64
        self.hessian_eigenvectors: Tensor | None = None

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "ExactSolver":
        n_params = num_params(params)
        if n_params > self.max_params:
            raise ValueError(f"exact solver: {n_params:,} parameters exceed max_params={self.max_params:,} "
                             f"(the dense Hessian needs P² memory); use solver=ekfac or cg, or raise max_params")
        super().fit(module, params, batches, objective)
        device = params_device(params)
        total = torch.zeros(n_params, n_params, dtype=torch.float64, device=device)
        count = torch.zeros((), dtype=torch.float64, device=device)
        with eval_mode(module):
            for batch in on_device(reiterable(batches), device):
                n = batch_size_of(batch)
                # a sum over examples (not a mean) so that processes can add their parts
                total += dense_hessian(module, params, [batch], objective).double() * n
                count += n
        total, count = summed(total, all_reduce), summed(count, all_reduce)
        hessian = total / count
        hessian = (hessian + hessian.T) / 2
        self.hessian_eigenvalues, self.hessian_eigenvectors = torch.linalg.eigh(hessian)
        return self

    def eigenvalues(self) -> Tensor | None:
        """The eigenvalues of the dense H (ascending, float64); None before :meth:`fit`."""
        return self.hessian_eigenvalues

    def solve(self, vectors: Tensor) -> Tensor:
        values = self.hessian_eigenvalues
        if values is None:
            raise RuntimeError("exact solver: call fit() before solve()")
        shifted = values + self.damping
        if (shifted.abs() < 1e-12 * max(float(values.abs().max()), 1.0)).any():
            raise FloatingPointError(f"exact solver: H + λI is singular (λ={self.damping:g}, smallest eigenvalue "
                                     f"{float(values[0]):.3g}); raise damping")
        q = self.hessian_eigenvectors
        out = ((vectors.double() @ q) / shifted) @ q.T
        return out.to(vectors.dtype)

    def state_dict(self) -> dict:
        return {"eigenvalues": self.hessian_eigenvalues, "eigenvectors": self.hessian_eigenvectors}

    def load_state_dict(self, state: dict) -> None:
        self.hessian_eigenvalues, self.hessian_eigenvectors = state["eigenvalues"], state["eigenvectors"]
