"""Memorization attribution (Eq. 5), masking rules and Reduction Rate (Eq. 6) on tiny float64 models.

s is obtained independently of memlab's solvers: a dense Hessian from torch.autograd.functional.hessian
and torch.linalg.solve. The path integral is checked against an explicit per-α double-backward loop.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from memlab.influence.attribution import (AttributionResult, completeness_rmse, memorization_attribution,
                                          memorization_attributions, path_quadrature, replace_scores)
from memlab.influence.functional import (TrainingObjective, default_l2_names, flatten, per_example_grads,
                                         trainable_params, unflatten)
from memlab.influence.masking import (mask_all_tokens, mask_random_tokens, mask_top_tokens, tokens_to_mask,
                                      top_token_positions)
from memlab.influence.reduction import reduction_curve, reduction_rate

DTYPE = torch.float64
CLS, SEP, PAD, MASK = 101, 102, 0, 103


class TinyTextSuffix(nn.Module):
    """One single-head attention block + tanh MLP + a head on position 0: forward(hidden, attention_mask)."""

    def __init__(self, d=4, width=6, classes=2):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, width), nn.Linear(width, d)
        self.head = nn.Linear(d, classes)
        self.dropout = nn.Dropout(0.5)  # must be switched off by the attribution code

    def forward(self, hidden, attention_mask, input_ids=None):
        scores = self.q(hidden) @ self.k(hidden).transpose(-1, -2) / math.sqrt(hidden.shape[-1])
        scores = scores + (1.0 - attention_mask[..., None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        h = self.norm(hidden + self.dropout(scores.softmax(-1)) @ self.v(hidden))
        h = h + self.ff2(torch.tanh(self.ff1(h)))
        return self.head(h[:, 0])


class TinyGridMLP(nn.Module):
    """The study's image head in miniature: mean-pool [C, 3, 3] -> Linear -> ReLU -> Linear."""

    def __init__(self, channels=5, width=6, classes=3, first_bias=True):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(channels, width, bias=first_bias), nn.Linear(width, classes)

    def forward(self, features):
        return self.fc2(torch.relu(self.fc1(features.mean(dim=(-2, -1)))))


def damped_s(model, params, batch, objective, damping, examples):
    """s = (H + λI)⁻¹ ∇θP(y|x) from a dense Hessian of the mean training loss (independent of memlab)."""
    names = list(params)
    flat0 = flatten(params)
    feats = {k: v for k, v in batch.items() if k != "labels"}

    def loss(flat):
        p = unflatten(flat, params)
        logits = functional_call(model, p, args=(), kwargs=feats)
        return F.cross_entropy(logits, batch["labels"]) + objective.l2_penalty(p)

    hessian = torch.autograd.functional.hessian(loss, flat0, vectorize=True)
    rows = []
    for feats_i, label in examples:
        flat = flat0.clone().requires_grad_(True)
        p = unflatten(flat, params)
        prob = functional_call(model, p, args=(), kwargs={k: v.unsqueeze(0) for k, v in feats_i.items()})
        prob = prob.softmax(-1)[0, label]
        grad_p, = torch.autograd.grad(prob, flat)
        rows.append(torch.linalg.solve(hessian + damping * torch.eye(len(flat0), dtype=DTYPE), grad_p))
    assert names == list(params)
    return torch.stack(rows)


def brute_force_r(model, params, s, fixed, x, baseline, label, input_key, alphas, weights):
    """Σ_j w_j ∂/∂X[sᵀ∇θL](X_j): one α at a time, torch.autograd double backward."""
    direction = unflatten(s, params)
    total = torch.zeros_like(x)
    for alpha, weight in zip(alphas.tolist(), weights.tolist()):
        point = (baseline + alpha * (x - baseline)).clone().requires_grad_(True)
        leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
        feats = {k: v.unsqueeze(0) for k, v in fixed.items()}
        feats[input_key] = point.unsqueeze(0)
        loss = F.cross_entropy(functional_call(model, leaves, args=(), kwargs=feats), torch.tensor([label]))
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        dot = sum((g * direction[n]).sum() for g, n in zip(grads, leaves))
        total += weight * torch.autograd.grad(dot, point)[0]
    return total


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models gain nothing from intra-op threads, and lose a lot on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def text_setup(single_thread):
    torch.manual_seed(0)
    model = TinyTextSuffix().to(DTYPE).train()  # train mode on purpose: dropout must not leak in
    params = trainable_params(model)
    n_train, T, d = 10, 6, 4
    hidden = torch.randn(n_train, T, d, dtype=DTYPE)
    mask = torch.ones(n_train, T, dtype=torch.long)
    mask[::2, 4:] = 0  # padded rows
    labels = torch.randint(0, 2, (n_train,))
    objective = TrainingObjective(l2=5e-3, l2_names=default_l2_names(model))
    baselines = torch.randn(n_train, T, d, dtype=DTYPE) * 0.5  # stands in for the all-[MASK] states
    chosen = [0, 1, 2]
    examples = [({"hidden": hidden[i], "attention_mask": mask[i]}, labels[i].item()) for i in chosen]
    model.eval()
    s = damped_s(model, params, {"hidden": hidden, "attention_mask": mask, "labels": labels},
                 objective, damping=0.5, examples=examples).detach()
    model.train()
    return dict(model=model, params=params, s=s, hidden=hidden[chosen], mask=mask[chosen],
                labels=labels[chosen], baselines=baselines[chosen], objective=objective)


