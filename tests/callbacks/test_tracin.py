"""TracIn self-influence (callbacks/tracin.py) against a sum made by hand in a tiny image fit:

    tracin(z) = Σ_e η̄_e ‖∇θ CE(z; θ_e)‖²,

θ_e saved at each epoch's end by a small callback, each instance's gradient by plain autograd on its own
(eval mode, cross-entropy only), η̄_e the mean learning rate of epoch e's steps from the linear schedule's
formula η_k = η (1 - k / total steps)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytorch_lightning as L
import torch
import torch.nn.functional as F

from memlab.callbacks.tracin import TracInCallback


class SaveWeights(L.Callback):
    """θ_e: a copy of the trainable network at each epoch's end."""

    def __init__(self):
        self.snapshots = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append(copy.deepcopy(pl_module.net).eval())


def squared_gradient_norm(net, example, collate) -> float:
    batch = collate([example])
    loss = F.cross_entropy(net(batch["features"]), batch["labels"])
    grads = torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad])
    return float(sum((g.double() ** 2).sum() for g in grads))


def test_tracin_is_the_learning_rate_weighted_sum_of_squared_gradient_norms(tiny_cfg, tmp_path):
    from memlab.jobs.training import train_model

    epochs, lr = 3, 0.05
    cfg = tiny_cfg("experiment=smoke_image", f"trainer.max_epochs={epochs}", "model.lr_schedule=linear",
                   f"model.lr={lr}", "test=false", "callbacks=none")
    tracin, weights = TracInCallback(output_dir=str(tmp_path)), SaveWeights()
    trained = train_model(cfg, callbacks=[tracin, weights])
    dm = trained.datamodule
    examples = dm.splits["train"].examples
    steps = math.ceil(len(examples) / dm.batch_size)
    total = epochs * steps
    mean_lr = [np.mean([lr * (1 - k / total) for k in range(e * steps, (e + 1) * steps)]) for e in range(epochs)]
    np.testing.assert_allclose(tracin.learning_rates, mean_lr, rtol=1e-12)
    hand = {int(ex["sample_index"]): sum(eta * squared_gradient_norm(net, ex, dm.collate)
                                         for eta, net in zip(mean_lr, weights.snapshots)) for ex in examples}
    table = tracin.table().set_index("sample_index")
    assert sorted(table.index) == sorted(hand) and len(weights.snapshots) == epochs
    np.testing.assert_allclose(table["tracin"].to_numpy(), [hand[i] for i in table.index], rtol=1e-4)
    assert np.ptp(table["tracin"]) > 0.1 * table["tracin"].mean()  # instances differ: the pairing is tested
    assert (tmp_path / "tracin.csv").is_file()
