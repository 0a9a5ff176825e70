"""The fast self-influence path of a fitted EK-FAC (:mod:`.ekfac`): the terms of Eq. 2 for every example
of a batch straight from the hooks' token factors (:mod:`memlab.influence.tracking`), without ever
forming the flat per-example gradient g_i [B, P]:

    g_iᵀ(H + λI)⁻¹g_i = Σ_Linears Σ_oi (Q_Gᵀ DW_i Q_A)[o, i]² / (Λ[o, i] + λ)  +  Σ_diag g_i² / (E[g²] + λ)

and the same with one side replaced by the L2 gradient. The rotated per-example gradients are formed
a few examples at a time (:func:`.eigenbasis.rotated_tiles`); with one live token per example (a
transformer's last layer outside key/value) DW is an outer product and no tile is needed at all.
With ``solver.score_tolerance`` a Linear with many live tokens is scored on a truncated eigenbasis
(:mod:`.truncation`): only its larger side's top directions rotated, a Gram-matrix residual for the rest.
"""
from __future__ import annotations

from typing import Mapping, Protocol

import torch
from torch import Tensor

from ..functional import Params, unflatten
from ..tracking import Factors, FactorTracker, gram_norm_sq
from .eigenbasis import EigenBlock, accumulation_dtype, rotated_tiles
from .truncation import TruncationPlan, truncated_quadratic_form, truncation_plan


class FittedEKFAC(Protocol):
    """What this path reads from a fitted :class:`~.ekfac.EKFACSolver`."""
    params: Params
    tracker: FactorTracker
    blocks: list[EigenBlock]
    diagonal: dict[str, Tensor]
    score_tolerance: float | None

    def eigenbases(self, factor_dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]: ...

    exact_logits: bool

    def score_autocast(self) -> torch.dtype | None: ...

    def rotated(self, i: int, factors: Factors) -> tuple[Tensor, Tensor]: ...

    def inverse_eigenvalues(self) -> list[Tensor]: ...

    def denominator(self, eig: Tensor) -> Tensor: ...


