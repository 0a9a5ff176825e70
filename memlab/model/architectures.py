"""The one place that knows each Hugging Face text family memlab can split into a frozen prefix and a
trainable suffix (:mod:`memlab.model.text_network`): where its embeddings, blocks and final norm are,
how one block is called (mask format, Llama's rotary position embeddings, DeBERTa-v2's relative
positions), which position the head reads (the first token for encoders, the last non-padding token
for decoders) and whether the last block can be run at that position alone.

``ARCHITECTURES`` maps config.json's ``model_type`` to its :class:`Architecture`; anything else is one
line naming what is supported (:func:`architecture_for`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..utils.pretrained import ModelLoadError


@dataclass
class Parts:
    """A base model's pieces: the embeddings (a module taking ``input_ids`` or ``inputs_embeds``), its
    blocks, the norm after the last block (decoders) and the frozen state every block reads
    (``shared``: DeBERTa-v2's relative embeddings, Llama's rotary embedding; None for the others)."""
    embeddings: nn.Module
    layers: list
    final_norm: nn.Module | None = None
    shared: nn.Module | None = None


def additive_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, L] 0/1 mask -> [B, 1, 1, L] additive mask, the form eager attention adds to its scores."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def causal_additive_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """[B, L] 0/1 mask -> [B, 1, L, L] additive mask: causal and padding (right padding: no row is empty)."""
    length = attention_mask.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = causal[None, None] & attention_mask[:, None, None, :].bool()
    return (~allowed).to(dtype) * torch.finfo(dtype).min


class Architecture:
    """A BERT-style encoder: additive [B, 1, 1, L] mask, the head on the first token, and the last block
    can run at that token alone (:func:`memlab.model.text_network.first_token_layer`)."""
    decoder = False
    pooled_only = True  # the last block can compute the pooled position alone

    def __init__(self, model_type: str, description: str, layers_key: str):
        self.model_type, self.description, self.layers_key = model_type, description, layers_key

    def parts(self, model: nn.Module) -> Parts:
        return Parts(model.embeddings, list(model.encoder.layer))

    def context(self, shared: nn.Module | None, hidden: Tensor, attention_mask: Tensor) -> dict:
        """What every block of one forward gets besides the hidden states, computed once."""
        return {"attention_mask": additive_mask(attention_mask, hidden.dtype)}

    def call_block(self, layer: nn.Module, hidden: Tensor, context: dict) -> Tensor:
        out = layer(hidden, **context)
        return out[0] if isinstance(out, tuple) else out

    def pooled_index(self, attention_mask: Tensor) -> Tensor:
        """[B] position of each example that the head reads."""
        if self.decoder:  # right padding: the last non-padding token
            return attention_mask.long().sum(1) - 1
        return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)


class DistilBertArchitecture(Architecture):
    def parts(self, model: nn.Module) -> Parts:
        return Parts(model.embeddings, list(model.transformer.layer))


class ProjectedEmbeddings(nn.Module):
    """ELECTRA's embeddings followed by its projection to the hidden size (embedding_size != hidden)."""

    def __init__(self, embeddings: nn.Module, project: nn.Module):
        super().__init__()
        self.inner, self.project = embeddings, project

    @property
    def word_embeddings(self) -> nn.Module:
        return self.inner.word_embeddings

    def forward(self, input_ids=None, token_type_ids=None, inputs_embeds=None) -> Tensor:
        return self.project(self.inner(input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds))


class ElectraArchitecture(Architecture):
    def parts(self, model: nn.Module) -> Parts:
        embeddings = model.embeddings
        if hasattr(model, "embeddings_project"):
            embeddings = ProjectedEmbeddings(embeddings, model.embeddings_project)
        return Parts(embeddings, list(model.encoder.layer))


