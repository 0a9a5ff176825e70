"""EK-FAC's Kronecker eigenbasis of one ``nn.Linear`` (George et al. 2018): its fitted statistics, and
per-example gradients rotated into it a few examples at a time, shared by the fit
(:mod:`.ekfac`) and the fast self-influence path (:mod:`.ekfac_scoring`).

With A = Q_A Λ_A Q_Aᵀ and G = Q_G Λ_G Q_Gᵀ the Kronecker factors of the layer, one example's
gradient DW = Σ_t g_t a_tᵀ in the eigenbasis is

    Q_Gᵀ DW Q_A = (g Q_G)ᵀ (a Q_A),

a [out, in(+1)] matrix per example, whose squares the fit averages into the corrected eigenvalues Λ.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from ..tracking import LinearBlock

TILE_FLOATS = 5 << 18  # per-example rotated gradients per tile: ~5 MB of float32 (measured: 2 examples of a
# [1536, 385] block per tile take half the time of 4 on this 2-core EPYC; the cliff is the cache size)


@dataclass
class EigenBlock(LinearBlock):
    """A Linear of θ with its fitted eigenbasis (Q_A, Q_G) and corrected eigenvalues Λ."""
    q_a: Tensor | None = None
    q_g: Tensor | None = None
    corrected: Tensor | None = None  # Λ [out, in(+1)]: the Fisher's eigenvalues in the Kronecker eigenbasis
    l2_cover: Tensor | None = None   # [in(+1)]: diagonal of the L2 mask in the rotated input basis

    def eigenvalues(self, l2: float) -> Tensor:
        """[out, in(+1)] eigenvalues of H's approximation on this Linear, the L2 term 2·l2 included."""
        if self.l2_cover is None:
            return self.corrected
        return self.corrected + 2 * l2 * self.l2_cover


def eigenvectors(matrix: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Eigenvectors of a symmetric PSD factor, in ``dtype`` (the model's, at least float32): a float32
    model's basis is float32 anyway, and float32 ``eigh`` takes 0.20 s instead of 0.36 s on a 1536 x 1536
    factor here (orthonormal to 3e-6); where eigenvalues nearly coincide, any basis of their subspace
    serves, since EK-FAC re-fits the eigenvalues in the basis it is given."""
    matrix = (matrix + matrix.T) / 2
    return torch.linalg.eigh(matrix.to(torch.promote_types(dtype, torch.float32)))[1]


def accumulation_dtype(rotated: Tensor) -> torch.dtype:
    """Squares and sums of rotated gradients: at least float32 (bfloat16 rotations), else their own dtype."""
    return torch.promote_types(rotated.dtype, torch.float32)


def rotated_tiles(rotated_g: Tensor, rotated_a: Tensor) -> Iterator[tuple[slice, Tensor]]:
    """Per-example gradients of one Linear in its eigenbasis, from g Q_G [B, T, out] and a Q_A
    [B, T, in(+1)], as (example slice, [b, out, in(+1)]) tiles (at least float32) of a few examples,
    small enough that squaring and reducing a tile happen in cache (a [32, 384, 1537] block is 75 MB;
    memory traffic, not FLOPs, was the cost)."""
    rotated_g = rotated_g.transpose(1, 2)
    tile = max(1, TILE_FLOATS // (rotated_g.shape[1] * rotated_a.shape[2]))
    for start in range(0, rotated_a.shape[0], tile):
        rows = slice(start, start + tile)
        yield rows, torch.bmm(rotated_g[rows], rotated_a[rows]).to(accumulation_dtype(rotated_a))


def summed_squares(rotated_g: Tensor, rotated_a: Tensor) -> Tensor:
    """Σ over the batch's examples of the squared rotated gradient [out, in(+1)] of one Linear.
    With one live token (a transformer's last layer outside key/value) DW is an outer product
    and the sum of squares is one matrix product, (g Q_G)²ᵀ (a Q_A)²."""
    acc = accumulation_dtype(rotated_a)
    if rotated_a.shape[1] == 1:
        return rotated_g[:, 0].to(acc).square().T @ rotated_a[:, 0].to(acc).square()
    total = torch.zeros(rotated_g.shape[2], rotated_a.shape[2], device=rotated_a.device, dtype=acc)
    for _, rotated in rotated_tiles(rotated_g, rotated_a):
        total += rotated.square_().sum(0)
    return total
