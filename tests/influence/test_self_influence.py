"""Self-influence (Eq. 2) against an independent dense computation and against actual leave-one-out
retraining of a convex model; the streaming generator's fields and paths."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memlab.influence.functional import (TrainingObjective, batch_loss, default_l2_names, flatten, per_example_grads,
                                         trainable_params, unflatten)
from memlab.influence.self_influence import l2_gradient, memorization_scores, self_influence
from tiny_models import TinyMLP
from memlab.influence.solver import make_solver


pytestmark = pytest.mark.usefixtures("float64_single_thread")




def fit_lbfgs(model, x, y, objective, max_iter=500):
    opt = torch.optim.LBFGS(model.parameters(), max_iter=max_iter, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + objective.l2_penalty(dict(model.named_parameters()))
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    return model


@pytest.fixture(scope="module")
def mlp_problem():
    torch.manual_seed(1)
    model = TinyMLP(d=3, h=6)
    x = torch.randn(30, 3)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.7).long()
    objective = TrainingObjective(l2=1e-2, l2_names=default_l2_names(model))
    fit_lbfgs(model, x, y, objective, max_iter=200)
    batches = [{"x": x[i:i + 8], "labels": y[i:i + 8], "sample_index": torch.arange(100 + i, 100 + min(i + 8, 30))}
               for i in range(0, 30, 8)]
    return model, trainable_params(model), batches, objective, x, y


def test_l2_gradient_covers_only_l2_names(mlp_problem):
    model, params, _, objective, _, _ = mlp_problem
    g = unflatten(l2_gradient(params, objective), params)
    assert torch.allclose(g["fc1.weight"], 2 * objective.l2 * params["fc1.weight"])
    assert torch.count_nonzero(g["fc1.bias"]) == 0 and torch.count_nonzero(g["norm.weight"]) == 0
    assert l2_gradient(params, TrainingObjective(l2=1e-2, l2_names=objective.l2_names, l2_in_example_grad=False)) is None


def test_self_influence_is_eq2_with_dense_hessian(mlp_problem):
    # M(z) = -∇P(y|x)ᵀ (H + λI)⁻¹ ∇L(z): every piece by plain autograd, H by autograd.functional.hessian
    model, params, batches, objective, x, y = mlp_problem
    flat = flatten(params)
    hessian = torch.autograd.functional.hessian(
        lambda v: batch_loss(model, unflatten(v, params), {"x": x, "labels": y}, objective), flat)
    damping = 0.05
    inverse = torch.linalg.inv(hessian + damping * torch.eye(len(flat)))
    expected = []
    for i in range(len(y)):
        v = flat.clone().requires_grad_(True)
        logits = torch.func.functional_call(model, unflatten(v, params), (x[i:i + 1],))
        grad_p = torch.autograd.grad(logits.softmax(-1)[0, y[i]], v)[0]
        v = flat.clone().requires_grad_(True)
        logits = torch.func.functional_call(model, unflatten(v, params), (x[i:i + 1],))
        loss = F.cross_entropy(logits, y[i:i + 1]) + objective.l2_penalty(unflatten(v, params))
        grad_l = torch.autograd.grad(loss, v)[0]
        expected.append(-grad_p @ inverse @ grad_l)
    expected = torch.stack(expected)

    solver = make_solver("exact", damping).fit(model, params, batches, objective)
    ce_only = TrainingObjective(l2=objective.l2, l2_names=objective.l2_names, l2_in_example_grad=False)
    grads, probs = per_example_grads(model, params, {"x": x, "labels": y}, ce_only)
    scores = self_influence(solver, grads, probs, y, l2_gradient(params, objective))
    assert torch.allclose(scores, expected, rtol=1e-7, atol=1e-12)
    streamed = torch.cat([r["mem_score"] for r in memorization_scores(model, params, batches, solver, objective)])
    assert torch.allclose(streamed, expected, rtol=1e-7, atol=1e-12)
    # without the L2 cross term the scores differ: the term is really there
    assert not torch.allclose(self_influence(solver, grads, probs, y), expected, rtol=1e-3)


def test_predicts_leave_one_out_retraining_of_logistic_regression():
    # L2-regularised softmax regression (strictly convex): removing z changes its own P(y|x) by
    # about -M(z)/n (Appendix A with ε = 1/n); measured by retraining to convergence without z
    torch.manual_seed(0)
    n, d = 40, 3
    x = torch.cat([torch.randn(n, d), torch.ones(n, 1)], dim=1)  # constant feature = the bias
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.8 * torch.randn(n) > 0).long()
    model = nn.Linear(d + 1, 2, bias=False)
    objective = TrainingObjective(l2=2e-2, l2_names=frozenset({"weight"}))
    fit_lbfgs(model, x, y, objective)
    full_state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        p_full = model(x).softmax(-1)[torch.arange(n), y]

    measured = []
    for i in range(n):
        keep = torch.arange(n) != i
        model.load_state_dict(full_state)
        fit_lbfgs(model, x[keep], y[keep], objective)
        with torch.no_grad():
            measured.append(model(x[i:i + 1]).softmax(-1)[0, y[i]] - p_full[i])
    measured = torch.stack(measured)

    model.load_state_dict(full_state)
    params = trainable_params(model)
    batches = [{"input": x[i:i + 10], "labels": y[i:i + 10]} for i in range(0, n, 10)]  # nn.Linear(input)
    solver = make_solver("exact", 0.0).fit(model, params, batches, objective)
    scores = torch.cat([r["mem_score"] for r in memorization_scores(model, params, batches, solver, objective)])
    predicted = -scores / n
    pearson = torch.corrcoef(torch.stack([predicted, measured]))[0, 1]
    assert pearson >= 0.95
    assert torch.equal(torch.sign(predicted), torch.sign(measured))
    assert measured.abs().max() > 0.05  # a real effect, not rounding noise
    slope = (predicted @ measured) / (measured @ measured)
    assert 0.7 < slope < 1.3  # the right scale too (first order: large removals are underestimated a bit)


def test_stream_fields_progress_and_chunks(mlp_problem):
    model, params, batches, objective, x, y = mlp_problem
    solver = make_solver("identity", 2.0)
    seen = []
    rows = list(memorization_scores(model, params, batches, solver, objective, progress=seen.append))
    assert seen == [8, 16, 24, 30]
    out = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}
    assert set(out) == {"sample_index", "label", "prob", "prediction", "loss", "grad_norm_sq", "mem_score"}
    assert torch.equal(out["sample_index"], torch.arange(100, 130)) and torch.equal(out["label"], y)
    with torch.no_grad():
        probs = model(x).softmax(-1)
    assert torch.allclose(out["prob"], probs[torch.arange(30), y])
    assert torch.equal(out["prediction"], probs.argmax(-1))
    assert torch.allclose(out["loss"], F.cross_entropy(model(x), y, reduction="none").detach())
    # identity solver: M = P·(‖∇CE‖² + ∇CE·g_l2)/λ, and without L2 just P·‖∇CE‖²/λ
    no_l2 = TrainingObjective()
    plain = torch.cat([r["mem_score"] for r in memorization_scores(model, params, batches, solver, no_l2)])
    assert torch.allclose(plain, out["prob"] * out["grad_norm_sq"] / 2.0)
    chunked = torch.cat([r["mem_score"] for r in memorization_scores(model, params, batches, solver, objective,
                                                                      chunk_size=3)])
    assert torch.allclose(chunked, out["mem_score"])
    no_index = [{k: v for k, v in b.items() if k != "sample_index"} for b in batches]
    assert torch.equal(torch.cat([r["sample_index"] for r in memorization_scores(model, params, no_index, solver,
                                                                                 objective)]), torch.arange(30))


def test_ekfac_fast_path_equals_flat_gradients(mlp_problem):
    model, params, batches, objective, _, _ = mlp_problem
    solver = make_solver("ekfac", 0.05).fit(model, params, batches, objective)
    fast = list(memorization_scores(model, params, batches, solver, objective))
    slow = list(memorization_scores(model, params, batches, solver, objective, fast=False))
    for key in ("mem_score", "grad_norm_sq", "prob"):
        a, b = torch.cat([r[key] for r in fast]), torch.cat([r[key] for r in slow])
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12), key


def test_cross_entropy_matches_torch_and_keeps_tiny_gradients():
    from memlab.influence.functional import cross_entropy, gold_loss

    logits = torch.tensor([[0.3, -1.2, 2.0], [1.0, 0.5, -0.5]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([2, 1])
    ours = cross_entropy(logits, labels, reduction="sum")
    theirs = F.cross_entropy(logits, labels, reduction="sum")
    assert torch.allclose(ours, theirs)
    assert torch.allclose(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(theirs, logits)[0])
    # float32, margin 30: torch's gradient at the gold logit is exactly 0; the true one is -e^-30
    confident = torch.tensor([[30.0, 0.0]], dtype=torch.float32, requires_grad=True)
    gold = torch.tensor([0])
    assert torch.autograd.grad(F.cross_entropy(confident, gold), confident)[0][0, 0] == 0
    g = torch.autograd.grad(cross_entropy(confident, gold), confident)[0]
    assert torch.allclose(g.double(), torch.tensor([[-1.0, 1.0]], dtype=torch.float64) * math.exp(-30), rtol=1e-5)
    probs = torch.tensor([[1 - 1e-13, 1e-13]], dtype=torch.float64)
    assert torch.allclose(gold_loss(probs, gold), torch.tensor([1e-13], dtype=torch.float64), rtol=1e-6)


def test_ekfac_fast_path_on_padded_transformer_and_confident_examples():
    # the per-token path (live positions, tiles, Gram norms, normalised backward) against flat
    # per-example gradients through solve(), with padding of different lengths and the L2 term
    from memlab.model.text_network import build_text_classifier

    torch.manual_seed(0)
    net = build_text_classifier("tiny-random", 2, freeze_layers=4).double().eval()
    suffix = net.suffix
    b, t = 12, 7
    hidden = torch.randn(b, t, net.config.hidden_size, dtype=torch.float64)
    mask = torch.ones(b, t, dtype=torch.long)
    for i in range(b):
        mask[i, 3 + i % 4:] = 0
    labels = torch.randint(0, 2, (b,))
    params = trainable_params(suffix)
    batches = [{"hidden": hidden[i:i + 6], "attention_mask": mask[i:i + 6], "labels": labels[i:i + 6]}
               for i in range(0, b, 6)]
    objective = TrainingObjective(l2=5e-3, l2_names=default_l2_names(suffix))
    for name, options in (("ekfac", {"fit_examples": None}), ("identity", {})):
        solver = make_solver(name, 1e-3, **options).fit(suffix, params, batches, objective)
        fast = list(memorization_scores(suffix, params, batches, solver, objective))
        slow = list(memorization_scores(suffix, params, batches, solver, objective, fast=False))
        for key in ("mem_score", "grad_norm_sq", "loss"):
            a, c = torch.cat([r[key] for r in fast]), torch.cat([r[key] for r in slow])
            assert torch.allclose(a.double(), c.double(), rtol=1e-7, atol=0), (name, key)

    # float32 and a margin of ~60: P(y|x) is 1 to float precision and ‖∇L‖² ~ e^-120 underflows
    # float32, yet every score must stay positive and follow the margin (no ties at 0)
    suffix = suffix.float()
    with torch.no_grad():
        suffix.classifier.bias[1] += 60.0
    params = trainable_params(suffix)
    confident = [{"hidden": bt["hidden"].float(), "attention_mask": bt["attention_mask"],
                  "labels": torch.ones_like(bt["labels"])} for bt in batches]
    solver = make_solver("ekfac", 1e-3, fit_examples=None).fit(suffix, params, confident)
    out = list(memorization_scores(suffix, params, confident, solver))
    scores, loss = torch.cat([r["mem_score"] for r in out]), torch.cat([r["loss"] for r in out])
    assert (scores > 0).all() and (loss > 0).all() and scores.max() < 1e-40


class _DenseSolver:
    """(H + λI)⁻¹ from a given dense H: the solver interface for the own-term tests."""

    def __init__(self, hessian, damping):
        self.inverse = torch.linalg.inv(hessian + damping * torch.eye(len(hessian), dtype=hessian.dtype))
        self.module = None

    def solve(self, vectors):
        return vectors @ self.inverse


def _logit_jacobians(model, params, x):
    """[B, C, P] Jacobians of the logits by plain autograd, one example and class at a time."""
    rows, named = [], dict(model.named_parameters())
    for xi in x:
        per_class = []
        for c in range(model.fc2.out_features):
            grads = torch.autograd.grad(model(xi[None])[0, c], [named[k] for k in params])
            per_class.append(torch.cat([g.reshape(-1) for g in grads]))
        rows.append(torch.stack(per_class))
    return torch.stack(rows)


@pytest.mark.parametrize("classes", [2, 3])
def test_own_term_is_sherman_morrison_of_the_instance_ggn(classes):
    # H_pop (any PSD matrix: the solver's population curvature) plus z's own (1/n)·GGN(z) inverted
    # densely, against with_own_term on the score without it. Two classes: equal; three: the
    # y-vs-rest part of GGN(z) is added, less than all of it, so the true score is no larger
    from memlab.influence.self_influence import with_own_term
    torch.manual_seed(3)
    model = TinyMLP(d=3, h=4, c=classes)
    params = trainable_params(model)
    x, y = torch.randn(6, 3), torch.randint(0, classes, (6,))
    with torch.no_grad():
        model.fc2.bias[1] += 2.0  # confident and unconfident instances both
    n, damping = 7, 1e-3
    dim = sum(p.numel() for p in params.values())
    basis = torch.randn(dim, 5, dtype=torch.float64)
    h_pop = basis @ basis.T / 5  # rank-deficient: the own term matters in the null directions
    grads, probs = per_example_grads(model, params, {"x": x, "labels": y})
    plain = self_influence(_DenseSolver(h_pop, damping), grads, probs, y)
    quad = (grads @ torch.linalg.inv(h_pop + damping * torch.eye(dim, dtype=torch.float64)) * grads).sum(-1)
    corrected = with_own_term(plain, quad, probs, y, n)
    jac = _logit_jacobians(model, params, x)
    for i in range(len(x)):
        p = probs[i].double()
        ggn = jac[i].T @ (torch.diag(p) - torch.outer(p, p)) @ jac[i]
        exact = self_influence(_DenseSolver(h_pop + ggn / n, damping), grads[i:i + 1], probs[i:i + 1], y[i:i + 1])[0]
        assert corrected[i] < plain[i]
        if classes == 2:
            assert torch.allclose(corrected[i], exact, rtol=1e-8)
        else:
            assert exact <= corrected[i] * (1 + 1e-10)


def test_memorization_scores_with_own_term_keeps_loo_score_on_both_paths():
    # fast (token factors) and slow (flat gradients) paths give the same mem_score and loo_score; the
    # own term only shrinks, and its bound n·(1 − P) holds without an L2 term
    from memlab.model.text_network import build_text_classifier
    torch.manual_seed(0)
    net = build_text_classifier("tiny-random", 2, freeze_layers=4).double().eval()
    suffix = net.suffix
    hidden = torch.randn(8, 5, net.config.hidden_size, dtype=torch.float64)
    batches = [{"hidden": hidden[i:i + 4], "attention_mask": torch.ones(4, 5, dtype=torch.long),
                "labels": torch.tensor([0, 1, 1, 0])} for i in (0, 4)]
    params = trainable_params(suffix)
    solver = make_solver("ekfac", 1e-6, fit_examples=None).fit(suffix, params, batches)
    n = 10
    fast = list(memorization_scores(suffix, params, batches, solver, own_term_n=n))
    slow = list(memorization_scores(suffix, params, batches, solver, own_term_n=n, fast=False))
    plain = list(memorization_scores(suffix, params, batches, solver))
    for key in ("mem_score", "loo_score"):
        a, c = torch.cat([r[key] for r in fast]), torch.cat([r[key] for r in slow])
        assert torch.allclose(a, c, rtol=1e-7), key
    mem, loo = torch.cat([r["mem_score"] for r in fast]), torch.cat([r["loo_score"] for r in fast])
    prob = torch.cat([r["prob"] for r in fast])
    assert torch.allclose(loo, torch.cat([r["mem_score"] for r in plain]))
    assert (mem < loo).all() and (mem <= n * (1 - prob) * (1 + 1e-9)).all()
    assert "loo_score" not in plain[0]


def test_ekfac_bfloat16_scoring_pass_keeps_probabilities_exact(bf16_kernels):
    # score_dtype="bfloat16": the backward of the scoring pass under autocast, seeded by the logit
    # gradient of a float32 forward: prob and loss identical to the float32 path, scores close
    from scipy.stats import spearmanr
    from memlab.model.text_network import build_text_classifier
    torch.manual_seed(0)
    net = build_text_classifier("tiny-random", 2, freeze_layers=4).float().eval()
    suffix = net.suffix
    hidden = torch.randn(24, 6, net.config.hidden_size, dtype=torch.float32)
    mask = torch.ones(24, 6, dtype=torch.long)
    mask[::3, 4:] = 0
    batches = [{"hidden": hidden[i:i + 8], "attention_mask": mask[i:i + 8], "labels": torch.randint(0, 2, (8,))}
               for i in range(0, 24, 8)]
    params = trainable_params(suffix)
    runs = {}
    for dtype, exact in ((None, True), ("bfloat16", True), ("bfloat16", False)):
        solver = make_solver("ekfac", 1e-3, fit_examples=None, score_dtype=dtype, exact_logits=exact).fit(
            suffix, params, batches)
        runs[dtype, exact] = {k: torch.cat([r[k] for r in memorization_scores(suffix, params, batches, solver,
                                                                               own_term_n=24)])
                              for k in ("prob", "loss", "mem_score", "loo_score", "grad_norm_sq")}
    full, half, fast = runs[None, True], runs["bfloat16", True], runs["bfloat16", False]
    assert torch.equal(full["prob"], half["prob"]) and torch.equal(full["loss"], half["loss"])
    # exact_logits=False: P(y|x) and the loss from the bf16 forward itself, close to the float32 ones
    assert not torch.equal(full["loss"], fast["loss"])
    assert ((fast["loss"] / full["loss"] - 1).abs() < 0.05).all()
    assert spearmanr(full["loo_score"], fast["loo_score"])[0] > 0.99
    assert not torch.equal(full["loo_score"], half["loo_score"])  # the option changes the arithmetic
    rel = (half["loo_score"] / full["loo_score"] - 1).abs()
    assert rel.median() < 0.01 and spearmanr(full["loo_score"], half["loo_score"])[0] > 0.99
    assert ((half["grad_norm_sq"] / full["grad_norm_sq"] - 1).abs() < 0.02).all()
