"""EK-FAC on real transformer blocks (issue 27): a tiny RoBERTa encoder and a tiny GPT-2 decoder (whose
Conv1D weights are stored [in, out]). Its corrected eigenvalues are the empirical Fisher of per-example
gradients from a plain autograd loop in every Kronecker direction (so each Linear's and Conv1D's factors
map to the right weight layout), and its self-influence ranks examples like the exact damped solve of
the dense Hessian (the Gauss-Newton matrix from per-example logit Jacobians)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from memlab.influence.functional import (TrainingObjective, default_l2_names, flatten, per_example_grads,
                                         trainable_params)
from memlab.influence.self_influence import l2_gradient, self_influence
from memlab.influence.solver import make_solver
from memlab.model.text_network import TextClassifierNet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "model"))
from tiny_families import VOCAB  # noqa: E402

pytestmark = pytest.mark.usefixtures("float64_single_thread")
N = 24


def tiny(kind: str) -> torch.nn.Module:
    """Hidden 8, two blocks (one frozen, one trained): few enough parameters for the dense Hessian."""
    import transformers as t

    torch.manual_seed(0)
    if kind == "roberta":
        config = t.RobertaConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32, pad_token_id=1,
                                 attn_implementation="eager")
    else:
        config = t.GPT2Config(vocab_size=VOCAB, n_embd=8, n_layer=2, n_head=2, n_inner=16, n_positions=32,
                              attn_implementation="eager")
    return t.AutoModel.from_config(config, attn_implementation="eager")


def problem(kind: str):
    net = TextClassifierNet(tiny(kind), num_classes=2, freeze_layers=1, dropout=0.0).double()
    g = torch.Generator().manual_seed(3)
    lengths = [3 + i % 4 for i in range(N)]
    ids = torch.randint(4, VOCAB, (N, max(lengths)), generator=g)
    mask = (torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]).long()
    labels = torch.tensor([i % 2 for i in range(N)])
    with torch.no_grad():
        hidden = net.prefix(ids, mask)
    module = net.suffix
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(20):  # part of the way to a fit: the Hessian is then not the GGN, as in practice
        opt.zero_grad()
        F.cross_entropy(module(hidden=hidden, attention_mask=mask), labels).backward()
        opt.step()
    module.eval()
    params = trainable_params(module)
    objective = TrainingObjective(l2=1e-2, l2_names=default_l2_names(module))
    batches = [{"hidden": hidden[i:i + 8], "attention_mask": mask[i:i + 8], "labels": labels[i:i + 8]}
               for i in range(0, N, 8)]
    return module, params, objective, batches, {"hidden": hidden, "attention_mask": mask, "labels": labels}


def grads_by_loop(module, params, batch):
    rows = []
    for i in range(len(batch["labels"])):
        leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        logits = torch.func.functional_call(module, leaves, (), {"hidden": batch["hidden"][i:i + 1],
                                                                  "attention_mask": batch["attention_mask"][i:i + 1]})
        loss = F.cross_entropy(logits, batch["labels"][i:i + 1])
        rows.append(flatten(dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))))
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["roberta", "gpt2"])
def test_ekfac_eigenvalues_are_the_empirical_fisher_of_a_transformer_block(kind):
    module, params, objective, batches, whole = problem(kind)
    solver = make_solver("ekfac", 0.1, labels="gold", fit_examples=None).fit(module, params, batches, objective)
    if kind == "gpt2":  # attention and MLP are Conv1D, the head a Linear
        assert sum(b.transposed for b in solver.blocks) == 4 and len(solver.blocks) == 5
    grads = grads_by_loop(module, params, whole)
    fisher = grads.T @ grads / len(grads)
    l2_mask = flatten({n: torch.full_like(t, 2 * objective.l2 if n in objective.l2_names else 0.0)
                       for n, t in params.items()})
    curvature = fisher + torch.diag(l2_mask)
    zeros = {n: torch.zeros_like(t) for n, t in params.items()}
    checked = 0
    for block in solver.blocks:
        eig = solver.block_eigenvalues(block)
        for o in range(0, block.q_g.shape[0], 3):
            for i in range(0, block.q_a.shape[0], 3):
                u = flatten({**zeros, **block.split(torch.outer(block.q_g[:, o], block.q_a[:, i]))})
                assert torch.allclose(u @ curvature @ u, eig[o, i], rtol=1e-7, atol=1e-12)
                checked += 1
    assert checked > 50


def gauss_newton_by_loop(module, params, batch, objective):
    """The mean Gauss-Newton matrix Σ_i J_iᵀ (diag p_i − p_i p_iᵀ) J_i / n + 2·l2 on the covered weights,
    J_i the Jacobian of example i's logits with respect to θ (one autograd row per class)."""
    names = list(params)
    total = 0
    for i in range(len(batch["labels"])):
        def logits_of(*theta):
            return torch.func.functional_call(module, dict(zip(names, theta)), (), {
                "hidden": batch["hidden"][i:i + 1], "attention_mask": batch["attention_mask"][i:i + 1]})[0]
        jac = torch.autograd.functional.jacobian(logits_of, tuple(params[n] for n in names))
        j = torch.cat([part.reshape(part.shape[0], -1) for part in jac], dim=1)  # [C, P]
        p = logits_of(*(params[n] for n in names)).softmax(-1)
        total = total + j.T @ (torch.diag(p) - torch.outer(p, p)) @ j
    l2_mask = flatten({n: torch.full_like(t, 2 * objective.l2 if n in objective.l2_names else 0.0)
                       for n, t in params.items()})
    return total / len(batch["labels"]) + torch.diag(l2_mask)


class DenseSolve:
    """(G + λI)⁻¹ by a dense solve: the exact reference."""

    def __init__(self, matrix, damping):
        self.matrix = matrix + damping * torch.eye(len(matrix), dtype=matrix.dtype)

    def solve(self, vectors):
        return torch.linalg.solve(self.matrix, vectors.T).T


@pytest.mark.parametrize("kind", ["roberta", "gpt2"])
def test_ekfac_self_influence_ranks_like_the_exact_damped_gauss_newton_solve(kind):
    module, params, objective, batches, whole = problem(kind)
    grads, probs = per_example_grads(module, params, whole, TrainingObjective(l2_names=objective.l2_names))
    l2 = l2_gradient(params, objective)
    ggn = gauss_newton_by_loop(module, params, whole, objective)
    damping = 0.1 * float(torch.linalg.eigvalsh(ggn).mean())
    labels = whole["labels"]
    scores = {"exact": self_influence(DenseSolve(ggn, damping), grads, probs, labels, l2)}
    for name in ("ekfac", "identity"):
        solver = make_solver(name, damping, **({"labels": "expected"} if name == "ekfac" else {}))
        scores[name] = self_influence(solver.fit(module, params, batches, objective), grads, probs, labels, l2)
    assert all(torch.isfinite(s).all() for s in scores.values())
    rho = {name: spearmanr(scores["exact"], scores[name])[0] for name in ("ekfac", "identity")}
    # measured: roberta 0.80 (identity 0.74), gpt2 0.77 (identity 0.06): the curvature EK-FAC keeps
    # is what ranks like the exact solve, most visibly on GPT-2's Conv1D blocks
    assert rho["ekfac"] >= 0.7 and rho["ekfac"] > rho["identity"]
