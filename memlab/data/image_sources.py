"""Readers of raw image data sets: each gives uint8 images ``[N, H, W, C]`` (C is 1 or 3) and integer
labels per split, the class names, and an identity string that keys the feature cache.

Sources (``open_source``):
  hub           CIFAR-10 through ``torchvision.datasets.CIFAR10(download=True)`` into ``dir``
  local         a folder with ``cifar10.npz`` (NumPy arrays ``x_train`` uint8 ``[N, 32, 32, 3]``,
                ``y_train``, ``x_test``, ``y_test``, optional ``class_names``; read without pickle),
                an ImageFolder layout ``train/<class>/*.png``, ``test/<class>/*.png`` (``val/``
                optional), or the official ``cifar-10-batches-py``, read by torchvision only after
                its files match the release's MD5 checksums (memlab never unpickles other files)
  fashion_mnist the ``*-idx?-ubyte.gz`` files of Debian's ``dataset-fashion-mnist``
  generated     a tiny seeded set of coloured pictures, learnable by colour (for tests)

Every reader is lazy: constructing one checks only that its files exist; the pixels are read on the
first ``load(split)`` and kept in memory.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memlab.errors import DataError
from memlab.utils.fingerprint import folder_fingerprint

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


@dataclass
class ImageSplit:
    """One split of a source: ``images`` uint8 ``[N, H, W, C]``, ``labels`` int64 ``[N]``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class ImageSource:
    """Base reader. ``splits`` names what the source holds (``val`` only where it has its own)."""

    name: str = "images"
    splits: tuple[str, ...] = ("train", "test")

    def __init__(self) -> None:
        self._loaded: dict[str, ImageSplit] = {}

    @property
    def identity(self) -> str:
        """What makes two sources the same data (part of the feature-cache key)."""
        return self.name

    @property
    def class_names(self) -> list[str]:
        raise NotImplementedError

    def _read(self, split: str) -> ImageSplit:
        raise NotImplementedError

    def load(self, split: str) -> ImageSplit:
        if split not in self.splits:
            raise ValueError(f"{self.name} has no {split} split (has {self.splits})")
        if split not in self._loaded:
            data = self._read(split)
            if len(data) == 0:
                raise DataError(f"the {split} split of {self.name} ({self.identity}) has no images; "
                                f"fill it or pass data.dir=DIR with a complete data set")
            self._loaded[split] = data
        return self._loaded[split]


# -- CIFAR-10 ---------------------------------------------------------------------------------------
CIFAR_NPZ = "cifar10.npz"


def _cifar_batches_dir(folder: Path) -> Path | None:
    for candidate in (folder / "cifar-10-batches-py", folder):
        if any(candidate.glob("data_batch_*")):
            return candidate
    return None


class CifarHubSource(ImageSource):
    """CIFAR-10 downloaded by torchvision into ``root`` (a no-op when already there)."""

    name = "cifar10"

    def __init__(self, root: str | os.PathLike):
        super().__init__()
        self.root = Path(root).expanduser()

    @property
    def class_names(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    def _read(self, split: str) -> ImageSplit:
        from torchvision.datasets import CIFAR10

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            ds = CIFAR10(root=str(self.root), train=split == "train", download=True)
        except Exception as err:  # no network, DNS failure, bad checksum: all mean "not here"
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:120]
            raise DataError(f"CIFAR-10 not found under {self.root} and offline; pass data.source=local "
                            f"data.dir=DIR or data=fashion_mnist ({reason})") from None
        return ImageSplit(np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64))


class CifarArraysSource(ImageSource):
    """CIFAR-10 (or any images of one size) as NumPy arrays in ``cifar10.npz``, loaded without pickle:
    ``x_train``/``x_test`` uint8 ``[N, H, W, 3]``, ``y_train``/``y_test`` integer labels, optional
    ``x_val``/``y_val`` and ``class_names`` (strings)."""

    name = "cifar10-npz"

    def __init__(self, file: Path):
        super().__init__()
        self.file = file
        with np.load(file, allow_pickle=False) as arrays:
            names = set(arrays.files)
        missing = {"x_train", "y_train", "x_test", "y_test"} - names
        if missing:
            raise DataError(f"{file} lacks the arrays {', '.join(sorted(missing))}; it needs x_train, y_train, "
                            f"x_test, y_test (uint8 images [N, H, W, 3], integer labels)")
        self.splits = ("train", "val", "test") if {"x_val", "y_val"} <= names else ("train", "test")
        self._has_names = "class_names" in names

    @property
    def identity(self) -> str:
        return f"{self.name}:{self.file.resolve()}:{folder_fingerprint(self.file.parent, content=False)}"

    @property
    def class_names(self) -> list[str]:
        if self._has_names:
            with np.load(self.file, allow_pickle=False) as arrays:
                return [str(n) for n in arrays["class_names"]]
        return list(CIFAR10_CLASSES)

    def _read(self, split: str) -> ImageSplit:
        prefix = {"train": "train", "val": "val", "test": "test"}[split]
        try:
            with np.load(self.file, allow_pickle=False) as arrays:
                images, labels = arrays[f"x_{prefix}"], arrays[f"y_{prefix}"]
        except ValueError as err:  # an object array would need pickle: refused
            raise DataError(f"{self.file}: {err}; store plain uint8 / integer arrays") from None
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) != len(labels):
            raise DataError(f"{self.file}: x_{prefix} must be uint8 [N, H, W, 3] with one label per image in "
                            f"y_{prefix} (got {images.dtype} {list(images.shape)} and {len(labels)} labels)")
        return ImageSplit(np.ascontiguousarray(images), labels.astype(np.int64))


