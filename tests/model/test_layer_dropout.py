"""The trainable encoder layers train with their dropout (the study's 0.1), even though from_pretrained
leaves an encoder in eval mode and Lightning keeps every submodule's mode; the frozen prefix never does."""
from __future__ import annotations

import pytorch_lightning as L
import pytest
import torch
from torch.utils.data import DataLoader
from transformers import BertConfig, BertModel

from memlab.model.classifier import ClassifierModule
from memlab.model.text_network import TextClassifierNet


def _pretrained_like_encoder() -> BertModel:
    encoder = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                   intermediate_size=64, hidden_dropout_prob=0.5, attn_implementation="eager"),
                        add_pooling_layer=False)
    return encoder.eval()  # as from_pretrained returns it


class ModeProbe(L.Callback):
    """Records, at the first training step, which dropout modules are active."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        net = pl_module.net
        self.suffix_layers = [m.training for m in net.suffix.layers.modules() if isinstance(m, torch.nn.Dropout)]
        self.head = net.suffix.dropout.training
        self.prefix = [m.training for m in net.prefix.modules()]


def _fit_one_step(layer_dropout: bool) -> ModeProbe:
    torch.manual_seed(0)
    net = TextClassifierNet(_pretrained_like_encoder(), num_classes=2, freeze_layers=1, layer_dropout=layer_dropout)
    net.eval()  # whatever mode the net arrives in, training must switch the suffix on
    module = ClassifierModule(net, num_classes=2)
    ids = torch.randint(1, 50, (8, 6))
    batches = [{"input_ids": ids[i:i + 4], "attention_mask": torch.ones(4, 6, dtype=torch.long),
                "labels": torch.randint(0, 2, (4,)), "sample_index": torch.arange(i, i + 4)} for i in (0, 4)]
    probe = ModeProbe()
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[probe], num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    return probe


def test_trainable_layers_train_with_dropout_and_the_prefix_never():
    probe = _fit_one_step(layer_dropout=True)
    assert probe.suffix_layers and all(probe.suffix_layers)
    assert probe.head
    assert not any(probe.prefix)


def test_layer_dropout_false_keeps_only_the_head_dropout():
    probe = _fit_one_step(layer_dropout=False)
    assert probe.suffix_layers and not any(probe.suffix_layers)
    assert probe.head


@pytest.mark.parametrize("layer_dropout", [True, False])
def test_eval_mode_is_deterministic_and_train_mode_is_not(layer_dropout):
    torch.manual_seed(0)
    net = TextClassifierNet(_pretrained_like_encoder(), num_classes=2, freeze_layers=1, dropout=0.0,
                            layer_dropout=layer_dropout)
    hidden = torch.randn(4, 6, 32)
    mask = torch.ones(4, 6, dtype=torch.long)
    net.train()
    differs = not torch.equal(net.suffix(hidden=hidden, attention_mask=mask), net.suffix(hidden=hidden, attention_mask=mask))
    assert differs == layer_dropout  # the head's dropout is 0 here: only the layers' can differ
    net.eval()
    torch.testing.assert_close(net.suffix(hidden=hidden, attention_mask=mask), net.suffix(hidden=hidden, attention_mask=mask))
