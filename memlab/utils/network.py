"""What is on this machine and what can be reached: the Hugging Face caches, the hub's offline switches and a
TCP probe. The sources' own "readable offline?" probes (:func:`memlab.data.text_sources.hub_offline_needs`,
:func:`memlab.data.custom_source.custom_offline_needs`, :func:`memlab.data.image_sources.cifar10_offline_needs`,
:func:`memlab.data.backbones.backbone_offline_needs`, :func:`memlab.utils.pretrained.pretrained_offline_needs`)
are built on these; each returns ``[(what needs a download, the override that avoids it)]``.
"""
from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

HUB_ENDPOINT = "https://huggingface.co"


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HUB_ENDPOINT)


def hub_offline() -> bool:
    """Whether the user switched the hub off (``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1``)."""
    return os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def hub_reachable() -> bool:
    """The hub is switched on and answers."""
    return not hub_offline() and reachable(hub_endpoint())


def hub_model_cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # a name that is not a valid repo id is not in the cache either
        return False


def hub_dataset_cached(repo_id: str) -> bool:
    """Whether the datasets library or the hub cache already holds ``repo_id`` (usable offline)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    home = Path(os.environ.get("HF_DATASETS_CACHE", Path(HF_HUB_CACHE).parent / "datasets"))
    return (Path(HF_HUB_CACHE) / f"datasets--{repo_id.replace('/', '--')}").is_dir() or \
        (home / repo_id.replace("/", "___")).is_dir()


@functools.lru_cache(maxsize=8)
def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the host of ``url`` opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
