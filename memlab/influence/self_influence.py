"""Memorization scores: the self-influence of paper Eq. 2 for every training example, streamed.

    M(z) = −∇θP(y|x)ᵀ (H + λI)⁻¹ ∇θL(z)                                            (Eq. 2)

Since ∇θP = −P·∇θCE for the cross-entropy, M(z) = P(y|x)·∇CEᵀ A ∇L(z) with A = (H + λI)⁻¹. As in the
study's code, ∇P comes from the cross-entropy alone while ∇L(z) also carries the L2 term when
``TrainingObjective.l2_in_example_grad`` (the study): with g_l2 = ∇(l2·Σp²) = 2·l2·θ on the covered
parameters,

    M(z) = P(y|x) · (∇CEᵀ A ∇CE + ∇CEᵀ A g_l2).

Removing z from n training examples changes its own P(y|x) by about −M(z)/n (Appendix A, ε = 1/n).

H is the mean over ALL training instances, z included: it holds z's own Gauss-Newton term
(1/n)·GGN(z). A solver whose H is a population estimate (EK-FAC fitted on a sample: its Kronecker
structure cannot hold a rank-one spike; Arnoldi's top eigenspace) lacks it, and with small λ that
term decides z's self-influence. :func:`with_own_term` adds it back exactly (Sherman–Morrison);
the score without it is kept as ``loo_score``: −loo_score/n is the change of P(y|x) when z is
removed, by one Newton step on the objective without z (H_{−z} in place of H).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import Tensor, nn

from .functional import (Params, TrainingObjective, flatten, gold_loss, gold_probability, other_probability,
                         per_example_grads)
from .solver.base import InverseHessianSolver
from .sampling import eval_mode, params_device, to_device


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
    _, total = _quadratic_terms(solver, grads_ce, l2_grad)
    return gold_probability(probs, labels).to(total.dtype) * total


def _quadratic_terms(solver: InverseHessianSolver, grads_ce: Tensor, l2_grad: Tensor | None) -> tuple[Tensor, Tensor]:
    """(∇CEᵀA∇CE, ∇CEᵀA(∇CE + g_l2)) per example [B], A = (H + λI)⁻¹ applied once."""
    solved = solver.solve(grads_ce)
    quad = (solved * grads_ce).sum(-1)
    return quad, (quad if l2_grad is None else quad + solved @ l2_grad.to(solved.dtype))


def with_own_term(score: Tensor, quad: Tensor, probs: Tensor, labels: Tensor, n_train: int) -> Tensor:
    """Eq. 2 with z's own curvature term (1/n)·GGN(z) added to the solver's H, by Sherman–Morrison.

    Writing the cross-entropy as L = softplus(m), m = logsumexp_{c≠y} z_c − z_y, the Gauss-Newton
    term of z through m is P(1−P)·∇m∇mᵀ = P/(1−P)·∇L∇Lᵀ (exactly z's GGN for two classes; its
    y-vs-rest part for more). With q = ∇LᵀA∇L (``quad``) and w = P/((1−P)·n), every quadratic form
    through A = (H + λI)⁻¹ shrinks by the same factor, so

        M'(z) = M(z) / (1 + w·q),     M'(z) < n·(1 − P)·(1 + ∇LᵀA g_l2 / q).

    ``score`` is M(z) [B] without the term, ``quad`` its q [B] (float64). 1 − P is taken as
    Σ_{c≠y} P(c) so that confident instances keep their order.
    """
    probs = probs.double()
    p = gold_probability(probs, labels)
    rest = other_probability(probs, labels)
    safe_rest = torch.where(rest > 0, rest, torch.ones_like(rest))
    shrink = torch.where(rest > 0, 1.0 + p * quad.double() / (safe_rest * n_train), torch.ones_like(rest))
    return score.double() / shrink


def _ce_only(objective: TrainingObjective) -> TrainingObjective:
    return dataclasses.replace(objective, l2_in_example_grad=False)


def memorization_scores(module: nn.Module, params: Params, batches: Iterable[Mapping[str, Tensor]],
                        solver: InverseHessianSolver, objective: TrainingObjective = TrainingObjective(),
                        progress: Callable[[int], None] | None = None, chunk_size: int | None = None,
                        fast: bool = True, own_term_n: int | None = None) -> Iterator[dict[str, Tensor]]:
    """Stream Eq. 2 over ``batches`` with a fitted ``solver``: one dict of CPU tensors per batch,

        sample_index, label, prob (P(y|x)), prediction, loss (cross-entropy), grad_norm_sq (‖∇CE‖²),
        mem_score (M(z)),

    never holding more than one batch (or ``chunk_size`` examples) of per-example gradients.
    ``progress(n_done)`` is called after every batch with the number of examples scored so far.
    ``fast`` lets a solver with its own per-batch path (ekfac) skip the flat gradients; same result.
    ``own_term_n`` (the number n of training instances): the solver's H lacks each instance's own
    term; add it (:func:`with_own_term`) and also return the score without it as ``loo_score``.
    """
    device = params_device(params)
    l2_grad = l2_gradient(params, objective)
    ce_objective = _ce_only(objective)
    # a solver's own per-batch path (token factors through hooks) needs it bound to this very model
    own_path = fast and solver.module is module and solver.has_self_influence_terms
    done = 0
    with eval_mode(module):
        for batch in batches:
            batch = to_device(batch, device)
            n = len(batch["labels"])
            index = batch.get("sample_index", torch.arange(done, done + n, device=device))
            step = chunk_size or n
            keys = ("prob", "prediction", "loss", "grad_norm_sq", "mem_score") + (("loo_score",) if own_term_n else ())
            out: dict[str, list[Tensor]] = {k: [] for k in keys}
            for start in range(0, n, step):
                chunk = {k: v[start:start + step] for k, v in batch.items()}
                labels = chunk["labels"]
                if own_path:
                    probs, quad, cross, norm_sq = solver.self_influence_terms(chunk, l2_grad)
                    total = quad if cross is None else quad + cross
                    score = gold_probability(probs, labels).to(total.dtype) * total
                else:
                    grads, probs = per_example_grads(module, params, chunk, ce_objective)
                    quad, total = _quadratic_terms(solver, grads, l2_grad)
                    score = gold_probability(probs, labels).to(total.dtype) * total
                    norm_sq = (grads ** 2).sum(-1)
                    del grads
                if own_term_n:
                    out["loo_score"].append(score)
                    score = with_own_term(score, quad, probs, labels, own_term_n)
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