class CifarReleaseSource(CifarHubSource):
    """The official ``cifar-10-batches-py`` in a local folder. Its files are pickles: torchvision
    unpickles them only after they match the release's MD5 checksums, so a changed or foreign file
    is refused instead of executed."""

    name = "cifar10-local"

    def __init__(self, batches_dir: Path):
        super().__init__(batches_dir.parent)
        self.batches_dir = batches_dir

    @property
    def identity(self) -> str:
        return f"{self.name}:{self.batches_dir.resolve()}"

    def _read(self, split: str) -> ImageSplit:
        from torchvision.datasets import CIFAR10

        if self.batches_dir.name != CIFAR10.base_folder:
            raise DataError(f"{self.batches_dir} holds CIFAR-10 batches outside a {CIFAR10.base_folder}/ folder; "
                            f"put them in {self.batches_dir / CIFAR10.base_folder} or convert them to {CIFAR_NPZ}")
        try:
            ds = CIFAR10(root=str(self.batches_dir.parent), train=split == "train", download=False)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            raise DataError(f"{self.batches_dir} is not the unmodified CIFAR-10 release (MD5 mismatch), and memlab "
                            f"does not unpickle other files; convert your data to {CIFAR_NPZ} or train/ test/ "
                            f"class folders") from None
        return ImageSplit(np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64))


# -- ImageFolder --------------------------------------------------------------------------------------
class ImageFolderSource(ImageSource):
    """``root/{train,val,test}/<class>/<image>``; classes are the sorted folder names of ``train``.

    Row order (hence ``sample_index``) is class by class, files sorted by name. Images of different
    sizes need ``image_size`` (every image is then resized to ``image_size x image_size``).
    """

    name = "imagefolder"

    def __init__(self, root: Path, image_size: int | None = None):
        super().__init__()
        self.root = root
        self.image_size = image_size
        self.splits = tuple(s for s in ("train", "val", "test") if (root / s).is_dir())

    @property
    def identity(self) -> str:
        # paths, sizes and times of the files: changed pictures make new cached features
        return f"{self.name}:{self.root.resolve()}:{self.image_size}:{folder_fingerprint(self.root, content=False)}"

    @property
    def class_names(self) -> list[str]:
        return sorted(d.name for d in (self.root / "train").iterdir() if d.is_dir())

    def _read(self, split: str) -> ImageSplit:
        from PIL import Image

        images, labels = [], []
        for label, cls in enumerate(self.class_names):
            folder = self.root / split / cls
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                with Image.open(path) as img:
                    img = img.convert("RGB")
                    if self.image_size:
                        img = img.resize((self.image_size, self.image_size), Image.BILINEAR)
                    images.append(np.asarray(img, dtype=np.uint8))
                labels.append(label)
        if not images:
            return ImageSplit(np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0,), np.int64))
        if len({im.shape for im in images}) > 1:
            raise DataError(f"images under {self.root / split} differ in size; pass data.image_size=N")
        return ImageSplit(np.stack(images), np.asarray(labels, dtype=np.int64))


# -- Fashion-MNIST ------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format): magic (0, 0, dtype 0x08, ndim), big-endian dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an uint8 IDX file; pass data.dir=DIR with the Fashion-MNIST files")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated ({data.size} of {int(np.prod(dims))} values); "
                        f"reinstall dataset-fashion-mnist or pass data.dir=DIR")
    return data.reshape(dims)


class FashionMnistSource(ImageSource):
    """Fashion-MNIST from IDX files (``.gz`` or plain), 28x28 grey images: C = 1."""

    name = "fashion_mnist"
    FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

    def __init__(self, root: str | os.PathLike):
        super().__init__()
        self.root = Path(root).expanduser()
        for images, labels in self.FILES.values():
            for stem in (images, labels):
                self._file(stem)  # fail now, with the fix, rather than deep inside setup

    def _file(self, stem: str) -> Path:
        for candidate in (self.root / f"{stem}.gz", self.root / stem):
            if candidate.exists():
                return candidate
        raise DataError(f"Fashion-MNIST file {stem}(.gz) not found under {self.root}; "
                        f"apt-get install dataset-fashion-mnist or pass data.dir=DIR")

    @property
    def class_names(self) -> list[str]:
        return list(FASHION_MNIST_CLASSES)

    def _read(self, split: str) -> ImageSplit:
        images_stem, labels_stem = self.FILES[split]
        images = _read_idx(self._file(images_stem))
        labels = _read_idx(self._file(labels_stem)).astype(np.int64)
        return ImageSplit(images[..., None].copy(), labels)  # frombuffer arrays are read-only