class RelativePositions(nn.Module):
    """DeBERTa-v2's relative position state, shared by every block: the (normalised) relative
    embeddings and the bucketed relative positions, as its encoder computes them."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        for name in ("relative_attention", "max_relative_positions", "position_buckets", "norm_rel_ebd"):
            setattr(self, name, getattr(encoder, name, None))
        if self.relative_attention:
            self.rel_embeddings = encoder.rel_embeddings
        if hasattr(encoder, "LayerNorm"):
            self.LayerNorm = encoder.LayerNorm

    def forward(self, hidden: Tensor) -> tuple[Tensor | None, Tensor | None]:
        from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Encoder

        # the encoder's own methods, on the attributes they read (copied above)
        return (DebertaV2Encoder.get_rel_pos(self, hidden), DebertaV2Encoder.get_rel_embedding(self))


class DebertaV2Architecture(Architecture):
    pooled_only = False  # disentangled attention: no [CLS]-only variant written
    # its query/key (or pos_*) projections also act on the relative embeddings, shared by the batch:
    # marked ``shared_input`` so EK-FAC gives them a diagonal (per-example gradients by vmap)

    def parts(self, model: nn.Module) -> Parts:
        if getattr(model.encoder, "conv", None) is not None:
            raise ModelLoadError("DeBERTa-v2 with a convolution after the first layer (conv_kernel_size > 0) "
                                 "is not supported; DeBERTa-v3 models (no convolution) are")
        for layer in model.encoder.layer:  # the Linears that also project the (shared) relative embeddings
            attention = layer.attention.self
            names = ("query_proj", "key_proj") if getattr(attention, "share_att_key", False) else \
                ("pos_key_proj", "pos_query_proj")
            for name in names:
                if hasattr(attention, name):
                    getattr(attention, name).shared_input = True  # FactorTracker: per-example grads by vmap
        return Parts(model.embeddings, list(model.encoder.layer), shared=RelativePositions(model.encoder))

    def context(self, shared, hidden, attention_mask):
        relative_pos, rel_embeddings = shared(hidden)
        mask = attention_mask[:, None, None, :] * attention_mask[:, None, :, None]
        if rel_embeddings is not None:
            rel_embeddings = rel_embeddings.to(hidden.device, hidden.dtype)
        return {"attention_mask": mask, "relative_pos": relative_pos, "rel_embeddings": rel_embeddings}


class GPT2Embeddings(nn.Module):
    """GPT-2's token + absolute position embeddings and their dropout (right padding: positions 0..L-1)."""

    def __init__(self, wte: nn.Embedding, wpe: nn.Embedding, drop: nn.Module):
        super().__init__()
        self.word_embeddings, self.position_embeddings, self.dropout = wte, wpe, drop

    def forward(self, input_ids=None, inputs_embeds=None) -> Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device)
        return self.dropout(inputs_embeds + self.position_embeddings(positions)[None])


class GPT2Architecture(Architecture):
    decoder = True
    pooled_only = False

    def parts(self, model: nn.Module) -> Parts:
        return Parts(GPT2Embeddings(model.wte, model.wpe, model.drop), list(model.h), final_norm=model.ln_f)

    def context(self, shared, hidden, attention_mask):
        return {"attention_mask": causal_additive_mask(attention_mask, hidden.dtype)}


class TokenEmbeddings(nn.Module):
    """Llama-style embeddings: the token embedding alone (positions enter each block by rotation)."""

    def __init__(self, embed_tokens: nn.Embedding):
        super().__init__()
        self.word_embeddings = embed_tokens

    def forward(self, input_ids=None, inputs_embeds=None) -> Tensor:
        return self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds


class LlamaArchitecture(Architecture):
    """Llama-style decoders (Llama, Mistral, Qwen2): RMSNorm blocks with rotary position embeddings,
    computed once per forward from the model's ``rotary_emb`` and passed to every block."""
    decoder = True
    pooled_only = False

    def parts(self, model: nn.Module) -> Parts:
        return Parts(TokenEmbeddings(model.embed_tokens), list(model.layers), final_norm=model.norm,
                     shared=model.rotary_emb)

    def context(self, shared, hidden, attention_mask):
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None].expand(hidden.shape[0], -1)
        return {"attention_mask": causal_additive_mask(attention_mask, hidden.dtype), "position_ids": positions,
                "position_embeddings": shared(hidden, positions)}


ARCHITECTURES: dict[str, Architecture] = {a.model_type: a for a in (
    Architecture("bert", "BERT-style encoders: BERT, MiniLM", "num_hidden_layers"),
    DistilBertArchitecture("distilbert", "DistilBERT", "n_layers"),
    Architecture("roberta", "RoBERTa", "num_hidden_layers"),
    ElectraArchitecture("electra", "ELECTRA", "num_hidden_layers"),
    DebertaV2Architecture("deberta-v2", "DeBERTa-v2/v3", "num_hidden_layers"),
    GPT2Architecture("gpt2", "GPT-2", "n_layer"),
    LlamaArchitecture("llama", "Llama", "num_hidden_layers"),
    LlamaArchitecture("mistral", "Mistral", "num_hidden_layers"),
    LlamaArchitecture("qwen2", "Qwen2", "num_hidden_layers"),
)}


def supported_line() -> str:
    return "; ".join(f"{a.description} (model_type {t})" for t, a in ARCHITECTURES.items())


def architecture_for(model_type: str | None, name: str = "the model") -> Architecture:
    """The family of config.json's ``model_type``; ModelLoadError (one line naming the supported ones) else."""
    if model_type not in ARCHITECTURES:
        raise ModelLoadError(f"model.pretrained={name} is a {model_type or 'model without a model_type'} "
                             f"model; supported: {supported_line()}")
    return ARCHITECTURES[model_type]


def layer_count(config: dict) -> int | None:
    """The number of transformer blocks in a (supported) config.json, as a dict."""
    arch = ARCHITECTURES.get(config.get("model_type"))
    return config.get(arch.layers_key) if arch else None
