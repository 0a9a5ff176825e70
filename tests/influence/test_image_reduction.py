"""Reduction Rate (Eq. 6) for images: grid-cell masking and the curve, on a tiny MLP over [C, 7, 7] features.

Expected cells are found with topk / counting here, and M' is computed here from autograd gradients
(identity solver: M = P(y|x)·‖∇θCE‖²/λ), independently of memlab's masking and scoring code.
"""
import pytest
import torch
import torch.nn.functional as F

from memlab.influence.functional import TrainingObjective, trainable_params
from memlab.influence.masking import (cells_to_mask, mask_cells, mask_random_cells, mask_top_cells,
                                      random_cell_positions, top_cell_positions)
from memlab.influence.reduction import image_reduction_curve
from memlab.influence.solver import make_solver
from memlab.model.feature_mlp import FeatureMLP
from memlab.pipeline.attributing import attribute_images, image_reduction_rate

C, H, W = 3, 7, 7
SIGNAL = (2, 5)  # the one cell that carries the label
DAMPING = 0.5


def zero_cells(features):
    """[B, H, W]: cells whose features are zero in every channel."""
    return (features == 0).all(dim=-3)


# ---- masking --------------------------------------------------------------------------------------

def test_cells_to_mask_rounds_down_with_at_least_one():
    assert [cells_to_mask(H * W, k / 100) for k in range(10, 100, 10)] == [4, 9, 14, 19, 24, 29, 34, 39, 44]
    assert cells_to_mask(H * W, 0.01) == 1 and cells_to_mask(4, 0.1) == 1 and cells_to_mask(4, 0.5) == 2


def test_top_cells_zero_exactly_the_chosen_cells():
    torch.manual_seed(0)
    features = torch.randn(3, C, H, W).abs() + 0.1  # no zero anywhere before masking
    attributions = torch.randn(3, H, W)
    masked = mask_top_cells(features, attributions, 0.3)
    for b in range(3):
        expected = torch.zeros(H * W, dtype=torch.bool)
        expected[attributions[b].flatten().topk(14).indices] = True
        assert torch.equal(zero_cells(masked)[b].flatten(), expected)
        kept = ~expected.view(H, W)
        assert torch.equal(masked[b][:, kept], features[b][:, kept])  # every other cell untouched
    assert torch.equal(top_cell_positions(attributions, 0.3), zero_cells(masked))
    # one grid [C, H, W] is the same as a batch of one
    assert torch.equal(mask_top_cells(features[1], attributions[1], 0.3), masked[1])
    # the baseline is zero, whatever the features were
    chosen = torch.zeros(H, W, dtype=torch.bool)
    chosen[SIGNAL] = True
    single = mask_cells(features[0], chosen)
    assert single[:, SIGNAL[0], SIGNAL[1]].abs().sum() == 0 and int(zero_cells(single).sum()) == 1


def test_random_cells_are_k_per_grid_and_seeded():
    features = torch.rand(4, C, H, W) + 0.1

    def draw(seed, fraction=0.5):
        return mask_random_cells(features, fraction, torch.Generator().manual_seed(seed))

    first = draw(7)
    assert zero_cells(first).flatten(1).sum(-1).tolist() == [24] * 4
    assert torch.equal(first[~zero_cells(first).unsqueeze(1).expand_as(first)],
                       features[~zero_cells(first).unsqueeze(1).expand_as(features)])
    assert torch.equal(draw(7), first)  # the same seed draws the same cells
    assert not torch.equal(zero_cells(draw(8)), zero_cells(first))  # another seed other cells
    # the four grids get different cells from one generator
    assert len({tuple(row.tolist()) for row in zero_cells(first).flatten(1)}) == 4
    positions = random_cell_positions((H, W), 0.1, torch.Generator().manual_seed(1))
    assert positions.shape == (H, W) and int(positions.sum()) == 4


# ---- the curve, with a model where one cell carries all the signal --------------------------------

