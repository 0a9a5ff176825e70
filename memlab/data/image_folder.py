"""Your own pictures, one folder per class, through any torchvision backbone (``data=image_folder``):

    python -m memlab experiment=memorization data=image_folder data.path=DIR \
        data.backbone=resnet50 data.backbone_weights=FILE

The pictures (:mod:`memlab.data.image_folder_source`) become frozen grid features, cached on disk
like CIFAR-10's (the key holds the folder's files, the backbone and its weights file's SHA-1), and the
paper's MLP is trained on top. Every training picture is used. A missing dev/ or test/ folder is
carved out of train/, stratified by class and seeded by ``data_seed`` (``val_size``/``test_size``:
fractions of each class), unless ``split_from_train=false``, which makes it an error.
"""
from __future__ import annotations

import os
from functools import cached_property
from typing import Any

import numpy as np

from memlab.data.backbones import BACKBONES, RANDOM_INPUT_SIZE
from memlab.data.image import ImageFeatureDataModule
from memlab.data.image_folder_source import ClassFolderSource
from memlab.errors import DataError

OWN_INPUT_SIZE = 224  # resnet50 (hub) and efficientnet_lite0 see 224 x 224


def default_image_size(backbone: str) -> int:
    """The square size pictures are read at when ``data.image_size`` is null: what the backbone sees."""
    if backbone == "random":
        return RANDOM_INPUT_SIZE
    if backbone in BACKBONES:
        return OWN_INPUT_SIZE
    from memlab.data.torchvision_backbone import input_transform

    return input_transform(backbone, None)[0]


def stratified_carve(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Rows of ``labels`` for ``train`` and each split of ``fractions`` (a fraction of every class,
    rounded, at least one picture of each class kept for training), seeded."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {name: [] for name in ("train", *fractions)}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        start = 0
        for name, fraction in fractions.items():
            take = min(int(round(fraction * len(rows))), len(rows) - start - 1)
            out[name].append(rows[start:start + max(take, 0)])
            start += max(take, 0)
        out["train"].append(rows[start:])
    return {name: np.sort(np.concatenate(parts)) for name, parts in out.items()}


class ImageFolderDataModule(ImageFeatureDataModule):
    """Frozen-backbone grid features of a folder of class folders (see the module doc).

    Args:
        path: the folder (``train/<class>/<picture>``, optional ``dev/`` and ``test/``).
        backbone, backbone_weights: see :class:`ImageFeatureDataModule` (any torchvision classification
            model; a state_dict file for offline use).
        image_size: pictures are resized to this square size and fed to the backbone at it (None: the
            backbone's own, 224 for the ImageNet models).
        split_from_train: carve a missing dev/ or test/ out of train/ (stratified, ``seed``); false: an error.
        val_size, test_size: the fractions of every class carved out when they are.
        class_names, num_classes: checks (filled in from the folder names before the model is built).
        Others: as :class:`ImageFeatureDataModule`.
    """

    def __init__(self, path: str | os.PathLike | None, source: str = "image_folder", backbone: str = "resnet50",
                 backbone_weights: str | os.PathLike | None = None, image_size: int | None = None,
                 split_from_train: bool = True, val_size: float = 0.1, test_size: float = 0.1,
                 class_names: list[str] | None = None, num_classes: int | None = None,
                 feature_channels: int | None = None, seed: int = 0, shuffle_seed: int | None = None,
                 batch_size: int = 32, eval_batch_size: int = 256, exclude=None,
                 cache_dir: str | os.PathLike | None = None, feature_dtype: str = "float16",
                 extract_batch_size: int = 64, device: str = "auto", num_workers: int = 0):
        if source != "image_folder":
            raise DataError(f"data.source={source!r} is not allowed here; allowed: image_folder")
        if not path:
            raise DataError("data=image_folder needs data.path=DIR (a folder with train/<class>/<pictures>)")
        for key, fraction in (("val_size", val_size), ("test_size", test_size)):
            if not 0 < float(fraction) < 1:
                raise DataError(f"data.{key}={fraction} is not a fraction; allowed: a number between 0 and 1")
        self.split_from_train = bool(split_from_train)
        self.fractions = {"val": float(val_size), "test": float(test_size)}
        self.requested_class_names = None if class_names is None else [str(c) for c in class_names]
        super().__init__(source="image_folder", backbone=backbone, dir=path, seed=seed, batch_size=batch_size,
                         exclude=exclude, cache_dir=cache_dir, feature_dtype=feature_dtype,
                         eval_batch_size=eval_batch_size, num_workers=num_workers,
                         image_size=int(image_size or default_image_size(backbone)),
                         extract_batch_size=extract_batch_size, device=device, num_classes=num_classes,
                         feature_channels=feature_channels, shuffle_seed=shuffle_seed,
                         backbone_weights=backbone_weights)

    @property
    def backbone_input_size(self) -> int | None:
        return self.image_size

    @cached_property
    def source(self) -> ClassFolderSource:
        from memlab.data.image_folder_source import check_image_folder

        names = check_image_folder(self.dir)
        if self.requested_class_names not in (None, names):
            raise DataError(f"data.class_names={self.requested_class_names} but {self.dir}/train has class "
                            f"folders {names}; leave data.class_names null")
        return ClassFolderSource(self.dir, self.image_size)

    def _select(self) -> dict[str, tuple[str, np.ndarray]]:
        src = self.source
        missing = {name: fraction for name, fraction in self.fractions.items() if name not in src.splits}
        if missing and not self.split_from_train:
            folders = " and ".join("dev/" if name == "val" else "test/" for name in missing)
            raise DataError(f"{self.dir} has no {folders}; add it or pass data.split_from_train=true")
        labels = src.load("train").labels
        carved = stratified_carve(labels, missing, self.seed)
        chosen = {"train": ("train", carved["train"])}
        for name in self.fractions:
            chosen[name] = ("train", carved[name]) if name in missing else (name, np.arange(len(src.load(name))))
            if len(chosen[name][1]) == 0:
                raise DataError(f"{self.dir}/train is too small to carve a {name} split of data.{name}_size="
                                f"{self.fractions[name]} from each class; add pictures or a "
                                f"{'dev' if name == 'val' else name}/ folder")
        return chosen

    def _cache_fields(self, split: str) -> dict[str, Any]:
        # the carved rows depend on these: other fractions make other files
        return {**super()._cache_fields(split), "split_from_train": self.split_from_train,
                "fractions": [self.fractions["val"], self.fractions["test"]]}

    @cached_property
    def train_files(self) -> list[str]:
        return self.source.files("train")

    def describe(self, example: dict) -> str:
        """The picture's file, e.g. ``train/cat/0042.png`` (train rows, as scores.csv lists them)."""
        index = int(example["sample_index"])
        files = self.train_files
        return files[index] if 0 <= index < len(files) else super().describe(example)
