"""Image classification as the study ran CIFAR-10: a frozen pretrained backbone turns every picture
into a grid of features once (cached on disk), and only a small head is trained on top.

Examples are ``{"features": FloatTensor[C, 7, 7], "labels": long, "sample_index": int}``; the
``sample_index`` is the row of the picture in the source's original train split (its test split for
test examples), so it survives subsampling and removal. ``images(sample_indices)`` gives the pictures
back for heat-map overlays.

Splits: seeded subsamples of ``train_size`` / ``val_size`` / ``test_size``; ``val`` is carved out of
the train split (disjoint from ``train``) when the source has no val split of its own.
"""
from __future__ import annotations

import logging
import os
from functools import cached_property
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from memlab.data.base import DataError, MemlabDataModule
from memlab.data.columns import ColumnDataset
from memlab.data.disk_store import Store, materialize
from memlab.data.feature_cache import FEATURE_DTYPES, cache_file, cache_key, cached_features
from memlab.data.image_sources import ImageSource, open_source
from memlab.data.backbones import build_backbone, uses_torchvision_loader, weights_tag
from memlab.data.torchvision_backbone import probe_channels

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
GENERATED_DEFAULT_SIZES = {"train": 64, "val": 32, "test": 32}
NATURAL_CHANNELS = {"resnet50": 2048, "efficientnet_lite0": 1280}
RANDOM_DEFAULT_CHANNELS = 16
CACHE_FORMAT = 1  # bump when the meaning of cached files changes


def feature_chunks(backbone, images: np.ndarray, rows: np.ndarray, batch_size: int, device: str,
                   dtype: torch.dtype, desc: str) -> Iterator[torch.Tensor]:
    """The backbone's features of ``images[rows]``, one batch at a time (``[B, D, 7, 7]`` in ``dtype``,
    on CPU): the feature store is written as they come, never all in memory."""
    backbone = backbone.to(device)
    with tqdm(total=len(rows), desc=desc, unit="img", mininterval=1.0) as bar:
        for start in range(0, len(rows), batch_size):
            chunk = torch.from_numpy(np.array(images[rows[start:start + batch_size]]))  # a writable copy
            with torch.no_grad():
                feats = backbone(chunk.to(device)).to("cpu", dtype)
            bar.update(len(feats))
            yield feats


class FeatureDataset(ColumnDataset):
    """Examples as columns (labels, sample indices, and the features as lazy views of the on-disk store:
    no Python object per example, see :mod:`memlab.data.columns`); an item's features are read from the
    store when it is indexed and come out float32 (stored float16 by default)."""

    def __getitem__(self, i: int) -> dict:
        example = self.row(i)  # as stored: ``examples[i]`` keeps the tagged view
        features = materialize(example["features"])  # read from the store now, not through its mapping
        return {**example, "features": features.float()}