def single(setup, i, **kw):
    return memorization_attribution(
        setup["model"], setup["params"], setup["s"][i],
        {"hidden": setup["hidden"][i], "attention_mask": setup["mask"][i]}, setup["baselines"][i],
        setup["labels"][i], objective=setup["objective"], **kw)


def test_quadrature_rules_integrate_polynomials():
    for rule, steps, degree in [("left", 1000, 1), ("trapezoid", 400, 2), ("gauss_legendre", 6, 11)]:
        alphas, weights = path_quadrature(steps, rule)
        exact = 1.0 / (degree + 1)
        tol = {"left": 1e-3, "trapezoid": 1e-5, "gauss_legendre": 1e-13}[rule]
        assert abs((weights * alphas ** degree).sum().item() - exact) < tol, rule
    alphas, weights = path_quadrature(50, "left")
    assert torch.allclose(alphas, torch.arange(50, dtype=DTYPE) * 0.02) and torch.allclose(weights, torch.full((50,), 0.02, dtype=DTYPE))


@pytest.mark.parametrize("derivative", ["forward_over_reverse", "double_backward"])
def test_attribution_equals_brute_force_path_integral(text_setup, derivative):
    st = text_setup
    alphas, weights = path_quadrature(7, "left")
    for i in range(2):
        result = single(st, i, steps=7, rule="left", derivative=derivative, batch_alphas=3)
        r = brute_force_r(st["model"].eval(), st["params"], st["s"][i], {"attention_mask": st["mask"][i]},
                          st["hidden"][i], st["baselines"][i], st["labels"][i].item(), "hidden", alphas, weights)
        st["model"].train()
        expected = -(r * (st["hidden"][i] - st["baselines"][i])).sum(-1)
        assert result.attributions.shape == (6,)
        torch.testing.assert_close(result.attributions, expected, rtol=1e-10, atol=1e-14)
        assert abs(result.total.item() - expected.sum().item()) < 1e-12
    assert st["model"].training  # mode restored


def test_padding_positions_get_zero_attribution(text_setup):
    result = single(text_setup, 0, steps=5)  # row 0 is padded from position 4 on
    assert text_setup["mask"][0, 4:].eq(0).all()
    assert result.attributions[4:].abs().max().item() < 1e-15
    assert result.attributions[:4].abs().max().item() > 1e-8


def test_replace_score_matches_gradient_difference_with_l2_term(text_setup):
    st = text_setup
    model = st["model"].eval()
    batch = {"hidden": torch.cat([st["hidden"], st["baselines"]]), "attention_mask": st["mask"].repeat(2, 1),
             "labels": st["labels"].repeat(2)}
    grads, _ = per_example_grads(model, st["params"], batch, st["objective"])  # L2 term in both
    n = len(st["labels"])
    expected = -(st["s"] * (grads[:n] - grads[n:])).sum(-1)
    got = replace_scores(model, st["params"], st["s"], {"hidden": st["hidden"], "attention_mask": st["mask"]},
                         st["baselines"], st["labels"])
    st["model"].train()
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-15)
    assert expected.abs().min() > 1e-6  # the check is not vacuous


def test_completeness_gap_shrinks_with_steps(text_setup):
    gaps = {rule: [single(text_setup, 1, steps=m, rule=rule).completeness_gap.item() for m in (10, 50, 200)]
            for rule in ("left", "trapezoid")}
    for rule, (g10, g50, g200) in gaps.items():
        assert g200 < g50 < g10, (rule, gaps)
    assert gaps["trapezoid"][2] < 1e-2 and gaps["left"][2] < 5e-2
    gauss = single(text_setup, 1, steps=200, rule="gauss_legendre")
    assert gauss.completeness_gap.item() < 1e-6
    torch.testing.assert_close(gauss.total, gauss.replace_score, rtol=1e-6, atol=0)