class EKFACSelfInfluence:
    """Eq. 2's quadratic forms for one fit of ``solver``; keeps the L2 gradient rotated into its eigenbasis."""

    def __init__(self, solver: FittedEKFAC):
        self.solver = solver
        self._l2_cache: tuple[Tensor, list[Tensor], dict[str, Tensor]] | None = None
        self._plans: tuple[tuple, list[TruncationPlan | None]] | None = None
        self._l2_products: tuple[tuple, list[Tensor | None]] | None = None
        self.truncated_used: set[int] = set()  # the Linears scored on their truncated basis (many live tokens)

    def plans(self) -> list[TruncationPlan | None]:
        """Per Linear, its truncated eigenbasis (:mod:`.truncation`) under ``solver.score_tolerance``, or
        None (the exact path: no tolerance, one live token, or too little to gain); cached per λ and fit."""
        inverses = self.solver.inverse_eigenvalues()
        key = tuple(id(w) for w in inverses) + (self.solver.score_tolerance,)
        if self._plans is None or self._plans[0] != key:
            tol = self.solver.score_tolerance
            self._plans = (key, [None if tol is None else truncation_plan(w.view(b.corrected.shape), b.corrected, tol)
                                 for w, b in zip(inverses, self.solver.blocks)])
        return self._plans[1]

    def truncation_summary(self) -> dict:
        """The truncated bases the pass has used: directions kept per Linear, and the largest expected error."""
        if self._plans is None or not self.truncated_used:
            return {}
        plans, used = self._plans[1], sorted(self.truncated_used)
        return {"truncated_blocks": [f"{self.solver.blocks[i].weight}: {plans[i].side} {len(plans[i].keep)}/"
                                     f"{plans[i].size}" for i in used],
                "truncation_max_expected_error": max(plans[i].expected_error for i in used)}

    def _l2_product(self, i: int, l2_blocks: list[Tensor]) -> Tensor:
        """M = Q_G (L2_rot ∘ W) Q_Aᵀ [out, in(+1)] of block ``i``: g_iᵀ(H+λI)⁻¹l2_grad on that Linear is
        Σ_t g_tᵀ M a_t, one forward's cost (a truncated basis has no full rotated gradient to dot with)."""
        key = (id(l2_blocks), tuple(id(w) for w in self.solver.inverse_eigenvalues()))
        if self._l2_products is None or self._l2_products[0] != key:
            self._l2_products = (key, [None] * len(self.solver.blocks))
        products = self._l2_products[1]
        if products[i] is None:
            block, inverse = self.solver.blocks[i], self.solver.inverse_eigenvalues()[i]
            products[i] = block.q_g @ (l2_blocks[i] * inverse.view(l2_blocks[i].shape)) @ block.q_a.T
        return products[i]

    def terms(self, batch: Mapping[str, Tensor], l2_grad: Tensor | None = None
              ) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """For the gold-label cross-entropy gradient g_i of every example of ``batch``:
        (probs [B, C], g_iᵀ(H+λI)⁻¹g_i [B], g_iᵀ(H+λI)⁻¹l2_grad [B] or None, ‖g_i‖² [B]), float64,
        without materialising g_i: from the hooks' token factors, rotated a few examples at a time."""
        solver = self.solver
        probs, draw, factors = solver.tracker.gold_draw(batch, solver.score_autocast(), solver.exact_logits)
        b = probs.shape[0]
        l2_blocks, l2_diag = self._rotated_l2(l2_grad) if l2_grad is not None else (None, None)
        quad, cross, norm_sq = self._quadratic_forms(factors, l2_blocks, b, probs.device)
        for n, d in solver.diagonal.items():
            g = draw.diag[n].reshape(b, -1)
            inverse = 1.0 / solver.denominator(d).reshape(-1)
            if cross is not None:
                cross += (g @ (l2_diag[n].reshape(-1) * inverse)).double()
            g = g.square()
            quad += (g @ inverse).double()
            norm_sq += g.sum(1).double()
        # undo the per-example normalisation of the backward pass (see FactorTracker.draws)
        quad, norm_sq = quad * draw.scale ** 2, norm_sq * draw.scale ** 2
        if cross is not None:
            cross = cross * draw.scale
        return probs, quad, cross, norm_sq

    def _rotated_l2(self, l2_grad: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The L2 gradient per Linear in its eigenbasis, Q_Gᵀ L2 Q_A, and on the diagonal parameters."""
        # by value: the scoring job computes the L2 gradient afresh for every chunk of batches, and
        # rotating it (and the truncated Linears' products with it) costs ~0.3 s each time
        if self._l2_cache is None or not (self._l2_cache[0] is l2_grad or torch.equal(self._l2_cache[0], l2_grad)):
            parts = unflatten(l2_grad, self.solver.params)
            blocks = [b.q_g.T @ b.matrix(parts) @ b.q_a for b in self.solver.blocks]
            self._l2_cache = (l2_grad, blocks, {n: parts[n] for n in self.solver.diagonal})
        return self._l2_cache[1], self._l2_cache[2]

    def _quadratic_forms(self, factors: list[Factors | None], l2_blocks: list[Tensor] | None, batch: int,
                         device: torch.device) -> tuple[Tensor, Tensor | None, Tensor]:
        """Per example, Σ over Linears of Σ_oi rotated²/(Λ + λ) and (with ``l2_blocks``, the L2
        gradient in the eigenbasis) Σ_oi rotated·l2/(Λ + λ), and Σ over Linears of ‖DW‖², float64 [B]
        (a truncated Linear's from the Gram matrices its form computes anyway). One live token: the outer-product form (g Q_G)² W (a Q_A)², a matrix product instead
        of per-example tiles."""
        inverses = self.solver.inverse_eigenvalues()
        plans = self.plans()
        quad = torch.zeros(batch, dtype=torch.float64, device=device)
        norms = torch.zeros_like(quad)
        cross = torch.zeros_like(quad) if l2_blocks is not None else None
        for i, ag in enumerate(factors):
            if ag is None:
                continue
            if plans[i] is not None and ag[0].shape[1] > 1:
                a, g = ag
                q_g, q_a = self.solver.eigenbases(a.dtype)[i]
                m = self._l2_product(i, l2_blocks) if cross is not None else None
                q, c, norm = truncated_quadratic_form(plans[i], a, g, q_a, q_g, rotated_tiles, m)
                quad += q.double()
                norms += norm.double()
                if c is not None:
                    cross += c.double()
                self.truncated_used.add(i)
                continue
            norms += gram_norm_sq(ag)
            rotated_g, rotated_a = self.solver.rotated(i, ag)
            weights = inverses[i].view(rotated_g.shape[2], rotated_a.shape[2])
            if rotated_a.shape[1] == 1:
                acc = accumulation_dtype(rotated_a)
                g1, a1 = rotated_g[:, 0].to(acc), rotated_a[:, 0].to(acc)
                quad += ((g1.square() @ weights) * a1.square()).sum(1).double()
                if cross is not None:
                    cross += ((g1 @ (l2_blocks[i] * weights)) * a1).sum(1).double()
                continue
            flat_weights = inverses[i]
            l2_weighted = (l2_blocks[i].reshape(-1) * flat_weights) if cross is not None else None
            for rows, rotated in rotated_tiles(rotated_g, rotated_a):
                flat = rotated.reshape(rotated.shape[0], -1)
                if cross is not None:
                    cross[rows] += (flat @ l2_weighted).double()
                quad[rows] += (flat.square_() @ flat_weights).double()
        return quad, cross, norms