# -- generated ----------------------------------------------------------------------------------------
class GeneratedSource(ImageSource):
    """A tiny seeded set: each class a base colour with a soft diagonal gradient plus pixel noise.

    Learnable from colour alone, so a frozen random conv net plus an MLP fits it; the data are fixed
    by ``data_seed`` (not the run's seed) so that every run sees the same pictures.
    """

    name = "generated"
    COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 200), "yellow": (210, 200, 40),
               "purple": (140, 50, 170), "cyan": (40, 190, 200), "orange": (230, 130, 30), "grey": (128, 128, 128)}

    def __init__(self, num_train: int = 80, num_test: int = 40, num_classes: int = 4,
                 image_size: int = 16, data_seed: int = 1234):
        super().__init__()
        if not 1 <= num_classes <= len(self.COLOURS):
            raise DataError(f"generated data has 1..{len(self.COLOURS)} classes; pass data.num_classes=K")
        self.sizes = {"train": num_train, "test": num_test}
        self.num_classes = num_classes
        self.image_size = image_size
        self.data_seed = data_seed

    @property
    def identity(self) -> str:
        return (f"{self.name}:v1:{self.sizes['train']}:{self.sizes['test']}:{self.num_classes}:"
                f"{self.image_size}:{self.data_seed}")

    @property
    def class_names(self) -> list[str]:
        return list(self.COLOURS)[: self.num_classes]

    def _read(self, split: str) -> ImageSplit:
        n, s = self.sizes[split], self.image_size
        rng = np.random.default_rng([self.data_seed, self.splits.index(split)])
        labels = rng.integers(0, self.num_classes, size=n).astype(np.int64)
        base = np.asarray([self.COLOURS[c] for c in self.class_names], dtype=np.float32)[labels]
        ramp = np.linspace(-30.0, 30.0, s, dtype=np.float32)
        gradient = (ramp[:, None] + ramp[None, :])[None, :, :, None] / 2
        noise = rng.normal(0.0, 25.0, size=(n, s, s, 3)).astype(np.float32)
        images = np.clip(base[:, None, None, :] + gradient + noise, 0, 255).astype(np.uint8)
        return ImageSplit(images, labels)


def cifar10_offline_needs(dir: str | os.PathLike | None) -> list[tuple[str, str]]:
    """``data.source=hub``: nothing when CIFAR-10 is already in ``dir`` or its server answers."""
    from torchvision.datasets import CIFAR10

    from ..utils.network import reachable

    downloaded = dir and (Path(dir).expanduser() / CIFAR10.base_folder).is_dir()
    if not downloaded and not reachable(CIFAR10.url):
        return [("data.source=hub (CIFAR-10)", "data.source=local data.dir=DIR (or data=fashion_mnist)")]
    return []


# -- factory ------------------------------------------------------------------------------------------
def open_source(source: str, dir: str | os.PathLike | None = None, *, image_size: int | None = None,
                generated_sizes: tuple[int, int] = (80, 40), num_classes: int = 4) -> ImageSource:
    """The reader for ``source`` (one of hub, local, fashion_mnist, generated)."""
    if source == "hub":
        if dir is None:
            raise DataError("data.source=hub needs a download folder; pass data.dir=DIR")
        return CifarHubSource(dir)
    if source == "local":
        folder = Path(dir).expanduser() if dir is not None else None
        if folder is None or not folder.is_dir():
            raise DataError(f"image folder {folder} not found; pass data.dir=DIR ({CIFAR_NPZ}, cifar-10-batches-py "
                            f"or train/ test/ class folders) or data=tiny_image")
        if (folder / CIFAR_NPZ).is_file():
            return CifarArraysSource(folder / CIFAR_NPZ)
        batches = _cifar_batches_dir(folder)
        if batches is not None:
            return CifarReleaseSource(batches)
        if (folder / "train").is_dir():
            src = ImageFolderSource(folder, image_size)
            if "test" not in src.splits:
                raise DataError(f"{folder} has train/ but no test/; add {folder / 'test'} or pass data.dir=DIR")
            if not src.class_names:
                raise DataError(f"{folder / 'train'} has no class folders; pass data.dir=DIR")
            return src
        raise DataError(f"{folder} holds neither {CIFAR_NPZ}, cifar-10-batches-py nor train/ test/ folders; "
                        f"pass data.dir=DIR or data=tiny_image")
    if source == "fashion_mnist":
        return FashionMnistSource(dir if dir is not None else FASHION_MNIST_DIR)
    if source == "generated":
        return GeneratedSource(*generated_sizes, num_classes=num_classes,
                               image_size=image_size or 16)
    raise DataError(f"unknown data.source={source!r}; use hub, local, fashion_mnist or generated")
