"""Memorization scores: the self-influence of paper Eq. 2 for every training example, streamed.

    M(z) = −∇θP(y|x)ᵀ (H + λI)⁻¹ ∇θL(z)                                            (Eq. 2)

Since ∇θP = −P·∇θCE for the cross-entropy, M(z) = P(y|x)·∇CEᵀ A ∇L(z) with A = (H + λI)⁻¹. As in the
study's code, ∇P comes from the cross-entropy alone while ∇L(z) also carries the L2 term when
``TrainingObjective.l2_in_example_grad`` (the study): with g_l2 = ∇(l2·Σp²) = 2·l2·θ on the covered
parameters,

    M(z) = P(y|x) · (∇CEᵀ A ∇CE + ∇CEᵀ A g_l2).

Removing z from n training examples changes its own P(y|x) by about −M(z)/n (Appendix A, ε = 1/n).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from .functional import Params, TrainingObjective, flatten, gold_loss, gold_probability, per_example_grads
from .solver.base import InverseHessianSolver
from .solver.sampling import eval_mode, params_device, to_device


def l2_gradient(params: Params, objective: TrainingObjective) -> Tensor | None:
    """g_l2 = ∇θ(l2·Σ p²) = 2·l2·θ on ``objective.l2_names`` (zero elsewhere) as a flat [P] vector;
    None when the L2 term is absent or not part of each example's gradient."""
    if objective.l2 == 0.0 or not objective.l2_in_example_grad:
        return None
    return flatten({n: (2 * objective.l2 * p if n in objective.l2_names else torch.zeros_like(p))
                    for n, p in params.items()})


def self_influence(solver: InverseHessianSolver, grads_ce: Tensor, probs: Tensor, labels: Tensor,
                   l2_grad: Tensor | None = None) -> Tensor:
    """[B] memorization scores M(z) (Eq. 2) from per-example cross-entropy gradients ``grads_ce``
    [B, P], predicted probabilities ``probs`` [B, C] and gold ``labels`` [B].

    A is applied to ∇P (i.e. to ∇CE), as the study's code did, and dotted with ∇CE + ``l2_grad``.
    """
    solved = solver.solve(grads_ce)
    total = (solved * grads_ce).sum(-1)
    if l2_grad is not None:
        total = total + solved @ l2_grad.to(solved.dtype)
    return gold_probability(probs, labels).to(total.dtype) * total


def _ce_only(objective: TrainingObjective) -> TrainingObjective:
    return dataclasses.replace(objective, l2_in_example_grad=False)


def memorization_scores(module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
                        solver: InverseHessianSolver, objective: TrainingObjective = TrainingObjective(),
                        progress: Callable[[int], None] | None = None, chunk_size: int | None = None,
                        fast: bool = True) -> Iterator[dict[str, Tensor]]:
    """Stream Eq. 2 over ``batches`` with a fitted ``solver``: one dict of CPU tensors per batch,

        sample_index, label, prob (P(y|x)), prediction, loss (cross-entropy), grad_norm_sq (‖∇CE‖²),
        mem_score (M(z)),

    never holding more than one batch (or ``chunk_size`` examples) of per-example gradients.
    ``progress(n_done)`` is called after every batch with the number of examples scored so far.
    ``fast`` lets a solver with its own per-batch path (ekfac) skip the flat gradients; same result.
    """
    device = params_device(params)
    l2_grad = l2_gradient(params, objective)
    ce_objective = _ce_only(objective)
    # a solver's own per-batch path (token factors through hooks) needs it bound to this very model
    fast_path = getattr(solver, "self_influence_terms", None) if fast and solver.module is module else None
    done = 0
    with eval_mode(module):
        for batch in batches:
            batch = to_device(batch, device)
            n = len(batch["labels"])
            index = batch.get("sample_index", torch.arange(done, done + n, device=device))
            step = chunk_size or n
            out: dict[str, list[Tensor]] = {k: [] for k in ("prob", "prediction", "loss", "grad_norm_sq", "mem_score")}
            for start in range(0, n, step):
                chunk = {k: v[start:start + step] for k, v in batch.items()}
                labels = chunk["labels"]
                if fast_path is not None:
                    probs, quad, cross, norm_sq = fast_path(chunk, l2_grad)
                    total = quad if cross is None else quad + cross
                    score = gold_probability(probs, labels).to(total.dtype) * total
                else:
                    grads, probs = per_example_grads(module, params, chunk, ce_objective)
                    score = self_influence(solver, grads, probs, labels, l2_grad)
                    norm_sq = (grads ** 2).sum(-1)
                    del grads
                p = gold_probability(probs, labels)
                out["prob"].append(p)
                out["prediction"].append(probs.argmax(-1))
                out["loss"].append(gold_loss(probs, labels))
                out["grad_norm_sq"].append(norm_sq)
                out["mem_score"].append(score)
            done += n
            result = {"sample_index": index.detach().cpu(), "label": batch["labels"].detach().cpu()}
            result.update({k: torch.cat(v).detach().cpu() for k, v in out.items()})
            if progress is not None:
                progress(done)
            yield result
