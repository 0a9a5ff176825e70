"""A truncated eigenbasis for EK-FAC's scoring pass: the self-influence quadratic form of Eq. 2 on one
``nn.Linear`` with only the top K eigen-directions of its larger side rotated per example (issue #15).

On one Linear the fitted inverse acts on an example's gradient DW in the Kronecker eigenbasis,

    q = Σ_oi r_oi² W_oi,   r = Q_Gᵀ DW Q_A = (g Q_G)ᵀ (a Q_A),   W = 1 / (Λ + 2·l2 + λ),

and rotating every token's g (or a) by a 1536 x 1536 Q costs ~4 forward passes of that layer. But W
is nearly constant along the directions where the curvature Λ is small next to λ (most of them): split
the larger side's directions into the K kept ones (O, where Λ is large) and the rest (R), and on R
replace each W_oi by one weight per index of the other side, u_i, the Λ-weighted mean of W over R:

    q ≈ Σ_{o∈O,i} r_oi² (W_oi − u_i) + Σ_i u_i Σ_{all o} r_oi²,
    Σ_{all o} r_oi² = ‖DW q_i‖² = Σ_{t,s} (g_t·g_s) (a Q_A)_ti (a Q_A)_si     (Q_G is orthogonal),

which needs g Q_G only on O, and for R a T x T Gram matrix per example. The error is
Σ_{o∈R,i} r_oi² (W_oi − u_i); its expectation over the fit's examples (where the mean of r² is Λ)
relative to E[q] is what :func:`truncation_plan` bounds: the smallest K (a multiple of ``step``)
whose expected relative error is at most ``tolerance``. The same holds with the sides swapped when
the input side is the larger (a 1536 -> 384 Linear). Where K would be most of the side, the block
keeps the exact path (None).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

KEEP_MOST = 0.75  # a plan keeping more than this share of the larger side saves too little: exact path


@dataclass
class TruncationPlan:
    """How one Linear's quadratic form is computed on a truncated eigenbasis (see the module docstring).

    ``side``: ``"g"`` (the output side, rows of W, is truncated) or ``"a"`` (the input side, columns).
    ``keep``: indices of the kept eigenvectors of that side (columns of Q_G or Q_A). ``residual``: u,
    one weight per index of the other side. ``kept_weights``: W − u on the kept rows (or columns), flat
    in the order of the per-example tiles. ``expected_error``: E[|q̂ − q|] / E[q] over the fit's examples."""
    side: str
    keep: Tensor
    residual: Tensor
    kept_weights: Tensor
    expected_error: float
    size: int  # the full length of the truncated side


def truncation_plan(inverse: Tensor, curvature: Tensor, tolerance: float, step: int = 32) -> TruncationPlan | None:
    """The plan for one Linear with inverse weights ``inverse`` W [out, in(+1)] and fitted mean squared
    rotated gradients ``curvature`` Λ [out, in(+1)] (EK-FAC's corrected eigenvalues); None when no K
    below ``KEEP_MOST`` of the larger side keeps the expected relative error within ``tolerance``."""
    side = "g" if inverse.shape[0] >= inverse.shape[1] else "a"
    w, lam = (inverse, curvature) if side == "g" else (inverse.T, curvature.T)  # rows: the truncated side
    w, lam = w.double(), lam.double().clamp_min(0)
    order = lam.amax(1).argsort(descending=True)  # the directions where the curvature is largest first
    total = float((lam * w).sum())
    if total <= 0:
        return None
    for k in range(step, int(KEEP_MOST * w.shape[0]) + 1, step):
        rest_lam, rest_w = lam[order[k:]], w[order[k:]]
        mass = rest_lam.sum(0)
        u = torch.where(mass > 0, (rest_lam * rest_w).sum(0) / mass.clamp_min(1e-300), rest_w.mean(0))
        error = float((rest_lam * (rest_w - u).abs()).sum()) / total
        if error <= tolerance:
            keep = order[:k].sort().values
            kept = w[keep] - u  # [k, other]
            kept = kept if side == "g" else kept.T  # the tiles are [out, k] for the input side
            return TruncationPlan(side, keep, u.to(inverse.dtype), kept.reshape(-1).to(inverse.dtype), error,
                                  w.shape[0])
    return None


def truncated_quadratic_form(plan: TruncationPlan, a: Tensor, g: Tensor, q_a: Tensor, q_g: Tensor, tiles,
                             l2_product: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
    """(q̂ [B]; with ``l2_product`` M the exact cross term Σ_t g_tᵀ M a_t [B], else None; ‖DW‖² [B]), in
    at least float32, of one Linear from its token factors a [B, T, in(+1)] and g [B, T, out] with
    eigenbases ``q_a``, ``q_g`` (in the rotation dtype), by ``plan``. ``tiles(rotated_g, rotated_a)``
    yields (example slice, [b, out', in'] rotated gradients), as :func:`.eigenbasis.rotated_tiles`."""
    dtype, acc = q_a.dtype, torch.promote_types(plan.kept_weights.dtype, torch.float32)
    a_acc, g_acc = a.to(acc), g.to(acc)  # one conversion each, shared by the Gram and the cross term
    a, g = a.to(dtype), g.to(dtype)
    # the Gram matrix in at least float32 whatever the rotation dtype: the residual is up to ~10x the
    # form it corrects (the kept part, W − u < 0, takes the difference), so its rounding matters most
    if plan.side == "g":
        gram = g_acc @ g_acc.transpose(1, 2)  # Σ_o over all of Q_G's directions: the Gram of g itself
        full, kept_side = a @ q_a, g @ q_g[:, plan.keep]  # a Q_A [B, T, in], g Q_G on O [B, T, k]
        rotated_g, rotated_a = kept_side, full
    else:
        gram = a_acc @ a_acc.transpose(1, 2)
        full, kept_side = g @ q_g, a @ q_a[:, plan.keep]
        rotated_g, rotated_a = full, kept_side
    out = torch.zeros(a.shape[0], dtype=acc, device=a.device)
    for rows, rotated in tiles(rotated_g, rotated_a):
        out[rows] += rotated.reshape(rotated.shape[0], -1).square_() @ plan.kept_weights.to(rotated.dtype)
    full = full.to(acc)
    weighted = (full * plan.residual.to(acc)) @ full.transpose(1, 2)  # Σ_i u_i x_ti x_si
    out += (gram * weighted).sum((1, 2))
    other = (a_acc @ a_acc.transpose(1, 2)) if plan.side == "g" else (g_acc @ g_acc.transpose(1, 2))
    norm_sq = (gram * other).sum((1, 2))  # ‖DW‖² = Σ_tt' (g_t·g_t')(a_t·a_t'), as gram_norm_sq, one Gram reused
    cross = None
    if l2_product is not None:  # a forward's worth of products: in the rotation dtype (bf16: ~4x faster here)
        cross = ((g @ l2_product.to(dtype)).to(acc) * a_acc).sum((1, 2))
    return out, cross, norm_sq
