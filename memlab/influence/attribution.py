"""Memorization attribution (paper Eq. 5, Appendix B Eq. 20-23): split M_replace(z) over input positions.

For an instance z = (X, y), a baseline X' (all-[MASK] input for text, zeros for image features) and
s = (H + λI)⁻¹ ∇θP(y|x) (a flat vector in :func:`memlab.influence.functional.flatten` order):

    M_replace(z) = -sᵀ(∇θL(X) - ∇θL(X'))                                        (Eq. 4 / 21)
    r = ∫₀¹ ∂/∂X [sᵀ∇θL(X' + α(X - X'))] dα                                     (Eq. 22)
    attribution_t = -Σ_l r_tl (X - X')_tl,   Σ_t attribution_t → M_replace(z)   (Eq. 5 / 23)

X is one keyword input of the module (``input_key``): ``"hidden"`` (layer-k hidden states feeding a
transformer suffix, the study's placement), ``"inputs_embeds"`` (word embeddings, the paper's text) or
``"features"`` (ResNet grid features [2048, 7, 7] of the image MLP). Every other input (attention mask,
input ids) is held fixed along the path.

The integral is a quadrature over α (``rule``): ``"left"`` is the study's 50-point left Riemann sum
α ∈ {0, 1/50, …, 49/50}; ``"trapezoid"`` and ``"gauss_legendre"`` converge faster. The mixed derivative
∂/∂X[sᵀ∇θL] is computed per α point either forward-over-reverse (a jvp over θ in direction s of
∇_X L, the default: faster) or by double backward; all α points of an instance form one batch.
(Reverse-over-forward, a grad over X of a θ-jvp, is not offered: in torch 2.14 torch.func returns
wrong values for it when the tangent runs through a LayerNorm weight.)

Completeness (Σ_t attribution_t = M_replace) holds in the limit of many steps only if sᵀ∇θL is
continuous along the path; a ReLU whose pre-activation changes sign on the path makes it jump (the
study's image MLP with biases), and the jump is not attributed to any position.

The L2 term of the training objective does not depend on the input, so it cancels from
∇θL(X) - ∇θL(X') exactly and is left out of both r and M_replace.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

from .functional import Params, TrainingObjective, logits_fn, unflatten
from .sampling import eval_mode

QUADRATURE_RULES = ("left", "trapezoid", "gauss_legendre")
MIXED_DERIVATIVES = ("forward_over_reverse", "double_backward")
NON_MODEL_KEYS = ("labels", "sample_index")


@dataclass
class AttributionResult:
    """Attribution of one instance (or a batch of ``n`` instances, then every field has a leading ``n``).

    attributions: per position: ``[T]`` tokens, ``[7, 7]`` grid cells (``[49]`` if flattened).
    total: Σ attributions (Eq. 5's right-hand side, by quadrature).
    replace_score: M_replace(z) (Eq. 4), computed directly.
    completeness_gap: |total - replace_score| / |replace_score|.
    """

    attributions: Tensor
    total: Tensor
    replace_score: Tensor
    completeness_gap: Tensor

    def __getitem__(self, i: int) -> "AttributionResult":
        """The ``i``-th instance of a batched result."""
        return AttributionResult(self.attributions[i], self.total[i], self.replace_score[i],
                                 self.completeness_gap[i])


def path_quadrature(steps: int, rule: str = "left", dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Nodes α and weights w with Σ_j w_j f(α_j) ≈ ∫₀¹ f(α) dα, the quadrature of Eq. 22's path integral.

    ``left``: α_j = j/steps (j = 0..steps-1), w = 1/steps (the study's Riemann sum, error O(1/steps)).
    ``trapezoid``: α_j = j/(steps-1), both ends included (O(1/steps²)).
    ``gauss_legendre``: Golub-Welsch nodes on [0, 1] (exact for polynomials of degree 2·steps-1).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if rule == "left":
        alphas = torch.arange(steps, dtype=torch.float64) / steps
        weights = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    elif rule == "trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs steps >= 2")
        alphas = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / (steps - 1)
    elif rule == "gauss_legendre":
        k = torch.arange(1, steps, dtype=torch.float64)
        off_diagonal = k / torch.sqrt(4.0 * k ** 2 - 1.0)
        jacobi = torch.diag(off_diagonal, 1) + torch.diag(off_diagonal, -1)
        nodes, vectors = torch.linalg.eigh(jacobi)
        alphas = (nodes + 1.0) / 2.0
        weights = vectors[0] ** 2  # 2·v₀² on [-1, 1], halved for [0, 1]
    else:
        raise ValueError(f"unknown quadrature rule {rule!r}; choose from {QUADRATURE_RULES}")
    return alphas.to(dtype), weights.to(dtype)


def _model_inputs(inputs: Mapping[str, Tensor], input_key: str) -> tuple[Tensor, dict[str, Tensor]]:
    if input_key not in inputs:
        raise KeyError(f"input_key {input_key!r} is not among the inputs {sorted(inputs)}")
    fixed = {k: v for k, v in inputs.items()
             if k != input_key and k not in NON_MODEL_KEYS and torch.is_tensor(v)}
    return inputs[input_key], fixed


def _position_sum_dims(position_shape_ndim: int, sum_dims: Sequence[int] | None) -> tuple[int, ...]:
    """Which per-instance dims of X are summed into one score: the hidden dim of [T, d] (last), the
    channel dim of [C, H, W] (first)."""
    if sum_dims is not None:
        return tuple(sum_dims)
    if position_shape_ndim == 2:
        return (-1,)
    if position_shape_ndim == 3:
        return (0,)
    raise ValueError(f"cannot guess the feature dim of a {position_shape_ndim}-D input; pass sum_dims")


class _PathIntegrand:
    """∂/∂X [sᵀ∇θL(X_α)] for a batch of α points of one instance (the integrand of Eq. 22)."""

    def __init__(self, module: nn.Module, params: Params, input_key: str, derivative: str):
        if derivative not in MIXED_DERIVATIVES:
            raise ValueError(f"unknown derivative {derivative!r}; choose from {MIXED_DERIVATIVES}")
        self.module, self.params, self.input_key, self.derivative = module, params, input_key, derivative

    def summed_loss(self, params: Params, points: Tensor, fixed: Mapping[str, Tensor], label: Tensor) -> Tensor:
        # Summed (not averaged) over the α points: each point's X only enters its own term, so
        # ∂/∂X_j of the sum is ∂/∂X_j of L(X_j).
        count = points.shape[0]
        features = {k: v.unsqueeze(0).expand(count, *v.shape) for k, v in fixed.items()}
        features[self.input_key] = points
        logits = logits_fn(self.module, params, features)
        return F.cross_entropy(logits, label.expand(count), reduction="sum")

    def weighted_sum(self, direction: Params, x: Tensor, baseline: Tensor, fixed: Mapping[str, Tensor],
                     label: Tensor, alphas: Tensor, weights: Tensor) -> Tensor:
        """Σ_j w_j ∂/∂X[sᵀ∇θL](X' + α_j (X - X')), shaped like X."""
        shape = (-1,) + (1,) * x.dim()
        points = baseline.unsqueeze(0) + alphas.view(shape) * (x - baseline).unsqueeze(0)
        if self.derivative == "forward_over_reverse":
            grad_x = grad(self.summed_loss, argnums=1)
            _, mixed = jvp(lambda p: grad_x(p, points, fixed, label), (self.params,), (direction,))
        else:
            def directional(pts):
                g = grad(self.summed_loss, argnums=0)(self.params, pts, fixed, label)
                return sum((g[n] * direction[n]).sum() for n in g)
            mixed = grad(directional)(points)
        return (weights.view(shape) * mixed).sum(0)


def replace_scores(module: nn.Module, params: Params, s: Tensor, inputs: Mapping[str, Tensor],
                   baselines: Tensor, labels: Tensor, input_key: str = "hidden", batch_size: int = 32) -> Tensor:
    """M_replace(z) = -sᵀ(∇θL(z) - ∇θL(z')) (paper Eq. 4 / Appendix B Eq. 21) for a batch.

    ``s`` [n, P], ``inputs`` batched [n, ...], ``baselines`` shaped like ``inputs[input_key]``, ``labels``
    [n]. Each sᵀ(∇θL(z) - ∇θL(z')) is one forward-mode directional derivative over the pair (X, X')
    (no [n, P] gradient matrix); the objective's L2 term cancels in the difference and is left out.
    """
    x, fixed = _model_inputs(inputs, input_key)
    x, baselines = x.detach(), baselines.detach()
    directions = unflatten(s.to(x.dtype), params)
    labels = torch.as_tensor(labels, device=x.device).view(-1)

    def one(direction, xi, bi, fixed_i, label):
        def loss_difference(p):
            feats = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in fixed_i.items()}
            feats[input_key] = torch.stack([xi, bi])
            losses = F.cross_entropy(logits_fn(module, p, feats), label.expand(2), reduction="none")
            return losses[0] - losses[1]
        return -jvp(loss_difference, (params,), (direction,))[1]

    scores = []
    with eval_mode(module):
        for start in range(0, len(x), batch_size):
            idx = slice(start, start + batch_size)
            scores.append(vmap(one)({k: v[idx] for k, v in directions.items()}, x[idx], baselines[idx],
                                    {k: v[idx] for k, v in fixed.items()}, labels[idx]).detach())
    return torch.cat(scores)


def memorization_attributions(module: nn.Module, params: Params, s: Tensor, inputs: Mapping[str, Tensor],
                              baselines: Tensor, labels: Tensor, *, input_key: str = "hidden", steps: int = 50,
                              rule: str = "left", objective: TrainingObjective | None = None,
                              batch_alphas: int | None = None, batch_instances: int = 1,
                              derivative: str = "forward_over_reverse", sum_dims: Sequence[int] | None = None,
                              flatten_grid: bool = False) -> AttributionResult:
    """Memorization attribution (paper Eq. 5) of a batch of ``n`` instances; fields get a leading ``n``.

    Args:
        s: [n, P] rows (H + λI)⁻¹∇θP(y|x) of each instance, in ``flatten(params)`` order.
        inputs: the module's keyword inputs, batched [n, ...] (``labels``/``sample_index`` ignored);
            ``inputs[input_key]`` is X, everything else is held fixed along the path.
        baselines: X', shaped like X (layer-k states of the all-[MASK] input, or zeros for images).
        labels: [n] gold labels.
        steps, rule: quadrature of the path integral, see :func:`path_quadrature`.
        objective: accepted for symmetry with the other influence functions; its L2 term cancels.
        batch_alphas: α points per forward pass (default: all ``steps``).
        batch_instances: instances per forward pass (vmapped; each brings its ``batch_alphas`` points).
        derivative: ``"forward_over_reverse"`` (default, faster) or ``"double_backward"``.
        sum_dims: per-instance dims of X summed into a position's score (default: last for [T, d],
            first for [C, H, W]).
        flatten_grid: flatten multi-dim positions (a 7x7 grid -> 49).
    """
    del objective  # the L2 term has no X dependence: it drops out of r and of M_replace
    x, fixed = _model_inputs(inputs, input_key)
    x, baselines = x.detach(), baselines.detach()
    if baselines.shape != x.shape:
        raise ValueError(f"baselines {tuple(baselines.shape)} must be shaped like X {tuple(x.shape)}")
    n = x.shape[0]
    if s.shape != (n, sum(p.numel() for p in params.values())):
        raise ValueError(f"s must be [n, P] = [{n}, {sum(p.numel() for p in params.values())}], got {tuple(s.shape)}")
    labels = torch.as_tensor(labels, device=x.device).view(n)
    alphas, weights = path_quadrature(steps, rule, dtype=x.dtype)
    alphas, weights = alphas.to(x.device), weights.to(x.device)
    chunk = batch_alphas or steps
    integrand = _PathIntegrand(module, params, input_key, derivative)
    directions = unflatten(s.to(x.dtype), params)
    batched_sum = vmap(integrand.weighted_sum, in_dims=(0, 0, 0, 0, 0, None, None))

    r_rows = []
    with eval_mode(module):
        for start in range(0, n, batch_instances):
            idx = slice(start, start + batch_instances)
            args = ({k: v[idx] for k, v in directions.items()}, x[idx], baselines[idx],
                    {k: v[idx] for k, v in fixed.items()}, labels[idx])
            r = None
            for a0 in range(0, steps, chunk):
                part = batched_sum(*args, alphas[a0:a0 + chunk], weights[a0:a0 + chunk]).detach()
                r = part if r is None else r + part
            r_rows.append(r)
    r = torch.cat(r_rows)

    per_element = -(r * (x - baselines)).detach()
    dims = tuple(d + 1 if d >= 0 else d for d in _position_sum_dims(x.dim() - 1, sum_dims))
    attributions = per_element.sum(dim=dims)
    if flatten_grid:
        attributions = attributions.reshape(n, -1)
    total = attributions.reshape(n, -1).sum(-1)
    replace = replace_scores(module, params, s, inputs, baselines, labels, input_key)
    gap = (total - replace).abs() / replace.abs().clamp_min(torch.finfo(replace.dtype).tiny)
    return AttributionResult(attributions, total, replace, gap)


def memorization_attribution(module: nn.Module, params: Params, s: Tensor, inputs: Mapping[str, Tensor],
                             baseline: Tensor, label: int | Tensor, *, input_key: str = "hidden", steps: int = 50,
                             rule: str = "left", objective: TrainingObjective | None = None,
                             batch_alphas: int | None = None, derivative: str = "forward_over_reverse",
                             sum_dims: Sequence[int] | None = None, flatten_grid: bool = False) -> AttributionResult:
    """Memorization attribution (paper Eq. 5) of one instance: tensors without a batch dim.

    ``s`` [P]; ``inputs`` e.g. {"hidden": [T, d], "attention_mask": [T]} or {"features": [2048, 7, 7]};
    ``baseline`` shaped like ``inputs[input_key]``. See :func:`memorization_attributions`.
    """
    batched = {k: v.unsqueeze(0) for k, v in inputs.items() if torch.is_tensor(v) and k not in NON_MODEL_KEYS}
    label_t = torch.as_tensor(label, device=baseline.device).view(1)
    result = memorization_attributions(
        module, params, s.reshape(1, -1), batched, baseline.unsqueeze(0), label_t, input_key=input_key,
        steps=steps, rule=rule, objective=objective, batch_alphas=batch_alphas, batch_instances=1,
        derivative=derivative, sum_dims=sum_dims, flatten_grid=flatten_grid)
    return result[0]


def completeness_rmse(results: AttributionResult) -> float:
    """RMSE between Σ_t attribution_t and M_replace over a batch (the check the study reports)."""
    return math.sqrt(((results.total - results.replace_score) ** 2).mean().item())