class ImageFeatureDataModule(MemlabDataModule):
    """Frozen-backbone grid features of an image data set.

    Args:
        source: ``hub`` (CIFAR-10 downloaded by torchvision into ``dir``), ``local`` (``dir`` holds
            ``cifar10.npz``, ``train/ test/ [val/]`` class folders or the official, MD5-checked
            ``cifar-10-batches-py``; see :mod:`memlab.data.image_sources`), ``fashion_mnist``
            (IDX files in ``dir``, default Debian's /usr/share/datasets/fashion-mnist) or
            ``generated`` (tiny coloured pictures, for tests).
        backbone: ``resnet50`` (2048x7x7), ``efficientnet_lite0`` (1280x7x7), ``random`` (tiny) or any
            torchvision classification model (its grid before pooling, see
            :mod:`memlab.data.torchvision_backbone`).
        backbone_weights: a state_dict file (``torch.save``) for a torchvision backbone, resnet50 included:
            offline, and part of the cache key (its SHA-1); None: the backbone's usual weights.
        train_size, val_size, test_size: seeded subsample sizes; ``None`` takes everything left
            (``val_size=None`` carves a tenth of the train split when the source has no val split).
        exclude: train ``sample_index`` values left out (the removal studies).
        cache_dir: where feature files go; ``None`` recomputes features at every setup (into a
            temporary file: features are never all in memory, see :mod:`memlab.data.feature_cache`).
        feature_dtype: dtype on disk (``float16`` halves it and the page cache); batches are float32.
        seed: the data seed (subsamples; also the random backbone's init); ``shuffle_seed`` the
            training seed (loader order), see :class:`MemlabDataModule`.
        image_size: resize ImageFolder pictures to this square size (needed when sizes differ).
        device: where the backbone runs (``auto``: CUDA when available).
        num_classes: classes of the generated source (1..8); for other sources a check (the model
            config reads ``data.num_classes``).
        feature_channels: C of the features: the backbone's (2048, 1280; a torchvision model's from one
            dummy forward pass) or the random net's width (default 16); the model config reads
            ``data.feature_channels``.
    """

    def __init__(self, source: str, backbone: str, dir: str | os.PathLike | None = None,
                 train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
                 seed: int = 0, batch_size: int = 32, exclude: Iterable[int] | None = None,
                 cache_dir: str | os.PathLike | None = None, feature_dtype: str = "float16",
                 eval_batch_size: int = 64, num_workers: int = 0, image_size: int | None = None,
                 extract_batch_size: int = 64, device: str = "auto", num_classes: int | None = None,
                 feature_channels: int | None = None, shuffle_seed: int | None = None,
                 backbone_weights: str | os.PathLike | None = None):
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers,
                         exclude=exclude, seed=seed, shuffle_seed=shuffle_seed)
        if feature_dtype not in FEATURE_DTYPES:
            raise DataError(f"unknown data.feature_dtype={feature_dtype!r}; use one of {', '.join(FEATURE_DTYPES)}")
        self.source_name = source
        self.dir = None if dir is None else str(dir)
        self.backbone_name = backbone
        sizes = {"train": train_size, "val": val_size, "test": test_size}
        if source == "generated":
            sizes = {k: GENERATED_DEFAULT_SIZES[k] if v is None else v for k, v in sizes.items()}
        self.sizes = {k: None if v is None else int(v) for k, v in sizes.items()}
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        self.feature_dtype = feature_dtype
        self.image_size = image_size
        self.extract_batch_size = extract_batch_size
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.backbone_weights = None if backbone_weights is None else str(backbone_weights)
        natural = NATURAL_CHANNELS.get(backbone)
        if uses_torchvision_loader(backbone, self.backbone_weights):
            natural = probe_channels(backbone, self.backbone_input_size)
        if natural is not None and feature_channels not in (None, natural):
            raise DataError(f"data.backbone={backbone} gives {natural} channels, not data.feature_channels="
                            f"{feature_channels}; pass data.feature_channels={natural}")
        self.feature_channels = int(feature_channels or natural or RANDOM_DEFAULT_CHANNELS)
        self.requested_num_classes = None if num_classes is None else int(num_classes)
        self.cache_hits: dict[str, bool] = {}

    @property
    def backbone_input_size(self) -> int | None:
        """The square size a torchvision backbone sees (None: its weights' own)."""
        return None

    # -- the source ---------------------------------------------------------------------------------
    @cached_property
    def source(self) -> ImageSource:
        # A quarter more generated pictures than asked for, so that subsampling really picks.
        wanted_train = (self.sizes["train"] or 0) + (self.sizes["val"] or 0)
        generated = (wanted_train + (wanted_train + 3) // 4, (self.sizes["test"] or 0) * 5 // 4 or 1)
        return open_source(self.source_name, self.dir, image_size=self.image_size,
                           generated_sizes=generated, num_classes=self.requested_num_classes or 4)

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # -- splits -------------------------------------------------------------------------------------
    def _select(self) -> dict[str, tuple[str, np.ndarray]]:
        """Per split: (source split it is read from, sorted row indices there). Seeded by ``seed``."""
        src, rng = self.source, np.random.default_rng(self.seed)
        n_train = len(src.load("train"))
        own_val = "val" in src.splits
        want = dict(self.sizes)
        if want["val"] is None and not own_val:
            want["val"] = max(1, n_train // 10)
        carved = 0 if own_val else want["val"]
        if want["train"] is None:
            want["train"] = n_train - carved
        if want["train"] + carved > n_train:
            raise DataError(f"{src.name} has {n_train} train images, fewer than data.train_size={want['train']}"
                            + (f" + data.val_size={carved}" if carved else "")
                            + f"; pass data.train_size={max(n_train - carved, 1)} or less")
        order = rng.permutation(n_train)
        chosen = {"train": ("train", order[: want["train"]])}
        if own_val:
            chosen["val"] = ("val", self._subsample(rng, "val", want["val"]))
        else:
            chosen["val"] = ("train", order[want["train"]: want["train"] + carved])
        chosen["test"] = ("test", self._subsample(rng, "test", want["test"]))
        for name, (_, rows) in chosen.items():
            if len(rows) == 0:
                raise DataError(f"the {name} split is empty (data.{name}_size={want[name]}); "
                                f"pass data.{name}_size=N with N >= 1")
        return {k: (split, np.sort(rows)) for k, (split, rows) in chosen.items()}

    def _subsample(self, rng: np.random.Generator, split: str, size: int | None) -> np.ndarray:
        n = len(self.source.load(split))
        size = n if size is None else size
        if size > n:
            raise DataError(f"{self.source.name} has {n} {split} images, fewer than data.{split}_size={size}; "
                            f"pass data.{split}_size={n} or less")
        return rng.permutation(n)[:size]

    def _cache_fields(self, split: str) -> dict[str, Any]:
        return {"format": CACHE_FORMAT, "dataset": self.source.identity, "split": split,
                "sizes": [self.sizes[s] for s in SPLITS], "seed": self.seed, "backbone": self.backbone_name,
                "weights": weights_tag(self.backbone_name, seed=self.seed, channels=self.feature_channels,
                                       weights_file=self.backbone_weights),
                "dtype": self.feature_dtype}

    def build_splits(self) -> dict[str, FeatureDataset]:
        if self.requested_num_classes not in (None, self.num_classes):  # a missing folder fails here too
            raise DataError(f"data.num_classes={self.requested_num_classes} but {self.source.name} has "
                            f"{self.num_classes} classes; pass data.num_classes={self.num_classes}")
        selection: dict[str, tuple[str, np.ndarray]] | None = None
        backbone = None

        def produce(split: str):
            """(labels, sample_index, the features in row blocks, computed as they are consumed)."""
            nonlocal selection, backbone
            if selection is None:
                selection = self._select()
            if backbone is None:
                backbone = build_backbone(self.backbone_name, seed=self.seed, channels=self.feature_channels,
                                          weights_file=self.backbone_weights, input_size=self.backbone_input_size)
            source_split, rows = selection[split]
            data = self.source.load(source_split)
            chunks = feature_chunks(backbone, data.images, rows, self.extract_batch_size, self.device,
                                    FEATURE_DTYPES[self.feature_dtype], f"{self.backbone_name} features: {split}")
            return torch.from_numpy(data.labels[rows]), torch.from_numpy(rows), chunks

        splits = {}
        for split in SPLITS:
            fields = self._cache_fields(split)
            path = None
            if self.cache_dir is not None:
                path = cache_file(self.cache_dir, self.source.name, split, self.backbone_name, cache_key(fields))
            store, hit = cached_features(path, fields, lambda: produce(split), rows=self.sizes[split])
            if path is not None:
                log.info("%s features for %s: %s %s", split, self.source.name, "loaded" if hit else "saved", path)
            self.cache_hits[split] = hit
            splits[split] = self._examples(store)
        return splits

    @staticmethod
    def _examples(store: Store) -> FeatureDataset:
        """Examples whose features are views of the store (read per batch by :func:`materialize`)."""
        labels = store.payload["labels"].long().clone()  # small: in memory, not mapped
        rows = store.payload["sample_index"].long().clone()
        return FeatureDataset({"features": store.row_views("features", range(len(rows))), "labels": labels,
                               "sample_index": rows})

    # -- batches and display ------------------------------------------------------------------------
    def collate(self, examples: list[dict]) -> dict[str, Any]:
        return {"features": torch.stack([materialize(e["features"]) for e in examples]).float(),
                "labels": torch.stack([torch.as_tensor(e["labels"]) for e in examples]).long(),
                "sample_index": torch.tensor([int(e["sample_index"]) for e in examples], dtype=torch.long)}

    def describe(self, example: dict) -> str:
        return f"{self.class_names[int(example['labels'])]} #{int(example['sample_index'])}"

    def images(self, sample_indices: Sequence[int], split: str = "train") -> np.ndarray:
        """The original pictures, uint8 ``[N, H, W, 3]``, of these ``sample_index`` values of ``split``
        (``val`` carved from train means train rows)."""
        source_split = split if split in self.source.splits else "train"
        data = self.source.load(source_split)
        rows = np.asarray(list(sample_indices), dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(data)):
            raise DataError(f"sample_index out of range for the {source_split} split of {self.source.name} "
                            f"({len(data)} images); were the scores computed on other data?")
        pictures = data.images[rows]
        return np.repeat(pictures, 3, axis=-1) if pictures.shape[-1] == 1 else pictures