def signal_cell_model():
    """A trained bias-free FeatureMLP, and 12 instances whose label is the sign of one cell.

    Without biases the all-zero baseline gives zero logits' gradients (∇θCE = 0, M' = 0), so the
    signal cell is what the scores are made of; the other cells are small noise."""
    torch.manual_seed(0)
    n = 12
    labels = torch.arange(n) % 2
    features = 0.01 * torch.randn(n, C, H, W)
    direction = torch.tensor([1.0, -0.5, 0.8])
    features[:, :, SIGNAL[0], SIGNAL[1]] = (2 * labels - 1).float().unsqueeze(1) * direction * 3
    net = FeatureMLP(num_classes=2, in_channels=C, hidden=5)  # float32: the pipeline reads features as float
    for layer in (net.hidden, net.classifier):
        with torch.no_grad():
            layer.bias.zero_()
        layer.bias.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.05)
    for _ in range(15):  # a few full-batch steps: right, not yet confident (a confident M is near zero)
        optimizer.zero_grad()
        F.cross_entropy(net(features), labels).backward()
        optimizer.step()
    examples = [{"features": features[i], "labels": labels[i], "sample_index": torch.tensor(i)} for i in range(n)]
    return net.eval(), examples


def self_influence_by_hand(net, features, labels):
    """[n] P(y|x)·‖∇θCE‖²/λ, one autograd call per instance (the identity solver's Eq. 2)."""
    weights = [p for p in net.parameters() if p.requires_grad]
    out = []
    for x, y in zip(features, labels):
        logits = net(x.unsqueeze(0))
        grads = torch.autograd.grad(F.cross_entropy(logits, y.view(1)), weights)
        out.append(logits.softmax(-1)[0, y].detach() * sum((g ** 2).sum() for g in grads) / DAMPING)
    return torch.stack(out).double()


def test_image_reduction_attribution_beats_random():
    net, examples = signal_cell_model()
    features = torch.stack([e["features"] for e in examples])
    labels = torch.stack([e["labels"] for e in examples])
    assert (net(features).argmax(-1) == labels).all()  # the model reads the signal cell
    params, objective = trainable_params(net), TrainingObjective()
    solver = make_solver("identity", damping=DAMPING).fit(net, params, [], objective)
    with torch.enable_grad():
        records = attribute_images(net, params, solver, objective, examples, steps=32, rule="gauss_legendre",
                                   progress=False)
    attributions = torch.tensor([r["attributions"] for r in records], dtype=torch.float64)
    assert (attributions.flatten(1).argmax(-1) == SIGNAL[0] * W + SIGNAL[1]).all()  # attribution finds the cell
    before = self_influence_by_hand(net, features, labels)
    assert (before > 0).all()

    def rescore(chosen):
        return self_influence_by_hand(net, mask_cells(features, chosen), labels)

    rows = image_reduction_curve(before, rescore, attributions, random_draws=3, seed=4)
    assert len(rows) == 18 and {r["num_draws"] for r in rows if r["method"] == "random"} == {3}
    by = {(r["k_percent"], r["method"]): r["reduction_rate"] for r in rows}
    for k in range(10, 100, 10):
        # the signal cell is always in the top-k: the features left are noise, M' is near zero
        assert by[(k, "attribution")] > 0.95
        assert by[(k, "attribution")] > by[(k, "random")]
    # random cells at k = 10% (4 of 49) rarely hit the signal cell: a small reduction
    assert by[(10, "random")] < 0.5
    assert rows == image_reduction_curve(before, rescore, lambda: attributions, random_draws=3, seed=4)

    # the pipeline (features masked batch by batch, M' from memlab's scoring with the same solver)
    # gives the same curve as the one re-scored by hand here
    with torch.enable_grad():
        piped = image_reduction_rate(net, params, solver, objective, examples, records, before, random_draws=3,
                                     seed=4, batch_size=5, progress=False)
    assert [(r["k_percent"], r["method"], r["num_draws"]) for r in piped] == \
        [(r["k_percent"], r["method"], r["num_draws"]) for r in rows]
    for a, b in zip(piped, rows):
        assert a["reduction_rate"] == pytest.approx(b["reduction_rate"], rel=1e-4, abs=1e-6)
