"""Callback that swaps a text data module's splits for cached frozen-prefix outputs before training,
so every epoch (and later scoring) runs only the trainable suffix."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from ..model.prefix_cache import prefix_key, with_prefix_outputs


class FrozenPrefixCache(L.Callback):
    def __init__(self, enabled: bool = True, cache_dir: str | None = None, dtype: str = "float32",
                 batch_size: int = 64):
        self.enabled, self.cache_dir, self.dtype, self.batch_size = enabled, cache_dir, dtype, batch_size

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        net = getattr(pl_module, "net", None)
        if not self.enabled or dm is None or not hasattr(net, "prefix") or not hasattr(dm, "fingerprint"):
            return
        apply_prefix_cache(dm, net, pl_module.hparams.get("pretrained") or "model", self.cache_dir,
                           getattr(torch, self.dtype), self.batch_size)


def apply_prefix_cache(dm, net, model_name: str, cache_dir: str | None, dtype=torch.float32, batch_size: int = 64):
    """Give every split of ``dm`` the prefix outputs of ``net`` (idempotent; disk-cached if ``cache_dir``)."""
    dm.setup()
    if getattr(dm, "prefix_cached", False):
        return
    key = prefix_key(model_name, net.freeze_layers, dm.fingerprint(), str(dtype))

    def transform(split, ds):
        file = Path(cache_dir) / "prefix" / f"{key}-{split}.pt" if cache_dir else None
        return with_prefix_outputs(net.prefix, ds, file, batch_size, dtype, desc=f"prefix cache ({split})")

    dm.transform_splits(transform)
    dm.prefix_cached = True
