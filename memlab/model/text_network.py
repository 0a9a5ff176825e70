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

from .architectures import ARCHITECTURES, Architecture, additive_mask, architecture_for  # noqa: F401 (re-exported)


def encoder_parts(encoder: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(embeddings, transformer layers) of a BERT-family or DistilBERT encoder."""
    if hasattr(encoder, "encoder") and hasattr(encoder.encoder, "layer"):  # BERT, MiniLM, RoBERTa
        return encoder.embeddings, encoder.encoder.layer
    if hasattr(encoder, "transformer") and hasattr(encoder.transformer, "layer"):  # DistilBERT
        return encoder.embeddings, encoder.transformer.layer
    raise TypeError(f"unsupported encoder {type(encoder).__name__}: expected BERT- or DistilBERT-style layers")


def run_layers(layers, hidden: Tensor, attention_mask: Tensor, first_token_last: bool = False) -> Tensor:
    """Hidden states after ``layers``. With ``first_token_last`` the last layer computes position 0
    ([CLS]) only: ``[B, 1, H]``, the same values the full layer gives there (see first_token_layer)."""
    mask = additive_mask(attention_mask, hidden.dtype)
    for i, layer in enumerate(layers):
        if first_token_last and i == len(layers) - 1:
            cls = first_token_layer(layer, hidden, mask)
            if cls is not None:
                return cls
        out = layer(hidden, attention_mask=mask)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def run_blocks(layers, hidden: Tensor, attention_mask: Tensor, arch: Architecture | None = None,
               shared: nn.Module | None = None, pooled_last: bool = False) -> Tensor:
    """Hidden states after ``layers`` of family ``arch`` (None: BERT-style). ``pooled_last``: the last
    block at the first token only, where the family can (``arch.pooled_only``: [B, 1, H])."""
    if arch is None or arch.pooled_only:  # BERT-style blocks: the path bert/distilbert always took
        return run_layers(layers, hidden, attention_mask, first_token_last=pooled_last)
    context = arch.context(shared, hidden, attention_mask) if len(layers) else None
    for layer in layers:
        hidden = arch.call_block(layer, hidden, context)
    return hidden


def _first_token_attention(attn: nn.Module, q_lin: nn.Module, k_lin: nn.Module, v_lin: nn.Module,
                           hidden: Tensor, mask: Tensor) -> Tensor:
    """Self-attention output at position 0: the query of [CLS] against every key (eager attention)."""
    batch, length, _ = hidden.shape
    size = attn.attention_head_size
    query = q_lin(hidden[:, :1]).view(batch, 1, -1, size).transpose(1, 2)
    key = k_lin(hidden).view(batch, length, -1, size).transpose(1, 2)
    value = v_lin(hidden).view(batch, length, -1, size).transpose(1, 2)
    weights = torch.softmax(query @ key.transpose(2, 3) * attn.scaling + mask, dim=-1)
    weights = nn.functional.dropout(weights, p=attn.dropout.p, training=attn.training)
    return (weights @ value).transpose(1, 2).reshape(batch, 1, -1)


def first_token_layer(layer: nn.Module, hidden: Tensor, mask: Tensor) -> Tensor | None:
    """A BERT or DistilBERT layer's output at position 0 only, ``[B, 1, H]``; None for other layers.

    Only [CLS] of the last layer reaches the head, so its query, attention output and feed-forward
    are needed at one position instead of all T (keys and values still see every token): the last
    layer costs ~1/6 of a full one, and training runs ~1.5x faster with the same function.
    """
    first = hidden[:, :1]
    if hasattr(layer, "attention") and hasattr(layer.attention, "self") and hasattr(layer, "intermediate"):
        sa = layer.attention.self  # BERT / MiniLM
        context = _first_token_attention(sa, sa.query, sa.key, sa.value, hidden, mask)
        attended = layer.attention.output(context, first)
        return layer.output(layer.intermediate(attended), attended)
    if hasattr(layer, "sa_layer_norm") and hasattr(layer, "ffn"):
        sa = layer.attention  # DistilBERT
        context = _first_token_attention(sa, sa.q_lin, sa.k_lin, sa.v_lin, hidden, mask)
        attended = layer.sa_layer_norm(sa.out_lin(context) + first)
        return layer.output_layer_norm(layer.ffn(attended) + attended)
    return None


class FrozenPrefix(nn.Module):
    """Embeddings + transformer layers [0, k): their output never changes during training."""

    def __init__(self, embeddings: nn.Module, layers, arch: Architecture | None = None,
                 shared: nn.Module | None = None):
        super().__init__()
        self.embeddings = embeddings
        self.layers = nn.ModuleList(layers)
        self.arch = arch
        if shared is not None:  # registered here only: frozen, and in the prefix's fingerprint
            self.shared = shared
        self._takes_token_types = "token_type_ids" in inspect.signature(embeddings.forward).parameters
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FrozenPrefix":
        """Always eval: frozen means no dropout either, so the outputs equal the cached ones."""
        return super().train(False)

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        if self._takes_token_types and token_type_ids is not None:
            return self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return self.embeddings(input_ids=input_ids)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return run_blocks(self.layers, self.embed(input_ids, token_type_ids), attention_mask, self.arch,
                          getattr(self, "shared", None))


class TrainableSuffix(nn.Module):
    """Transformer layers [k, n) + dropout + Linear head on the [CLS] position: θ of the paper.

    The last layer computes [CLS] only (:func:`first_token_layer`), in training, evaluation and
    everything the influence functions differentiate: the same logits as the full layers for ~2/3
    of their cost. The hooks of :mod:`memlab.influence.tracking` see its query, attention output and
    feed-forward Linears with one position (they are the same modules), which is all of theirs that
    carries gradient anyway. ``first_token_only=False`` runs the full layers.
    """

    def __init__(self, layers, hidden_size: int, num_classes: int, dropout: float = 0.1, layer_dropout: bool = True,
                 arch: Architecture | None = None, final_norm: nn.Module | None = None,
                 shared: nn.Module | None = None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.arch = arch
        if final_norm is not None:  # decoders: the norm after the last block trains with the blocks
            self.final_norm = final_norm
        # the frozen state every block reads (the prefix registers it): not a submodule, so not in θ
        self._shared = (shared,)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)
        self.layer_dropout = layer_dropout
        self.train(self.training)  # from_pretrained left the layers in eval mode: follow the suffix's own

    def train(self, mode: bool = True) -> "TrainableSuffix":
        """Train mode switches the layers' own dropout on (the encoder's, 0.1 in DistilBERT and MiniLM,
        as the study trained); with ``layer_dropout=False`` only the head's dropout is (memlab < 0.2)."""
        super().train(mode)
        self.layers.train(mode and self.layer_dropout)
        return self

    def forward(self, hidden: Tensor, attention_mask: Tensor, first_token_only: bool | None = None,
                **unused) -> Tensor:
        """Logits; ``first_token_only`` (default: True) runs the last layer at [CLS] only (encoders whose
        family can; the others run their full blocks). The head reads the family's pooled position."""
        first = True if first_token_only is None else first_token_only
        arch = self.arch
        hidden = run_blocks(self.layers, hidden, attention_mask, arch, self._shared[0], pooled_last=first)
        if getattr(self, "final_norm", None) is not None:
            hidden = self.final_norm(hidden)
        if arch is None or not arch.decoder:
            return self.classifier(self.dropout(hidden[:, 0]))
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return self.classifier(self.dropout(hidden[rows, arch.pooled_index(attention_mask)]))


