"""TRAK self-influence (Park et al. 2023, "TRAK: Attributing Model Behavior at Scale") as a memorization
score: the diagonal of the TRAK kernel on the training set, from projected per-example gradients of the
margin. Pure torch; the projections are in :mod:`.trak_projection`, the data loop in
:mod:`memlab.pipeline.trak`.

Output function (TRAK's f), the margin of the gold class y, with z the logits:

    f(z) = log p_y − log Σ_{c≠y} p_c = z_y − logsumexp_{c≠y} z_c,
    ∂f/∂z_y = 1,   ∂f/∂z_c = −p_c / Σ_{c'≠y} p_{c'}  (c ≠ y)   (= −∇_z CE / (1 − p_y)),

so that ∇θ f(z_i) = −∇θ CE(z_i) / (1 − p_i): an O(1) gradient even for a confidently fitted example.
φ̃_i = ∇θ f(z_i) over θ = the trainable parameters (no L2 term); φ_i = Pᵀ φ̃_i its k-dim projection.

Kernel and self-influence of one model m, with Φ = [φ_1 … φ_N]ᵀ [N, k] over the training set:

    h_i = φ_iᵀ (ΦᵀΦ + λ I)⁻¹ φ_i,     λ = damping_rel · tr(ΦᵀΦ) / k,                     (leverage)
    h_i / (1 − h_i)                   its leave-one-out form (h clipped below 1),
    Q_ii = q_i = 1 − p_i              TRAK's Q, p_i = P(y_i | x_i).

An ensemble of M models (TRAK's averaging over re-trained models):

    trak_i     = mean_m(h_i^m) · mean_m(q_i^m),
    trak_loo_i = mean_m(h_i^m / (1 − h_i^m)) · mean_m(q_i^m).

Higher = more memorized (a larger self-influence). h is invariant to the projection's scale (λ scales
with tr(ΦᵀΦ)), so the first k' columns of a Gaussian k-projection, a k'-projection up to scale, give the
k'-dimensional estimate: :func:`ablation_leverages` reuses one featurisation for a grid of (k', λ).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

H_CLIP = 1.0 - 1e-9  # h/(1-h) needs h < 1; h = 1 only for an instance alone in its direction with λ = 0


def margin(logits: Tensor, labels: Tensor) -> Tensor:
    """f(z) = z_y − logsumexp_{c≠y} z_c [B] (= log p_y − log Σ_{c≠y} p_c), in float64."""
    z = logits.double()
    is_gold = torch.arange(z.shape[-1], device=z.device) == labels.view(-1, 1)
    gold = z.gather(-1, labels.view(-1, 1)).squeeze(-1)
    return gold - torch.logsumexp(z.masked_fill(is_gold, float("-inf")), dim=-1)


def margin_logit_gradient(logits: Tensor, labels: Tensor) -> Tensor:
    """∂f/∂z [B, C] in float64: 1 at y, −p_c / Σ_{c'≠y} p_{c'} elsewhere, from log-probabilities
    (the softmax over the other classes), so that p_y ≈ 1 keeps an O(1) gradient instead of 0/0."""
    log_p = torch.log_softmax(logits.double(), dim=-1)
    is_gold = torch.arange(log_p.shape[-1], device=log_p.device) == labels.view(-1, 1)
    others = torch.softmax(log_p.masked_fill(is_gold, float("-inf")), dim=-1)
    return torch.where(is_gold, torch.ones_like(others), -others)


def _spectrum(features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(eigenvalues s, the features in the eigenbasis [N, r], tr(ΦᵀΦ)) of ΦᵀΦ, float64: the k × k
    eigendecomposition, or the N × N one of ΦΦᵀ when N < k (the same non-zero spectrum)."""
    phi = features.double()
    n, k = phi.shape
    if n < k:  # ΦΦᵀ = U S Uᵀ: Φ V = U S^{1/2}, so (φ_iᵀ v_j)² = U_ij² s_j
        s, u = torch.linalg.eigh(phi @ phi.T)
        s = s.clamp_min(0)
        return s, u * s.sqrt(), s.sum()
    s, v = torch.linalg.eigh(phi.T @ phi)
    s = s.clamp_min(0)
    return s, phi @ v, s.sum()


def _leverage(s: Tensor, rotated: Tensor, trace: Tensor, k: int, damping_rel: float) -> Tensor:
    lam = float(damping_rel) * trace / k
    denom = s + lam
    # λ = 0 on a rank-deficient ΦᵀΦ: the pseudo-inverse (directions without spread carry no leverage)
    tol = s.max().clamp_min(torch.finfo(torch.float64).tiny) * s.numel() * torch.finfo(torch.float64).eps
    inverse = torch.where(denom > tol, 1.0 / denom.clamp_min(tol), torch.zeros_like(denom))
    return rotated.square() @ inverse


def self_influence(features: Tensor, damping_rel: float) -> Tensor:
    """h_i = φ_iᵀ (ΦᵀΦ + λI)⁻¹ φ_i [N] float64 for Φ = ``features`` [N, k], λ = damping_rel · tr(ΦᵀΦ)/k
    (one eigendecomposition, of the k × k matrix or, when N < k, of the N × N Gram matrix)."""
    s, rotated, trace = _spectrum(features)
    return _leverage(s, rotated, trace, features.shape[1], damping_rel)


def leave_one_out(h: Tensor) -> Tensor:
    """h / (1 − h), with h clipped below 1."""
    h = h.double().clamp(max=H_CLIP)
    return h / (1 - h)


def ensemble(leverages: Sequence[Tensor], qs: Sequence[Tensor]) -> dict[str, Tensor]:
    """``trak`` = mean_m(h) · mean_m(q) and ``trak_loo`` = mean_m(h/(1−h)) · mean_m(q) over the M models'
    leverages h^m and q^m = 1 − p^m (each [N], the same instance order)."""
    h = torch.stack([t.double() for t in leverages])
    q = torch.stack([t.double() for t in qs]).mean(0)
    return {"trak": h.mean(0) * q, "trak_loo": leave_one_out(h).mean(0) * q}


def ablation_leverages(features: Tensor, proj_dims: Iterable[int], damping_rels: Iterable[float]
                       ) -> dict[tuple[int, float], Tensor]:
    """{(k', damping_rel): h [N]} from the first k' columns of ``features`` (a k'-projection when the
    projection is Gaussian): one eigendecomposition per k', any number of λ."""
    out = {}
    rels = [float(r) for r in damping_rels]
    for k in sorted({int(d) for d in proj_dims}):
        if not 0 < k <= features.shape[1]:
            raise ValueError(f"ablation proj_dim {k} is outside 1..{features.shape[1]}")
        s, rotated, trace = _spectrum(features[:, :k])
        for rel in rels:
            out[(k, rel)] = _leverage(s, rotated, trace, k, rel)
    return out
