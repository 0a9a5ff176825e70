"""TRAK self-influence (memlab.influence.trak, .trak_projection) against independent computations: the
margin's logit gradient against autograd, the projected kernel's diagonal against per-example gradients
from a plain loop of torch.autograd.grad with an explicit inverse, the Kronecker projection against
(P_out ⊗ P_in)ᵀ vec(G_i), the unprojected leverage scores, and the ensemble against a by-hand mean."""
from __future__ import annotations

import pytest
import torch

from memlab.influence.functional import trainable_params
from memlab.influence.trak import (ablation_leverages, ensemble, leave_one_out, margin, margin_logit_gradient,
                                   self_influence)
from memlab.influence.trak_projection import DenseProjector, KroneckerProjector, make_projector
from tests.tiny_models import TinyMLP

pytestmark = pytest.mark.usefixtures("float64_single_thread")


def _setup(n=24, seed=0):
    torch.manual_seed(seed)
    model = TinyMLP()  # 4 -> 8 -> LayerNorm -> 3: 83 parameters
    batch = {"x": torch.randn(n, 4) * 2, "labels": torch.randint(0, 3, (n,))}
    return model, trainable_params(model), batch


def _explicit_margin_grads(model, batch) -> dict[str, torch.Tensor]:
    """Per example, ∇θ (z_y − logsumexp_{c≠y} z_c) by a python loop of torch.autograd.grad."""
    named = dict(model.named_parameters())
    rows = {n: [] for n in named}
    for x, y in zip(batch["x"], batch["labels"]):
        z = model(x.unsqueeze(0))[0]
        others = torch.cat([z[:y], z[y + 1:]])
        f = z[y] - torch.logsumexp(others, 0)
        for n, g in zip(named, torch.autograd.grad(f, list(named.values()))):
            rows[n].append(g)
    return {n: torch.stack(r) for n, r in rows.items()}


def _explicit_h(phi, damping_rel):
    k = phi.shape[1]
    kernel = phi.T @ phi
    lam = damping_rel * torch.trace(kernel) / k
    inverse = torch.linalg.inv(kernel + lam * torch.eye(k))
    return torch.einsum("ik,kl,il->i", phi, inverse, phi)


