"""The suffix computes its last layer at [CLS] only (in every mode); it must equal the full layers there."""
import pytest
import torch
from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

from memlab.model.text_network import TextClassifierNet, additive_mask, first_token_layer


def _encoders():
    bert = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                intermediate_size=64, attn_implementation="eager"), add_pooling_layer=False)
    distil = DistilBertModel(DistilBertConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4, hidden_dim=64,
                                              attn_implementation="eager"))
    return {"bert": bert, "distilbert": distil}


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_first_token_training_forward_equals_full_layers(kind):
    torch.manual_seed(0)
    net = TextClassifierNet(_encoders()[kind], num_classes=3, freeze_layers=1, dropout=0.0)
    for m in net.modules():  # no dropout anywhere: train mode must then give eval mode's function
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    if kind == "distilbert":
        for layer in net.suffix.layers:
            layer.attention.dropout.p = 0.0
    ids = torch.randint(1, 50, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding must be masked for [CLS] as in the full layer
    hidden = net.prefix(ids, mask)
    assert first_token_layer(net.suffix.layers[-1], hidden, additive_mask(mask, hidden.dtype)).shape == (4, 1, 32)
    for mode in ("train", "eval"):
        net.suffix.train(mode == "train")
        grads = {}
        for first in (None, False):  # the default (first token only) against the full layers
            net.suffix.zero_grad()
            logits = net.suffix(hidden=hidden, attention_mask=mask, first_token_only=first)
            logits.pow(2).sum().backward()
            grads[first] = (logits.detach(), [p.grad.clone() for p in net.suffix.parameters()])
        torch.testing.assert_close(grads[None][0], grads[False][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(grads[None][1], grads[False][1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert grads[False][0].abs().sum() > 0
