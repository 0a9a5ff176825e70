"""The exact inverse: the dense mean Hessian H of the training loss (L2 term included), inverted
through its eigendecomposition. P² memory and P³ time: for small models and for checking the
approximate solvers.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..functional import Params, TrainingObjective, dense_hessian, num_params
from .base import InverseHessianSolver
from .sampling import batch_size_of, eval_mode, on_device, params_device, reiterable, summed


class ExactSolver(InverseHessianSolver):
    """(H + λI)⁻¹ from the dense Hessian; refuses models above ``max_params`` parameters."""

    name = "exact"

    def __init__(self, damping: float = 0.0, max_params: int = 5000):
        super().__init__(damping)
        self.max_params = int(max_params)
        self.eigenvalues: Tensor | None = None   # of H (ascending), float64
        self.eigenvectors: Tensor | None = None

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
        self.eigenvalues, self.eigenvectors = torch.linalg.eigh(hessian)
        return self

    def solve(self, vectors: Tensor) -> Tensor:
        if self.eigenvalues is None:
            raise RuntimeError("exact solver: call fit() before solve()")
        shifted = self.eigenvalues + self.damping
        if (shifted.abs() < 1e-12 * max(float(self.eigenvalues.abs().max()), 1.0)).any():
            raise FloatingPointError(f"exact solver: H + λI is singular (λ={self.damping:g}, smallest eigenvalue "
                                     f"{float(self.eigenvalues[0]):.3g}); raise damping")
        q = self.eigenvectors
        out = ((vectors.double() @ q) / shifted) @ q.T
        return out.to(vectors.dtype)

    def state_dict(self) -> dict:
        return {"eigenvalues": self.eigenvalues, "eigenvectors": self.eigenvectors}

    def load_state_dict(self, state: dict) -> None:
        self.eigenvalues, self.eigenvectors = state["eigenvalues"], state["eigenvectors"]
