"""LiSSA (Agarwal et al. 2017), the stochastic recursion the study used for (H + λI)⁻¹v:

    h ← v + (1 − damp)·h − H_b h / scale,    damp = λ / scale,    s = h / scale,

with H_b the Hessian (L2 term included) of ONE training example (``hessian_batch_size=1``, the
study) or of a mini-batch, drawn from a seeded shuffle of the training data. The fixed point is
h = scale·(H + λI)⁻¹v. It converges when ``scale`` exceeds the largest eigenvalue of every H_b + λI;
otherwise ‖h‖ grows and :class:`FloatingPointError` says what to raise.

The study ran it with damp = 5e-3 and scale = 1e4 (so λ = 50), ~1000 steps, one repetition.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..functional import Params, TrainingObjective, hvp_many
from ..presets import STUDY_PRESET
from ..sampling import (collate_rows, count_examples, eval_mode, params_device, random_stream_positions, reiterable,
                        take_positions, to_device)
from .base import InverseHessianSolver


class LissaSolver(InverseHessianSolver):
    """The study's estimator. Every :meth:`solve` call uses the same seeded sequence of H_b.

    ``steps × hessian_batch_size × repeats`` example draws are held in memory after :meth:`fit`.
    HVPs use this process's own data in DDP (``all_reduce`` is accepted and not needed).
    """

    name = "lissa"

    def __init__(self, damping: float = STUDY_PRESET["damping"], scale: float = STUDY_PRESET["scale"],
                 steps: int = STUDY_PRESET["steps"], hessian_batch_size: int = 1,
                 repeats: int = 1, seed: int = 0, divergence_factor: float = 1e3):
        super().__init__(damping)
        if scale <= 0 or steps < 1 or hessian_batch_size < 1 or repeats < 1:
            raise ValueError("lissa: scale must be > 0 and steps, hessian_batch_size, repeats >= 1")
        self.scale, self.steps = float(scale), int(steps)
        self.hessian_batch_size, self.repeats, self.seed = int(hessian_batch_size), int(repeats), int(seed)
        self.divergence_factor = float(divergence_factor)
        self.draws: list[list[dict]] | None = None  # per repeat: the H_b batches in order

    def fit(self, module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
            objective: TrainingObjective = TrainingObjective(),
            all_reduce: Callable[[Tensor], Tensor] | None = None) -> "LissaSolver":
        super().fit(module, params, batches, objective)
        batches = reiterable(batches)
        total = count_examples(batches)
        length = self.steps * self.hessian_batch_size
        orders = [random_stream_positions(total, length, self.seed + r) for r in range(self.repeats)]
        rows = take_positions(batches, {p for order in orders for p in order})
        self.draws = []
        for order in orders:
            chunks = [order[i:i + self.hessian_batch_size] for i in range(0, length, self.hessian_batch_size)]
            # one H_b per step even when padded lengths differ inside a chunk
            self.draws.append([b for chunk in chunks for b in collate_rows([rows[p] for p in chunk], len(chunk))])
        return self

    def solve(self, vectors: Tensor) -> Tensor:
        if self.draws is None:
            raise RuntimeError("lissa solver: call fit() before solve()")
        damp = self.damping / self.scale
        v = vectors
        v_norm = v.norm(dim=-1).clamp_min(torch.finfo(v.dtype).tiny)
        # ‖h‖ ≤ ‖v‖/damp while the recursion contracts (and ≤ steps·‖v‖ when damp = 0)
        bound = self.divergence_factor * v_norm * min(1.0 / damp if damp > 0 else float("inf"), float(self.steps + 1))
        device = params_device(self.params)
        estimate = torch.zeros_like(v)
        with eval_mode(self.module):
            for draws in self.draws:
                h = v.clone()
                for step, batch in enumerate(draws, start=1):
                    hb_h = hvp_many(self.module, self.params, to_device(batch, device), h, self.objective)
                    h = v + (1 - damp) * h - hb_h / self.scale
                    norm = h.norm(dim=-1)
                    if not torch.isfinite(norm).all() or (norm > bound).any():
                        worst = float(norm.max()) if torch.isfinite(norm).all() else float("nan")
                        raise FloatingPointError(
                            f"LiSSA diverged at step {step} (‖h‖={worst:.3g}): raise solver.scale above the top "
                            f"Hessian eigenvalue (now {self.scale:g}) or raise damping (now {self.damping:g})")
                estimate += h / self.scale
        return estimate / self.repeats

    def describe(self) -> dict:
        return {**super().describe(), "scale": self.scale, "steps": self.steps,
                "hessian_batch_size": self.hessian_batch_size, "repeats": self.repeats, "seed": self.seed}
