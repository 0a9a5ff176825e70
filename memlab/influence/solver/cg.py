"""Conjugate gradient on Hessian-vector products: (H + λI)⁻¹V without ever forming H.

Each iteration is one pass of HVPs over the fit data (the mean over examples, weighted by batch
size, L2 term included), for a whole block of k right-hand sides at once; every column stops on its
own relative residual ``tol``. ``hessian_examples`` fixes a seeded subsample for the HVPs.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..functional import Params, TrainingObjective, hvp_many
from ..sampling import batch_size_of, eval_mode, on_device, params_device, seeded_subsample
from .base import InverseHessianSolver


class ConjugateGradientSolver(InverseHessianSolver):
    """Block CG for (H + λI)X = V. H + λI must be positive definite (λ above any negative curvature).

    HVPs use the data this process was fitted on: in DDP every process solves with its own shard's
    Hessian (an unbiased estimate of the global one); ``all_reduce`` is accepted and not needed.
    """

    name = "cg"

    def __init__(self, damping: float = 0.0, tol: float = 1e-6, max_iter: int = 100,
                 hessian_examples: int | None = None, seed: int = 0):
        super().__init__(damping)
        self.tol, self.max_iter = float(tol), int(max_iter)
        self.hessian_examples, self.seed = hessian_examples, int(seed)
        self.batches = None
        self.iterations = 0  # of the last solve

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "ConjugateGradientSolver":
        super().fit(module, params, batches, objective)
        self.batches = seeded_subsample(batches, self.hessian_examples, self.seed)
        return self

    def hessian_matvec(self, vectors: Tensor) -> Tensor:
        """H V for a [k, P] block: the example-weighted mean of the batches' HVPs."""
        total, count = torch.zeros_like(vectors), 0
        with eval_mode(self.module):
            for batch in on_device(self.batches, params_device(self.params)):
                n = batch_size_of(batch)
                total += hvp_many(self.module, self.params, batch, vectors, self.objective) * n
                count += n
        return total / count

    def solve(self, vectors: Tensor) -> Tensor:
        if self.batches is None:
            raise RuntimeError("cg solver: call fit() before solve()")
        b = vectors
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = (r * r).sum(-1)
        target = (self.tol * b.norm(dim=-1)) ** 2
        active = rs > target
        self.iterations = 0
        while active.any() and self.iterations < self.max_iter:
            ap = self.hessian_matvec(p) + self.damping * p
            curvature = (p * ap).sum(-1)
            if (curvature[active] <= 0).any():
                worst = float(curvature[active].min())
                raise FloatingPointError(f"CG met non-positive curvature pᵀ(H+λI)p={worst:.3g} at iteration "
                                         f"{self.iterations}: H + λI is not positive definite; raise damping "
                                         f"(now {self.damping:g}) above the most negative Hessian eigenvalue")
            alpha = torch.where(active, rs / curvature.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rs))
            x = x + alpha[:, None] * p
            r = r - alpha[:, None] * ap
            rs_new = (r * r).sum(-1)
            beta = torch.where(active, rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rs))
            p = r + beta[:, None] * p
            rs = rs_new
            active = rs > target
            self.iterations += 1
        if not torch.isfinite(x).all():
            raise FloatingPointError("CG produced NaN/inf; check the model's loss for NaN or raise damping")
        return x

    def describe(self) -> dict:
        return {**super().describe(), "tol": self.tol, "max_iter": self.max_iter,
                "hessian_examples": self.hessian_examples, "seed": self.seed}
