"""Every supported family (issue 27), as a tiny random model built from its transformers config: the
prefix + suffix give the full model's pooled hidden state (first token for encoders, last non-padding
token for decoders), the pooled-position-only last block equals the full one, and memorization scores
(EK-FAC, with the own term and loo_score) and embedding attributions come out finite. An unsupported
model_type is one line naming the supported ones."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from memlab.influence.functional import TrainingObjective, default_l2_names, trainable_params
from memlab.influence.self_influence import memorization_scores
from memlab.influence.solver import make_solver
from memlab.model.architectures import ARCHITECTURES, architecture_for
from memlab.model.text_network import TextClassifierNet
from memlab.pipeline.attributing import attribute_text
from memlab.utils.pretrained import ModelLoadError
from tiny_families import FAMILIES, VOCAB, base_model

DECODERS = {"gpt2", "llama", "mistral", "qwen2"}


def _batch(seed: int = 1, batch: int = 4, length: int = 9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding, as memlab's collate pads
    mask[3, 4:] = 0
    return ids, mask


def _no_dropout(net):
    for m in net.modules():
        for name in ("p", "dropout", "attention_dropout"):
            if isinstance(getattr(m, name, None), float):
                setattr(m, name, 0.0)
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


@pytest.mark.parametrize("kind", FAMILIES)
def test_prefix_and_suffix_give_the_full_models_pooled_state(kind):
    model = base_model(kind).eval()
    net = TextClassifierNet(model, num_classes=3, freeze_layers=1, dropout=0.0).eval()
    ids, mask = _batch()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows = torch.arange(len(ids))
        # pooled position by hand: [CLS] for encoders, the last real token for decoders
        pooled = mask.sum(1) - 1 if kind in DECODERS else torch.zeros(len(ids), dtype=torch.long)
        expected = net.suffix.classifier(full[rows, pooled])
        logits = net(input_ids=ids, attention_mask=mask)
    assert architecture_for(kind).decoder == (kind in DECODERS)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    # the frozen part holds the embeddings and the first block only; θ is the rest and the head
    assert not any(p.requires_grad for p in net.prefix.parameters())
    assert len(net.prefix.layers) == 1 and len(net.suffix.layers) == 2
    if kind in DECODERS:  # the final norm trains with the blocks after it
        assert any(n.startswith("final_norm.") for n, _ in net.suffix.named_parameters())


@pytest.mark.parametrize("kind", FAMILIES)
def test_pooled_position_only_last_block_equals_the_full_block(kind):
    net = TextClassifierNet(base_model(kind), num_classes=3, freeze_layers=1, dropout=0.0)
    _no_dropout(net)
    ids, mask = _batch()
    hidden = net.prefix(ids, mask)
    for mode in (True, False):
        net.suffix.train(mode)
        results = {}
        for first in (None, False):
            net.suffix.zero_grad()
            logits = net.suffix(hidden=hidden, attention_mask=mask, first_token_only=first)
            logits.pow(2).sum().backward()
            results[first] = (logits.detach(), [p.grad.clone() for p in net.suffix.parameters()])
        torch.testing.assert_close(results[None][0], results[False][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(results[None][1], results[False][1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert results[False][0].abs().sum() > 0


def _fitted(kind: str, n: int = 24):
    """A tiny classifier of ``kind`` a few SGD steps into fitting random labels, its θ and batches."""
    torch.manual_seed(0)
    net = TextClassifierNet(base_model(kind, layers=2), num_classes=2, freeze_layers=1, dropout=0.0)
    g = torch.Generator().manual_seed(2)
    examples = []
    for i in range(n):
        length = 3 + i % 5
        examples.append({"input_ids": torch.randint(4, VOCAB, (length,), generator=g),
                         "labels": torch.tensor(i % 2), "sample_index": torch.tensor(i)})
    batches = []
    for start in range(0, n, 8):
        chunk = examples[start:start + 8]
        ids = torch.nn.utils.rnn.pad_sequence([e["input_ids"] for e in chunk], batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(e["input_ids"]) for e in chunk], batch_first=True)
        with torch.no_grad():
            hidden = net.prefix(ids, mask)
        for e, h in zip(chunk, hidden):
            e["hidden"] = h[: len(e["input_ids"])]
        batches.append({"hidden": hidden, "attention_mask": mask, "labels": torch.stack([e["labels"] for e in chunk]),
                        "sample_index": torch.stack([e["sample_index"] for e in chunk])})
    opt = torch.optim.SGD(net.suffix.parameters(), lr=0.05)
    for _ in range(3):
        for b in batches:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net.suffix(hidden=b["hidden"], attention_mask=b["attention_mask"]),
                                              b["labels"]).backward()
            opt.step()
    module = net.suffix.eval()
    params = trainable_params(module)
    objective = TrainingObjective(l2=1e-3, l2_names=default_l2_names(module))
    return net, module, params, objective, batches, examples


@pytest.mark.parametrize("kind", FAMILIES)
def test_memorization_scores_and_embedding_attributions_are_finite(kind):
    net, module, params, objective, batches, examples = _fitted(kind)
    solver = make_solver("ekfac", 0.01).fit(module, params, batches, objective)
    # every Linear (and GPT-2 Conv1D) of the trainable blocks and the head is a Kronecker block
    linears = {n for n, m in module.named_modules()
               if (isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D")
               and not getattr(m, "shared_input", False)}  # DeBERTa's relative-embedding projections: vmap
    assert {b.weight.rsplit(".", 1)[0] for b in solver.blocks} == linears
    if kind == "gpt2":
        assert any(b.transposed for b in solver.blocks)
    if kind == "deberta-v2":
        assert any("pos_key_proj" in n for n in solver.diagonal)
    rows = list(memorization_scores(module, params, batches, solver, objective, own_term_n=len(examples)))
    scores = torch.cat([r["mem_score"] for r in rows])
    loo = torch.cat([r["loo_score"] for r in rows])
    assert len(scores) == len(examples) and torch.isfinite(scores).all() and torch.isfinite(loo).all()
    assert (scores != loo).any()  # the own term changes the scores
    # the hooked token-factor path equals plain per-example gradients (vmap) through the same solver:
    # every Linear/Conv1D factor (and DeBERTa's projections of its shared relative embeddings) is right
    plain = torch.cat([r["mem_score"] for r in memorization_scores(module, params, batches, solver, objective,
                                                                   fast=False)])
    plain_scores = torch.cat([r["mem_score"] for r in memorization_scores(module, params, batches, solver, objective)])
    torch.testing.assert_close(plain_scores.double(), plain.double(), rtol=1e-4, atol=1e-6 * float(plain.abs().max()))
    tokenizer = SimpleNamespace(cls_token_id=None if kind in DECODERS else 1,
                                sep_token_id=None if kind in DECODERS else 2,
                                bos_token_id=3 if kind in DECODERS else None, eos_token_id=2 if kind in DECODERS else None,
                                mask_token_id=None if kind in DECODERS else 3, unk_token_id=0, pad_token_id=0,
                                convert_ids_to_tokens=lambda ids: [str(i) for i in ids])
    records = attribute_text(net, module, params, solver, objective, examples[:2], tokenizer, steps=3,
                             placement="embeddings", progress=False)
    for r, e in zip(records, examples):
        assert len(r["attributions"]) == len(e["input_ids"])
        assert all(torch.isfinite(torch.tensor(r["attributions"])))
        assert any(a != 0 for a in r["attributions"])


def test_unsupported_model_type_is_one_line_naming_the_supported():
    with pytest.raises(ModelLoadError) as e:
        architecture_for("t5", "some/model")
    message = str(e.value)
    assert "\n" not in message and message.startswith("model.pretrained=some/model is a t5 model; supported:")
    for t in ("bert", "distilbert", "roberta", "electra", "deberta-v2", "gpt2", "llama"):
        assert f"(model_type {t})" in message and t in ARCHITECTURES