def test_batched_instances_match_single(text_setup):
    st = text_setup
    batched = memorization_attributions(st["model"], st["params"], st["s"],
                                        {"hidden": st["hidden"], "attention_mask": st["mask"], "labels": st["labels"]},
                                        st["baselines"], st["labels"], steps=8, rule="trapezoid",
                                        batch_alphas=5, batch_instances=2)
    assert isinstance(batched, AttributionResult) and batched.attributions.shape == (3, 6)
    for i in range(3):
        one = single(st, i, steps=8, rule="trapezoid")
        torch.testing.assert_close(batched[i].attributions, one.attributions, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(batched[i].replace_score, one.replace_score, rtol=1e-10, atol=1e-14)
    rmse = completeness_rmse(batched)
    assert math.isclose(rmse, ((batched.total - batched.replace_score) ** 2).mean().sqrt().item())


def test_image_grid_zero_baseline_completeness_and_brute_force():
    torch.manual_seed(1)
    # No first-layer bias: from a zero baseline no ReLU changes sign along the path, so completeness is exact.
    model = TinyGridMLP(first_bias=False).to(DTYPE).eval()
    params = trainable_params(model)
    features = torch.rand(12, 5, 3, 3, dtype=DTYPE)
    labels = torch.randint(0, 3, (12,))
    objective = TrainingObjective()
    s = damped_s(model, params, {"features": features, "labels": labels}, objective, damping=0.1,
                 examples=[({"features": features[0]}, labels[0].item())])[0]
    baseline = torch.zeros(5, 3, 3, dtype=DTYPE)
    result = memorization_attribution(model, params, s, {"features": features[0]}, baseline, labels[0],
                                      input_key="features", steps=20, rule="gauss_legendre")
    assert result.attributions.shape == (3, 3)
    assert result.completeness_gap.item() < 1e-8
    flat = memorization_attribution(model, params, s, {"features": features[0]}, baseline, labels[0],
                                    input_key="features", steps=20, rule="gauss_legendre", flatten_grid=True)
    torch.testing.assert_close(flat.attributions, result.attributions.reshape(9))
    alphas, weights = path_quadrature(20, "gauss_legendre")
    r = brute_force_r(model, params, s, {}, features[0], baseline, labels[0].item(), "features", alphas, weights)
    torch.testing.assert_close(result.attributions, -(r * features[0]).sum(0), rtol=1e-10, atol=1e-14)


def test_rejects_misshaped_inputs(text_setup):
    st = text_setup
    with pytest.raises(ValueError):
        memorization_attribution(st["model"], st["params"], st["s"][0],
                                 {"hidden": st["hidden"][0], "attention_mask": st["mask"][0]},
                                 st["baselines"][0, :3], st["labels"][0])
    with pytest.raises(ValueError):
        path_quadrature(5, "simpson")


# ---- masking -------------------------------------------------------------------------------------

def make_ids():
    # row 0: [CLS] 8 tokens [SEP]; row 1: [CLS] 3 tokens [SEP] + 5 padding; len 10 and 5
    ids = torch.tensor([[CLS, 11, 12, 13, 14, 15, 16, 17, 18, SEP],
                        [CLS, 21, 22, 23, SEP, PAD, PAD, PAD, PAD, PAD]])
    mask = (ids != PAD).long()
    special = (ids == CLS) | (ids == SEP)
    return ids, mask, special


def test_tokens_to_mask_formula():
    _, mask, _ = make_ids()
    assert tokens_to_mask(mask, 0.5).tolist() == [4, 1]  # int(0.5*8)=4, int(0.5*3)=1
    assert tokens_to_mask(mask, 0.1).tolist() == [1, 1]  # int(0.8)=0 and int(0.3)=0 -> at least 1
    assert tokens_to_mask(mask, 0.9).tolist() == [7, 2]
    long_mask = torch.ones(102, dtype=torch.long)
    assert tokens_to_mask(long_mask, 0.29).item() == int(0.29 * 100) == 28  # the study's float product


def test_mask_top_tokens_rules():
    ids, mask, special = make_ids()
    attr = torch.arange(10, dtype=DTYPE).repeat(2, 1)
    attr[:, 0] = attr[:, 9] = 100.0  # special positions scored highest: must still be skipped
    attr[1, 5:] = 1000.0  # padding scored highest: must be skipped
    masked = mask_top_tokens(ids, mask, attr, 0.5, special, MASK)
    assert masked[0].tolist() == [CLS, 11, 12, 13, 14, MASK, MASK, MASK, MASK, SEP]
    assert masked[1].tolist() == [CLS, 21, 22, MASK, SEP, PAD, PAD, PAD, PAD, PAD]
    # single sequence gives the same as its batch row
    assert torch.equal(mask_top_tokens(ids[1], mask[1], attr[1], 0.5, special[1], MASK), masked[1])
    assert torch.equal(ids, make_ids()[0])  # input untouched
    # a sequence of only [CLS] [SEP] has nothing to mask
    tiny = torch.tensor([CLS, SEP, PAD])
    tiny_special = (tiny == CLS) | (tiny == SEP)
    assert torch.equal(mask_top_tokens(tiny, (tiny != PAD).long(), torch.ones(3), 0.9, tiny_special, MASK), tiny)
    chosen = top_token_positions(mask, attr, 0.9, special)
    assert chosen.sum(-1).tolist() == [7, 2] and not (chosen & special).any() and not (chosen & (mask == 0)).any()


def test_mask_random_tokens_rules_and_seeding():
    ids, mask, special = make_ids()
    draws = [mask_random_tokens(ids, mask, 0.5, special, MASK, torch.Generator().manual_seed(seed))
             for seed in (0, 0, 1, 2, 3)]
    assert torch.equal(draws[0], draws[1])
    assert any(not torch.equal(draws[0], d) for d in draws[2:])
    for d in draws:
        hit = d == MASK
        assert hit.sum(-1).tolist() == [4, 1]
        assert not (hit & special).any() and torch.equal(d[mask == 0], ids[mask == 0])
    # uniform over the 8 eligible positions of row 0: every one is picked in some of 200 draws
    counts = torch.zeros(10)
    gen = torch.Generator().manual_seed(7)
    for _ in range(200):
        counts += (mask_random_tokens(ids[0], mask[0], 0.5, special[0], MASK, gen) == MASK).float()
    assert counts[0] == counts[9] == 0 and (counts[1:9] > 60).all() and counts.sum() == 800


def test_mask_all_tokens():
    ids, mask, _ = make_ids()
    study = mask_all_tokens(ids, mask, [CLS, SEP], MASK)
    assert study[0].tolist() == [MASK] * 10 and study[1].tolist() == [MASK] * 5 + [PAD] * 5
    kept = mask_all_tokens(ids, mask, [CLS, SEP], MASK, mask_special=False)
    assert kept[1].tolist() == [CLS, MASK, MASK, MASK, SEP, PAD, PAD, PAD, PAD, PAD]
    assert torch.equal(mask_all_tokens(ids[0], mask[0], [CLS, SEP], MASK, mask_special=False), kept[0])


# ---- reduction rate ------------------------------------------------------------------------------

def test_reduction_rate_by_hand():
    assert math.isclose(reduction_rate(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 1.0])), 0.625)
    with pytest.raises(ValueError):
        reduction_rate(torch.tensor([1.0, 2.0]), torch.tensor([1.0]))


