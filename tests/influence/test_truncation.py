"""EK-FAC's scoring pass on a truncated eigenbasis (issue #15) against the full per-example rotated
gradients: the algebra of the Gram-matrix residual, the error it claims, and the scores end to end."""
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from memlab.influence.functional import TrainingObjective, default_l2_names, trainable_params
from memlab.influence.self_influence import l2_gradient, memorization_scores
from memlab.influence.solver import make_solver
from memlab.influence.solver.eigenbasis import rotated_tiles
from memlab.influence.solver.truncation import truncated_quadratic_form, truncation_plan

pytestmark = pytest.mark.usefixtures("float64_single_thread")


def spectrum(out: int, inn: int, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, Λ) of a Kronecker-like spectrum: a few large eigenvalues on each side, a long small tail."""
    lam = (torch.logspace(2, -4, out)[:, None] * torch.logspace(1, -3, inn)[None, :]) * (1 + 0.3 * torch.rand(out, inn, generator=gen))
    return 1.0 / (lam + 0.05), lam


@pytest.mark.parametrize("out,inn", [(48, 9), (7, 40)])
def test_truncated_form_is_the_kept_block_plus_the_residual_weights(out, inn):
    """q̂ = Σ_{kept} r²W + Σ_{rest} r²u, computed from the full rotated gradient r of every example,
    whichever side is truncated; and |q̂ − q| is at most Σ_rest r²|W − u|."""
    gen = torch.Generator().manual_seed(0)
    w, lam = spectrum(out, inn, gen)
    plan = truncation_plan(w, lam, tolerance=0.2, step=4)
    assert plan is not None and plan.side == ("g" if out >= inn else "a") and 0 < len(plan.keep) < plan.size
    q_a = torch.linalg.qr(torch.randn(inn, inn, generator=gen))[0]
    q_g = torch.linalg.qr(torch.randn(out, out, generator=gen))[0]
    a, g = torch.randn(5, 6, inn, generator=gen), torch.randn(5, 6, out, generator=gen)
    r = torch.einsum("bto,bti->boi", g @ q_g, a @ q_a)  # every example's rotated gradient, in full
    kept = torch.zeros(out, inn, dtype=torch.bool)
    if plan.side == "g":
        kept[plan.keep] = True
        u = plan.residual[None, :].expand(out, inn)
    else:
        kept[:, plan.keep] = True
        u = plan.residual[:, None].expand(out, inn)
    expected = (r.square() * torch.where(kept, w, u)).sum((1, 2))
    got, none, norm_sq = truncated_quadratic_form(plan, a, g, q_a, q_g, rotated_tiles)
    assert none is None and torch.allclose(norm_sq, r.square().sum((1, 2)), rtol=1e-10)  # ‖DW‖², rotation-free
    assert torch.allclose(got, expected, rtol=1e-10)
    exact = (r.square() * w).sum((1, 2))
    bound = (r.square() * (w - u).abs() * ~kept).sum((1, 2))
    assert ((got - exact).abs() <= bound * (1 + 1e-9)).all() and (bound > 0).all()


def test_plan_keeps_the_fewest_directions_within_the_tolerance():
    gen = torch.Generator().manual_seed(1)
    w, lam = spectrum(64, 12, gen)
    loose, tight = truncation_plan(w, lam, 0.05, step=4), truncation_plan(w, lam, 0.005, step=4)
    assert loose.expected_error <= 0.05 and tight.expected_error <= 0.005
    assert len(loose.keep) < len(tight.keep)
    # one step fewer than the loose plan would exceed its tolerance: it is the fewest
    fewer = truncation_plan(w, lam, loose.expected_error * 0.999, step=4)
    assert fewer is None or len(fewer.keep) > len(loose.keep)
    assert truncation_plan(w, lam, 1e-12, step=4) is None  # no real saving: the exact path


class TokenMLP(nn.Module):
    """Per-token Linear 6 -> 96, tanh, masked mean over tokens, Linear -> 3: a wide Linear with many live tokens."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 96), nn.Linear(96, 3)

    def forward(self, hidden, attention_mask):
        h = torch.tanh(self.fc1(hidden)) * attention_mask[..., None]
        return self.fc2(h.sum(1) / attention_mask.sum(1, keepdim=True))


def token_problem():
    torch.manual_seed(0)
    model = TokenMLP()
    hidden = torch.randn(48, 5, 6) @ torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.3, 0.1, 0.05]))
    mask = torch.ones(48, 5, dtype=torch.long)
    mask[::3, 3:] = 0
    labels = torch.randint(0, 3, (48,))
    batches = [{"hidden": hidden[i:i + 16], "attention_mask": mask[i:i + 16], "labels": labels[i:i + 16]}
               for i in range(0, 48, 16)]
    return model, trainable_params(model), batches, TrainingObjective(l2=5e-3, l2_names=default_l2_names(model))


def test_truncated_scores_follow_the_exact_ones_and_the_l2_cross_term_is_exact():
    model, params, batches, objective = token_problem()
    solver = make_solver("ekfac", 1e-3, fit_examples=None).fit(model, params, batches, objective)
    exact = torch.cat([r["mem_score"] for r in memorization_scores(model, params, batches, solver, objective)])
    terms_exact = [solver.self_influence_terms(b, l2_gradient(params, objective)) for b in batches]
    solver.score_tolerance = 0.02
    fast = torch.cat([r["mem_score"] for r in memorization_scores(model, params, batches, solver, objective)])
    info = solver.describe()
    assert info["truncated_blocks"] == ["fc1.weight: g 32/96"]  # fc1 truncated, fc2 has one live row per example
    assert 0 < info["truncation_max_expected_error"] <= 0.02
    relative = ((fast - exact) / exact).abs()
    assert float(relative.median()) < 0.02 and float(relative.max()) < 0.2
    assert spearmanr(fast.numpy(), exact.numpy()).statistic > 0.99
    for b, (_, quad, cross, norm) in zip(batches, terms_exact):
        _, quad_t, cross_t, norm_t = solver.self_influence_terms(b, l2_gradient(params, objective))
        assert torch.allclose(cross_t, cross, rtol=1e-9) and torch.allclose(norm_t, norm, rtol=1e-12)
        assert not torch.allclose(quad_t, quad, rtol=1e-9)  # the quadratic form is the approximated part


def test_score_tolerance_is_validated():
    with pytest.raises(ValueError, match="score_tolerance"):
        make_solver("ekfac", 1e-3, score_tolerance=1.5)
