"""A researcher's own ``pytorch_lightning`` callback plugs into memlab's training loop, both passed
in code and named in the config (memlab imports ``pytorch_lightning``, not the ``lightning`` umbrella,
whose ``lightning.pytorch.Callback`` is another class that this trainer would reject)."""
from __future__ import annotations

import pytorch_lightning as pl
from omegaconf import open_dict

from memlab.jobs.training import train_model


class EpochCounter(pl.Callback):
    """Counts the training epochs it sees."""

    instances: list["EpochCounter"] = []

    def __init__(self):
        self.epochs = 0
        EpochCounter.instances.append(self)

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs += 1


def test_a_pytorch_lightning_callback_passed_in_code_is_called(tiny_cfg):
    counter = EpochCounter()
    trained = train_model(tiny_cfg("trainer.max_epochs=2"), callbacks=[counter])
    assert isinstance(trained.trainer, pl.Trainer)
    assert counter.epochs == 2


def test_a_pytorch_lightning_callback_named_in_the_config_is_called(tiny_cfg):
    cfg = tiny_cfg("trainer.max_epochs=3")
    with open_dict(cfg):
        cfg.callbacks.my_counter = {"_target_": f"{__name__}.EpochCounter"}
    EpochCounter.instances.clear()
    train_model(cfg)
    assert [c.epochs for c in EpochCounter.instances] == [3]