def test_reduction_curve_attribution_beats_random():
    ids, mask, special = make_ids()
    torch.manual_seed(3)
    weights = torch.rand(2, 10, dtype=DTYPE) * mask  # M = Σ of the unmasked tokens' weights

    def rescore(masked_ids):
        return (weights * (masked_ids != MASK)).sum(-1)

    before = rescore(ids)
    rows = reduction_curve(ids, mask, special, before, rescore, lambda: weights, MASK, random_draws=4, seed=5)
    assert [(r["k_percent"], r["method"]) for r in rows[:4]] == [(10, "attribution"), (10, "random"),
                                                                 (20, "attribution"), (20, "random")]
    assert len(rows) == 18
    by = {(r["k_percent"], r["method"]): r["reduction_rate"] for r in rows}
    for k in range(10, 100, 10):
        assert by[(k, "attribution")] >= by[(k, "random")] - 1e-12
    # k = 50%: row 0 masks its top-4 weights, row 1 its top-1 (of positions 1..3)
    top0 = weights[0, 1:9].topk(4).values.sum() / before[0]
    top1 = weights[1, 1:4].max() / before[1]
    assert math.isclose(by[(50, "attribution")], ((top0 + top1) / 2).item(), rel_tol=1e-12)
    assert rows == reduction_curve(ids, mask, special, before, rescore, weights, MASK, random_draws=4, seed=5)
