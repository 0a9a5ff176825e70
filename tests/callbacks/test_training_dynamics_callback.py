"""The training-dynamics callback in a real tiny fit (text through the frozen-prefix cache, and image
features): one record per instance per epoch, each equal to a by-hand recomputation from the logits
the training step returned."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as L
import pytest

from memlab.callbacks.training_dynamics import TrainingDynamicsCallback, load_records


class LogitsLog(L.Callback):
    """What the training step returned, batch by batch: (epoch, sample_index, labels, logits)."""

    def __init__(self):
        self.batches = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches.append((trainer.current_epoch, np.asarray(batch["sample_index"]),
                             batch["labels"].numpy(), outputs["logits"].double().numpy()))


def by_hand(epoch, index, labels, logits):
    """correct, margin, EL2N and CE of each row, written out in float64 numpy."""
    rows = {}
    for i, y, z in zip(index, labels, logits):
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        onehot = np.zeros_like(z)
        onehot[y] = 1.0
        rows[(epoch, int(i))] = (float(np.argmax(z) == y), z[y] - np.delete(z, y).max(),
                                 np.sqrt(((p - onehot) ** 2).sum()), -np.log(p[y]))
    return rows


@pytest.mark.parametrize("experiment", ["smoke", "smoke_image"])
def test_records_equal_a_recomputation_from_the_logged_logits(tiny_cfg, tmp_path, experiment):
    from memlab.jobs.subset_training import train_on_subset, training_split

    cfg = tiny_cfg(f"experiment={experiment}", "trainer.max_epochs=2")
    dynamics, logged = TrainingDynamicsCallback(), LogitsLog()
    exclude = training_split(cfg).full_train.sample_indices()[:3]  # left out: not recorded
    predictions, *_ = train_on_subset(cfg, 0, exclude, [dynamics, logged])
    records = dynamics.records()
    trained = sorted(set(predictions.sample_index.tolist()) - set(exclude))
    assert len(records) == 2 * len(trained) and records["epoch"].value_counts().to_dict() == {0: len(trained), 1: len(trained)}
    for epoch in (0, 1):
        assert sorted(records.loc[records["epoch"] == epoch, "sample_index"]) == trained
    expected = {}
    for batch in logged.batches:
        expected.update(by_hand(*batch))
    got = records.set_index(["epoch", "sample_index"]).sort_index()
    want = np.array([expected[key] for key in got.index])
    np.testing.assert_allclose(got[["correct", "margin", "el2n", "loss"]].to_numpy(float), want, rtol=1e-5, atol=1e-5)
    assert got["correct"].dtype == bool and 0 < dynamics.seconds
    dynamics.save(tmp_path / "dynamics.npz")
    again, seconds = load_records(tmp_path / "dynamics.npz")
    assert seconds == dynamics.seconds
    np.testing.assert_array_equal(again.to_numpy(), records.to_numpy())


def test_one_line_errors_under_ddp_and_without_logits():
    from types import SimpleNamespace

    import torch

    from memlab.errors import ConfigError

    callback = TrainingDynamicsCallback()
    with pytest.raises(ConfigError, match="single process"):
        callback.on_fit_start(SimpleNamespace(world_size=2), None)
    batch = {"labels": torch.tensor([0]), "sample_index": torch.tensor([3])}
    with pytest.raises(ConfigError, match="logits"):
        callback.on_train_batch_end(None, None, torch.tensor(0.5), batch, 0)  # a step that returns the loss alone
