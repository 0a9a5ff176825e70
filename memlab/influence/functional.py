"""Functional view of a trainable model: the per-example loss, gradients and Hessian-vector products
that every influence computation in memlab is built from (pure torch, torch.func).

The model is any ``nn.Module`` whose ``forward(**features)`` returns logits ``[B, C]``; a batch is a
dict of tensors with a ``labels`` entry and the module's keyword inputs. θ is the dict of the
module's trainable parameters (or a chosen subset); everything else is held fixed.

    objective = TrainingObjective(l2=5e-3, l2_names=default_l2_names(model))
    params = trainable_params(model)
    grads, probs = per_example_grads(model, params, batch, objective)   # [B, P], [B, C]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

Params = dict[str, Tensor]


@dataclass(frozen=True)
class TrainingObjective:
    """The training loss L(z) = CE(f_θ(x), y) + l2 · Σ_{p in l2_names} p² (the study's explicit L2 term).

    The L2 term enters the mean Hessian H and, when ``l2_in_example_grad`` (the study's code),
    every example's gradient ∇θL(z) as well.
    """

    l2: float = 0.0
    l2_names: frozenset[str] = field(default_factory=frozenset)
    l2_in_example_grad: bool = True

    def l2_penalty(self, params: Mapping[str, Tensor]) -> Tensor | float:
        if self.l2 == 0.0:
            return 0.0
        return self.l2 * sum((params[n] ** 2).sum() for n in self.l2_names if n in params)


def default_l2_names(module: nn.Module, names: Iterable[str] | None = None) -> frozenset[str]:
    """Weights of the trainable parameters that the study's L2 term covers: not biases, not LayerNorm."""
    chosen = set(names) if names is not None else None
    out = set()
    for n, p in module.named_parameters():
        if not p.requires_grad or (chosen is not None and n not in chosen):
            continue
        lname = n.lower()
        if n.endswith("bias") or "layernorm" in lname or "layer_norm" in lname or ".ln" in lname or p.ndim < 2:
            continue
        out.add(n)
    return frozenset(out)


def trainable_params(module: nn.Module, names: Iterable[str] | None = None) -> Params:
    """θ as a dict of detached tensors: the module's ``requires_grad`` parameters, or ``names``."""
    if names is not None:
        named = dict(module.named_parameters())
        return {n: named[n].detach() for n in names}
    return {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}


def split_batch(batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """(model keyword inputs, labels) of a memlab batch; non-tensor entries are dropped."""
    feats = {k: v for k, v in batch.items() if k not in ("labels", "sample_index") and torch.is_tensor(v)}
    return feats, batch["labels"]


def logits_fn(module: nn.Module, params: Params, features: Mapping[str, Tensor]) -> Tensor:
    """f_θ(x) with θ = ``params`` (the remaining parameters and buffers as in ``module``)."""
    return functional_call(module, params, args=(), kwargs=dict(features), strict=False)


def cross_entropy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """CE(z, y) = softplus(logsumexp_{c≠y}(z_c − z_y)): the cross-entropy, written so that neither its
    value nor its gradient cancels when P(y|x) rounds to 1.

    ``F.cross_entropy``'s gradient at the gold logit is P(y|x) − 1, which is exactly 0 in float32 once
    the margin exceeds ~17; a confidently fitted model then gets a self-influence of exactly 0 for a
    quarter of SST-2 and the bottom of the ranking is arbitrary. Here that gradient is −sigmoid(m), and
    the loss is computed in float64. Same value as ``F.cross_entropy`` elsewhere; twice differentiable.
    """
    z = logits.double()
    gold = z.gather(-1, labels.view(-1, 1))
    is_gold = torch.arange(z.shape[-1], device=z.device) == labels.view(-1, 1)
    others = (z - gold).masked_fill(is_gold, float("-inf"))
    losses = F.softplus(torch.logsumexp(others, dim=-1)).to(logits.dtype)
    if reduction == "none":
        return losses
    return losses.sum() if reduction == "sum" else losses.mean()


def gold_loss(probs: Tensor, labels: Tensor) -> Tensor:
    """−log P(y|x) in float64 from ``probs`` [B, C], via 1 − P(y|x) = Σ_{c≠y} P(c|x) when P(y|x) is
    close to 1 (no cancellation: a loss of 1e-12 stays 1e-12 instead of 0)."""
    probs = probs.double()
    p = gold_probability(probs, labels)
    return torch.where(p > 0.5, -torch.log1p(-other_probability(probs, labels)),
                       -torch.log(p.clamp_min(torch.finfo(torch.float64).tiny)))


def other_probability(probs: Tensor, labels: Tensor) -> Tensor:
    """1 − P(y|x) as Σ_{c≠y} P(c|x): exact where 1 − P(y|x) would round to 0."""
    return probs.scatter(1, labels.view(-1, 1), 0.0).sum(-1)


def batch_loss(module: nn.Module, params: Params, batch: Mapping[str, Tensor], objective: TrainingObjective) -> Tensor:
    """Mean training loss over a batch, L2 term included: the function whose Hessian is H."""
    feats, labels = split_batch(batch)
    return cross_entropy(logits_fn(module, params, feats), labels) + objective.l2_penalty(params)


def _example_loss(module, objective, params, feats, label):
    feats = {k: v.unsqueeze(0) for k, v in feats.items()}
    logits = logits_fn(module, params, feats)
    loss = cross_entropy(logits, label.unsqueeze(0))
    if objective.l2_in_example_grad:
        loss = loss + objective.l2_penalty(params)
    return loss, logits.detach().double().softmax(-1)[0]


def flatten(tensors: Mapping[str, Tensor] | Iterable[Tensor], batch_dims: int = 0) -> Tensor:
    """Concatenate parameter-shaped tensors into one vector (keeping ``batch_dims`` leading dims)."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return torch.cat([t.reshape(*t.shape[:batch_dims], -1) for t in values], dim=-1)


def unflatten(vector: Tensor, like: Params) -> Params:
    """Inverse of :func:`flatten` for a vector (or ``[..., P]`` batch of vectors) shaped like ``like``."""
    out, start = {}, 0
    lead = vector.shape[:-1]
    for n, p in like.items():
        out[n] = vector[..., start:start + p.numel()].reshape(*lead, *p.shape)
        start += p.numel()
    return out


def num_params(params: Params) -> int:
    return sum(p.numel() for p in params.values())


def per_example_grads(module: nn.Module, params: Params, batch: Mapping[str, Tensor],
                      objective: TrainingObjective = TrainingObjective(), flat: bool = True):
    """∇θL(z_i) for every example of a batch (torch.func.vmap over grad), and P(·|x_i).

    Returns ``(grads, probs)``: grads ``[B, P]`` when ``flat`` else a dict of ``[B, *shape]``.
    Stream batches through this function: a whole training set of gradients does not fit in memory.
    """
    feats, labels = split_batch(batch)
    g = grad(lambda p, f, y: _example_loss(module, objective, p, f, y), has_aux=True)
    grads, probs = vmap(g, in_dims=(None, 0, 0))(params, feats, labels)
    return (flatten(grads, batch_dims=1) if flat else grads), probs


def gold_probability(probs: Tensor, labels: Tensor) -> Tensor:
    """P(y|x) of the gold label."""
    return probs.gather(1, labels.view(-1, 1)).squeeze(1)


def hvp_many(module: nn.Module, params: Params, batch: Mapping[str, Tensor], vectors: Tensor,
             objective: TrainingObjective = TrainingObjective()) -> Tensor:
    """H_b V for a ``[k, P]`` block of vectors (forward-over-reverse, vmapped tangents)."""
    grad_fn = grad(lambda p: batch_loss(module, p, batch, objective))
    # vmap over jvp(grad): ~20x faster on CPU than torch.func.linearize, which re-traces every call
    return vmap(lambda v: flatten(jvp(grad_fn, (params,), (unflatten(v, params),))[1]))(vectors)


def dense_hessian(module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
                  objective: TrainingObjective = TrainingObjective()) -> Tensor:
    """The exact mean Hessian ``[P, P]`` of the training loss over ``batches`` (small models only)."""
    # built from HVPs on the identity (forward-over-reverse), not torch.func.hessian: in torch 2.14
    # jacfwd(jacrev) gets the mixed input/affine-weight second derivatives of layer_norm wrong
    total, count = None, 0
    dim = num_params(params)
    eye = torch.eye(dim, dtype=next(iter(params.values())).dtype, device=next(iter(params.values())).device)
    for batch in batches:
        n = len(batch["labels"])
        h = torch.cat([hvp_many(module, params, batch, eye[i:i + 256], objective) for i in range(0, dim, 256)]) * n
        total = h if total is None else total + h
        count += n
    return total / count
