"""Data modules: text (SST-2 sentences or GLUE-style phrases, SNLI, Yahoo! Answers) and image features
(CIFAR-10 and stand-ins); :mod:`.disk_store` keeps large cached tensors (prefix hidden states, backbone
features) on disk, streamed in and read per batch."""
from ..errors import DataError


def __getattr__(name: str):
    # imported on first use: the readers (and the early config checks) must not pay for Lightning
    if name in ("ListDataset", "MemlabDataModule"):
        from . import base

        return getattr(base, name)
    raise AttributeError(name)


__all__ = ["DataError", "ListDataset", "MemlabDataModule"]
