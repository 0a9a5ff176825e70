"""Low-rank inverse (after Schioppa et al. 2022): the top-r eigenpairs (U, e) of H by Lanczos with full
reorthogonalisation, inverted exactly on their span; the rest of the space gets 1/λ:

    (H + λI)⁻¹ v ≈ U diag(1/(e + λ)) Uᵀ v + (v − U Uᵀ v)/λ      (the second term only when λ > 0)

Cheap to apply (r dot products per vector) once fitted; the fit costs ``iterations`` HVP passes.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

from torch import Tensor, nn

from ..functional import Params, TrainingObjective, num_params
from ..sampling import params_device, seeded_subsample
from ..spectrum import hessian_matvec, lanczos
from .base import InverseHessianSolver


class ArnoldiSolver(InverseHessianSolver):
    """Top-``rank`` eigenspace of H from ``iterations`` (default 2·rank) Lanczos steps on a seeded
    subsample of ``hessian_examples``; holds ``iterations`` vectors of size P while fitting."""

    name = "arnoldi"

    def __init__(self, damping: float = 0.0, rank: int = 20, iterations: int | None = None,
                 hessian_examples: int | None = 1000, seed: int = 0):
        super().__init__(damping)
        self.rank, self.iterations = int(rank), iterations
        self.hessian_examples, self.seed = hessian_examples, int(seed)
        self.top_eigenvalues: Tensor | None = None
        self.top_eigenvectors: Tensor | None = None

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "ArnoldiSolver":
        super().fit(module, params, batches, objective)
        data = seeded_subsample(batches, self.hessian_examples, self.seed)
        dim = num_params(params)
        steps = self.iterations or 2 * self.rank
        values, vectors = lanczos(hessian_matvec(module, params, data, objective), dim, steps, self.seed,
                                  dtype=next(iter(params.values())).dtype, device=params_device(params))
        keep = values.abs().argsort(descending=True)[:self.rank]
        self.top_eigenvalues = values[keep].to(vectors.dtype)
        self.top_eigenvectors = vectors[keep]
        return self

    def solve(self, vectors: Tensor) -> Tensor:
        if self.top_eigenvectors is None:
            raise RuntimeError("arnoldi solver: call fit() before solve()")
        u = self.top_eigenvectors.to(vectors.dtype)
        coords = vectors @ u.T
        out = (coords / (self.top_eigenvalues.to(vectors.dtype) + self.damping)) @ u
        if self.damping > 0:
            out = out + (vectors - coords @ u) / self.damping
        return out

    def describe(self) -> dict:
        return {**super().describe(), "rank": self.rank, "iterations": self.iterations or 2 * self.rank,
                "hessian_examples": self.hessian_examples}
