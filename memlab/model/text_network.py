"""The paper's text classifier as two modules: a frozen prefix (embeddings + the first
``freeze_layers`` transformer layers) and a trainable suffix (the remaining layers + a linear head on
[CLS]). The split is what makes memlab fast: the prefix output of a data set is computed once
(:mod:`memlab.model.prefix_cache`) and training, scoring and retraining run only the suffix, which is
also the module (and θ) the influence functions of :mod:`memlab.influence` differentiate.
"""
from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn


def encoder_parts(encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(embeddings, transformer layers) of a BERT-family or DistilBERT encoder."""
    if hasattr(encoder, "encoder") and hasattr(encoder.encoder, "layer"):  # BERT, MiniLM, RoBERTa
        return encoder.embeddings, encoder.encoder.layer
    if hasattr(encoder, "transformer") and hasattr(encoder.transformer, "layer"):  # DistilBERT
        return encoder.embeddings, encoder.transformer.layer
    raise TypeError(f"unsupported encoder {type(encoder).__name__}: expected BERT- or DistilBERT-style layers")


def additive_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, L] 0/1 mask -> [B, 1, 1, L] additive mask, the form eager attention adds to its scores."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def run_layers(layers, hidden: Tensor, attention_mask: Tensor) -> Tensor:
    mask = additive_mask(attention_mask, hidden.dtype)
    for layer in layers:
        out = layer(hidden, attention_mask=mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


class FrozenPrefix(nn.Module):
    """Embeddings + transformer layers [0, k): their output never changes during training."""

    def __init__(self, embeddings: nn.Module, layers):
        super().__init__()
        self.embeddings = embeddings
        self.layers = nn.ModuleList(layers)
        self._takes_token_types = "token_type_ids" in inspect.signature(embeddings.forward).parameters
        self.requires_grad_(False)

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        if self._takes_token_types and token_type_ids is not None:
            return self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.embeddings(input_ids=input_ids)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return run_layers(self.layers, self.embed(input_ids, token_type_ids), attention_mask)


class TrainableSuffix(nn.Module):
    """Transformer layers [k, n) + dropout + Linear head on the [CLS] position: θ of the paper."""

    def __init__(self, layers, hidden_size: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, hidden: Tensor, attention_mask: Tensor, **unused) -> Tensor:
        hidden = run_layers(self.layers, hidden, attention_mask)
        return self.classifier(self.dropout(hidden[:, 0]))


class TextClassifierNet(nn.Module):
    """prefix -> suffix. ``forward`` takes token ids, or the cached prefix output as ``hidden``."""

    def __init__(self, encoder: nn.Module, num_classes: int, freeze_layers: int = 4, dropout: float = 0.1):
        super().__init__()
        embeddings, layers = encoder_parts(encoder)
        if not 0 <= freeze_layers <= len(layers):
            raise ValueError(f"freeze_layers={freeze_layers} but the encoder has {len(layers)} layers")
        self.freeze_layers = freeze_layers
        self.prefix = FrozenPrefix(embeddings, list(layers)[:freeze_layers])
        self.suffix = TrainableSuffix(list(layers)[freeze_layers:], encoder.config.hidden_size, num_classes, dropout)
        self.config = encoder.config

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                hidden: Tensor | None = None, token_type_ids: Tensor | None = None, **unused) -> Tensor:
        if hidden is None:
            with torch.no_grad():
                hidden = self.prefix(input_ids, attention_mask, token_type_ids)
        return self.suffix(hidden=hidden, attention_mask=attention_mask)


class EmbeddingsToLogits(nn.Module):
    """The whole classifier as a function of the word embeddings (the paper's text places Eq. 5 there):
    position/type embeddings + LayerNorm, the frozen layers, then the trainable suffix. Its θ are the
    suffix's parameters under the prefix ``suffix.``."""

    def __init__(self, net: TextClassifierNet):
        super().__init__()
        self.prefix, self.suffix = net.prefix, net.suffix
        self.train(net.training)  # a new module starts in train mode; follow the wrapped net's mode

    def word_embeddings(self, input_ids: Tensor) -> Tensor:
        return self.prefix.embeddings.word_embeddings(input_ids)

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor, **unused) -> Tensor:
        hidden = self.prefix.embeddings(input_ids=None, inputs_embeds=inputs_embeds)
        hidden = run_layers(self.prefix.layers, hidden, attention_mask)
        return self.suffix(hidden=hidden, attention_mask=attention_mask)


def build_text_classifier(pretrained: str, num_classes: int, freeze_layers: int = 4, dropout: float = 0.1,
                          seed: int = 0) -> TextClassifierNet:
    """Hydra target: load ``pretrained`` (hub id, folder, ``packaged:NAME`` or ``tiny-random``)."""
    from .encoders import load_encoder

    encoder = load_encoder(pretrained, seed=seed)
    torch.manual_seed(seed)  # the head's initialisation follows the training seed
    return TextClassifierNet(encoder, num_classes, freeze_layers, dropout)
