"""Callback that swaps a text data module's splits for cached frozen-prefix outputs before training,
so every epoch (and later scoring) runs only the trainable suffix.

The outputs live on disk (``cache_dir/prefix/<key>-<split>.pt``, or a temporary file without a
cache folder), streamed while they are computed and read per batch: memory does not grow with the
number of examples (:mod:`memlab.model.prefix_cache`). ``dtype`` is their storage dtype (float32,
float16 or bfloat16; batches are float32 whatever it is): float16 halves the disk and page cache.

``enabled=false`` trains the whole network instead (the prefix still frozen, in eval mode as when its
outputs are cached), and gives the splits their prefix outputs (a temporary store) only after training, for
the scoring and attribution callbacks, which differentiate the suffix: scores are the same either way.
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as L
import torch

from ..data.disk_store import storage_dtype
from ..errors import ConfigError
from ..model.prefix_cache import prefix_key, with_prefix_outputs
from ..utils.fingerprint import module_fingerprint
from ..utils.memory import release_free_memory


class FrozenPrefixCache(L.Callback):
    def __init__(self, enabled: bool = True, cache_dir: str | None = None, dtype: str = "float32",
                 batch_size: int = 64):
        try:
            storage_dtype(dtype)
        except ValueError as err:
            raise ConfigError(f"callbacks.prefix_cache.dtype: {err}") from None
        self.enabled, self.cache_dir, self.dtype, self.batch_size = enabled, cache_dir, dtype, batch_size

    @staticmethod
    def _prefixed(trainer: L.Trainer, pl_module: L.LightningModule):
        """(data module, net) when this run has a frozen prefix to reuse, else (None, None)."""
        dm, net = trainer.datamodule, getattr(pl_module, "net", None)
        if dm is None or not hasattr(net, "prefix") or not hasattr(dm, "fingerprint"):
            return None, None
        return dm, net

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm, net = self._prefixed(trainer, pl_module)
        if self.enabled and dm is not None:
            # Lightning moves the model to its device only after this hook: the prefix goes first, so a
            # GPU run computes its outputs on the GPU (bit-identical keys: the key hashes the weights)
            net.prefix.to(trainer.strategy.root_device)
            apply_prefix_cache(dm, net, pl_module.hparams.get("pretrained") or "model", self.cache_dir,
                               storage_dtype(self.dtype), self.batch_size)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm, net = self._prefixed(trainer, pl_module)
        if not self.enabled and dm is not None:
            net.prefix.eval()  # frozen means no dropout either: the cached outputs are eval-mode ones

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm, net = self._prefixed(trainer, pl_module)
        if not self.enabled and dm is not None:  # before on_fit_end, where scoring runs on the suffix
            apply_prefix_cache(dm, net, "model", None, storage_dtype(self.dtype), self.batch_size)


def apply_prefix_cache(dm, net, model_name: str, cache_dir: str | None, dtype=torch.float32, batch_size: int = 64):
    """Give every split of ``dm`` the prefix outputs of ``net`` (idempotent; kept in ``cache_dir`` when
    given, else in temporary files). ``dtype``: the storage dtype (a torch dtype or its name).

    ``model_name`` only labels progress bars: the cache key holds a hash of the prefix's weights."""
    dm.setup()
    if getattr(dm, "prefix_cached", False):
        return
    dtype = storage_dtype(dtype)
    key = prefix_key(module_fingerprint(net.prefix), net.freeze_layers, dm.fingerprint(), str(dtype))

    def transform(split, ds):
        file = Path(cache_dir) / "prefix" / f"{key}-{split}.pt" if cache_dir else None
        return with_prefix_outputs(net.prefix, ds, file, batch_size, dtype, desc=f"prefix cache ({split}, {model_name})",
                                   key=key)

    dm.transform_splits(transform)
    dm.prefix_cached = True
    release_free_memory()  # the prefix's freed activations: else held by glibc under the training run's heap
