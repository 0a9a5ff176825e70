"""The frozen-prefix cache gives the same logits as running the whole encoder, and is reused."""
from __future__ import annotations

import torch

from memlab.callbacks.prefix_cache import apply_prefix_cache
from memlab.data.text import TextDataModule
from memlab.model.text_network import build_text_classifier


def setup_pair():
    dm = TextDataModule(name="t", tokenizer="tiny-random", source="generated", generated_task="pair", pair=True,
                        batch_size=8)
    dm.setup()
    net = build_text_classifier("tiny-random", num_classes=2, freeze_layers=4).eval()
    return dm, net


def test_cached_logits_equal_uncached(tmp_path):
    dm, net = setup_pair()
    uncached = [net(**{k: v for k, v in b.items() if k != "labels"}) for b in dm.score_dataloader()]
    apply_prefix_cache(dm, net, "tiny", str(tmp_path))
    batches = list(dm.score_dataloader())
    assert "hidden" in batches[0]
    cached = [net(hidden=b["hidden"], attention_mask=b["attention_mask"]) for b in batches]
    torch.testing.assert_close(torch.cat(cached), torch.cat(uncached), rtol=1e-5, atol=1e-5)
    # the suffix really depends on the cached states (not a silent fallback to input_ids)
    b = batches[0]
    assert not torch.allclose(net(hidden=b["hidden"] * 0, attention_mask=b["attention_mask"]), cached[0])


def test_disk_cache_is_reused(tmp_path, monkeypatch):
    dm, net = setup_pair()
    apply_prefix_cache(dm, net, "tiny", str(tmp_path))
    files = sorted((tmp_path / "prefix").glob("*.pt"))
    assert len(files) == 3
    dm2, _ = setup_pair()
    calls = []
    monkeypatch.setattr(net.prefix, "forward", lambda *a, **k: calls.append(1))
    apply_prefix_cache(dm2, net, "tiny", str(tmp_path))
    assert not calls
    torch.testing.assert_close(dm2.full_train.examples[5]["hidden"], dm.full_train.examples[5]["hidden"])


def test_only_suffix_is_trainable():
    _, net = setup_pair()
    assert not any(p.requires_grad for p in net.prefix.parameters())
    assert all(p.requires_grad for p in net.suffix.parameters())
    assert len(net.suffix.layers) == 2
