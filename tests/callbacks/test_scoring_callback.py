"""The scoring callback's memory: the curvature fit reads its batches from the loader, pass by pass."""
from __future__ import annotations

from types import SimpleNamespace

import torch

import memlab.callbacks.scoring as scoring_cb
from conftest import TinyNet
from memlab.influence.functional import TrainingObjective


class CountingLoader:
    """A re-iterable loader that counts the batches it has made."""

    batch_size = 4

    def __init__(self, n: int = 40):
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
        self.data = [{"x": x[i:i + 4], "labels": y[i:i + 4], "sample_index": torch.arange(i, i + 4)}
                     for i in range(0, n, 4)]
        self.dataset = SimpleNamespace(sample_indices=lambda: list(range(n)))
        self.made = 0

    def __iter__(self):
        for batch in self.data:
            self.made += 1
            yield dict(batch)


def test_fit_batches_are_read_per_pass_not_held(tmp_path, monkeypatch):
    """Rank 1 of 2 gets every other batch of the score loader, made only when the fit iterates
    (a list of them held every batch's prefix states: ~1.2 GB at 68k SST-2 phrases), and again at
    every pass."""
    loader = CountingLoader()
    trainer = SimpleNamespace(datamodule=SimpleNamespace(score_dataloader=lambda batch_size: loader),
                              global_rank=1, world_size=2,
                              strategy=SimpleNamespace(reduce=lambda t, reduce_op: t, barrier=lambda: None))
    module = SimpleNamespace(scoring_module=TinyNet(), training_objective=TrainingObjective())
    seen = {}
    monkeypatch.setattr(scoring_cb, "score_training_set",
                        lambda *args, **kwargs: seen.update(fit=args[4], made=loader.made))
    callback = scoring_cb.ScoringCallback(solver={"name": "exact"}, output_dir=str(tmp_path))
    callback._score_once(trainer, module, {"name": "exact"}, tmp_path)
    assert seen["made"] == 0 and not isinstance(seen["fit"], list)
    for _ in range(2):
        assert [b["sample_index"][0].item() for b in seen["fit"]] == [4, 12, 20, 28, 36]