def test_margin_logit_gradient_matches_autograd_and_survives_a_confident_example():
    logits = torch.tensor([[0.3, -1.2, 2.0], [2.0, 0.5, 0.1], [40.0, 12.4, 13.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([2, 0, 0, 1])
    z = logits.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(margin(z, labels).sum(), z)
    ours = margin_logit_gradient(logits, labels)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-15)
    p_gold = logits.softmax(-1)[2, 0]
    assert 1 - p_gold < 1e-11  # the confident example: p_y ≈ 1 − 1e-12
    assert ours[2, 0] == 1 and ours[2, 1:].sum().item() == pytest.approx(-1, abs=1e-12)
    # the naive −∇_z CE / (1 − p_y) in float32 is 0/0 there
    probs32 = logits.float().softmax(-1)
    naive = -(probs32 - torch.nn.functional.one_hot(labels, 3)) / (1 - probs32.gather(1, labels[:, None]))
    assert not torch.isfinite(naive[2]).all()


def test_dense_trak_equals_the_explicit_kernel_formula():
    model, params, batch = _setup()
    projector = make_projector(model, params, 16, "dense", seed=3)
    assert isinstance(projector, DenseProjector)
    phi, probs = projector.features(batch)
    grads = _explicit_margin_grads(model, batch)
    explicit_phi = torch.cat([grads[n].reshape(len(phi), -1) for n in params], 1) @ projector.projection.matrix()
    torch.testing.assert_close(phi, explicit_phi, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(probs, model(batch["x"]).softmax(-1).detach(), rtol=1e-10, atol=1e-12)
    for rel in (1e-3, 0.5):
        torch.testing.assert_close(self_influence(phi, rel), _explicit_h(explicit_phi, rel), rtol=1e-9, atol=1e-12)
    # N < k: the N × N form
    wide = make_projector(model, params, 60, "dense", seed=3).features(batch)[0]
    torch.testing.assert_close(self_influence(wide, 1e-2), _explicit_h(wide, 1e-2), rtol=1e-8, atol=1e-10)
    # the same R every call, and the first k' columns of a k-projection are the k'-projection (up to scale)
    again = make_projector(model, params, 16, "dense", seed=3).features(batch)[0]
    torch.testing.assert_close(again, phi, rtol=0, atol=0)
    torch.testing.assert_close(wide[:, :16] * (60 / 16) ** 0.5, phi, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(make_projector(model, params, 16, "dense", seed=4).features(batch)[0], phi)


def test_kronecker_trak_equals_the_explicit_kronecker_projection():
    model, params, batch = _setup()
    projector = make_projector(model, params, 2 * 9 + 5, "kronecker", seed=1)
    assert isinstance(projector, KroneckerProjector) and projector.rank == 2  # ⌊sqrt(23 / 3)⌋
    phi, _ = projector.features(batch)
    assert phi.shape == (24, 2 * 4 + 15)  # 2 Linears × r², the rest for the LayerNorm
    grads = _explicit_margin_grads(model, batch)
    parts = []
    for layer, p_in, p_out in zip(("fc1", "fc2"), projector.p_in, projector.p_out):
        g_mat = torch.cat([grads[f"{layer}.weight"], grads[f"{layer}.bias"][..., None]], -1)  # [B, out, in+1]
        parts.append(g_mat.reshape(24, -1) @ torch.kron(p_out, p_in))  # (P_out ⊗ P_in)ᵀ vec(G_i)
    ln = torch.cat([grads["norm.weight"], grads["norm.bias"]], 1)
    parts.append(ln @ projector.other.matrix())
    explicit = torch.cat(parts, 1)[:, projector.order]
    torch.testing.assert_close(phi, explicit, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(self_influence(phi, 1e-3), _explicit_h(explicit, 1e-3), rtol=1e-9, atol=1e-12)


def test_with_k_above_the_parameter_count_and_no_damping_h_is_the_leverage_score():
    model, params, batch = _setup(n=150)
    grads = _explicit_margin_grads(model, batch)
    g = torch.cat([grads[n].reshape(150, -1) for n in params], 1)  # [N, P = 83]
    leverage = torch.diagonal(g @ torch.linalg.pinv(g.T @ g) @ g.T)
    phi, _ = make_projector(model, params, 100, "dense", seed=0).features(batch)
    # G has rank 69 < 83 (the margin ignores a shift of all logits, LayerNorm a shift and scale of its
    # input): at λ = 0 the pseudo-inverse, and λ → 0 approaches it
    assert torch.linalg.matrix_rank(g) < g.shape[1]
    torch.testing.assert_close(self_influence(phi, 0.0), leverage, rtol=1e-6, atol=1e-8)
    errors = [(self_influence(phi, rel) - leverage).abs().max() for rel in (1e-10, 1e-12, 1e-14)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


def test_auto_picks_dense_for_a_small_model_and_the_settings_are_checked_in_one_line():
    from omegaconf import OmegaConf

    from memlab.errors import ConfigError
    from memlab.influence.trak_projection import KINDS
    from memlab.jobs.trak_settings import PROJECTIONS, trak_settings

    model, params, _ = _setup()
    assert make_projector(model, params, 64).kind == "dense"
    with pytest.raises(ValueError):
        make_projector(model, params, 64, "sparse")
    assert PROJECTIONS == KINDS
    cfg = lambda **trak: OmegaConf.create({"candidates": {"trak": trak}})  # noqa: E731
    assert trak_settings(OmegaConf.create({})) is None and trak_settings(cfg(models=0)) is None
    assert trak_settings(cfg(models=2))["proj_dim"] == 2048
    for bad in ({"projection": "sparse"}, {"proj_dim": 0}, {"damping_rel": -1.0},
                {"ablation": {"proj_dims": [16]}}, {"models": 1.5}):
        with pytest.raises(ConfigError, match="candidates.trak"):
            trak_settings(cfg(**bad))


def test_ensemble_and_leave_one_out_against_a_by_hand_mean():
    h = [torch.tensor([0.1, 0.5, 0.99]), torch.tensor([0.3, 0.2, 1.0])]
    q = [torch.tensor([0.2, 0.4, 0.6]), torch.tensor([0.0, 0.2, 0.4])]
    out = ensemble(h, q)
    q_mean = torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64)
    torch.testing.assert_close(out["trak"], torch.tensor([0.2, 0.35, 0.995], dtype=torch.float64) * q_mean)
    loo = [[0.1 / 0.9, 0.3 / 0.7], [1.0, 0.2 / 0.8], [99.0, 1e9]]
    by_hand = torch.tensor([sum(r) / 2 for r in loo], dtype=torch.float64) * q_mean
    torch.testing.assert_close(out["trak_loo"], by_hand, rtol=1e-6, atol=0)
    assert torch.isfinite(leave_one_out(torch.tensor([1.0, 1.5]))).all()


def test_ablation_grid_equals_direct_solves_on_column_prefixes():
    model, params, batch = _setup()
    phi, _ = make_projector(model, params, 20, "dense", seed=2).features(batch)
    grid = ablation_leverages(phi, [8, 20], [1e-3, 1.0])
    assert sorted(grid) == [(8, 1e-3), (8, 1.0), (20, 1e-3), (20, 1.0)]
    for (k, rel), h in grid.items():
        torch.testing.assert_close(h, _explicit_h(phi[:, :k], rel), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError):
        ablation_leverages(phi, [40], [1e-3])


@pytest.mark.slow  # ~25 s: vmap over a whole BERT in float64
def test_kronecker_features_of_a_tiny_transformer_equal_the_projected_vmap_gradients(tiny_cfg):
    """Token factors of a BERT layer (many tokens, attention, padding, embeddings-free suffix) against
    torch.func per-example gradients of the whole net, projected by the same (P_out ⊗ P_in)."""
    from memlab.influence.trak_projection import margin_gradients
    from memlab.influence.functional import unflatten
    from memlab.jobs.training import build

    dm, model, _ = build(tiny_cfg())
    dm.setup()
    net = model.net.double().eval()
    params = trainable_params(net)
    batch = next(iter(dm.score_dataloader(6)))
    projector = KroneckerProjector(net, params, 512, seed=5)
    phi, _ = projector.features(batch)
    flat, _ = margin_gradients(net, params, batch)
    grads = unflatten(flat, params)
    parts = []
    for block, p_in, p_out in zip(projector.tracker.blocks, projector.p_in, projector.p_out):
        g_mat = block.matrix(grads)
        parts.append(g_mat.reshape(len(phi), -1) @ torch.kron(p_out, p_in))
    if projector.other is not None:
        parts.append(torch.cat([grads[n].reshape(len(phi), -1) for n in projector.diag_names], 1)
                     @ projector.other.matrix())
    explicit = torch.cat(parts, 1)[:, projector.order]
    assert explicit.abs().max() > 0
    torch.testing.assert_close(phi, explicit, rtol=1e-8, atol=1e-10)