class TextClassifierNet(nn.Module):
    """prefix -> suffix. ``forward`` takes token ids, or the cached prefix output as ``hidden``."""

    def __init__(self, encoder: nn.Module, num_classes: int, freeze_layers: int = 4, dropout: float = 0.1,
                 layer_dropout: bool = True):
        super().__init__()
        arch = architecture_for(getattr(encoder.config, "model_type", None), type(encoder).__name__)
        parts = arch.parts(encoder)
        layers = parts.layers
        if not 0 <= freeze_layers <= len(layers):
            raise ValueError(f"freeze_layers={freeze_layers} but the encoder has {len(layers)} layers")
        self.freeze_layers = freeze_layers
        self.arch = arch
        self.prefix = FrozenPrefix(parts.embeddings, list(layers)[:freeze_layers], arch, parts.shared)
        self.suffix = TrainableSuffix(list(layers)[freeze_layers:], encoder.config.hidden_size, num_classes, dropout,
                                      layer_dropout, arch, parts.final_norm, parts.shared)
        self.config = encoder.config

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                hidden: Tensor | None = None, token_type_ids: Tensor | None = None,
                first_token_only: bool | None = None, **unused) -> Tensor:
        if hidden is None:
            with torch.no_grad():
                hidden = self.prefix(input_ids, attention_mask, token_type_ids)
        return self.suffix(hidden=hidden, attention_mask=attention_mask, first_token_only=first_token_only)


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
        hidden = run_blocks(self.prefix.layers, hidden, attention_mask, self.prefix.arch,
                            getattr(self.prefix, "shared", None))
        return self.suffix(hidden=hidden, attention_mask=attention_mask)


def build_text_classifier(pretrained: str, num_classes: int, freeze_layers: int = 4, dropout: float = 0.1,
                          seed: int = 0, layer_dropout: bool = True) -> TextClassifierNet:
    """Hydra target: load ``pretrained`` (hub id, folder, ``packaged:NAME`` or ``tiny-random``).
    ``layer_dropout``: the trainable layers train with the encoder's dropout (the study's setting)."""
    from .encoders import load_encoder

    encoder = load_encoder(pretrained, seed=seed)
    torch.manual_seed(seed)  # the head's initialisation follows the training seed
    return TextClassifierNet(encoder, num_classes, freeze_layers, dropout, layer_dropout)
