"""A folder of your own pictures, one sub-folder per class (``data=image_folder data.path=DIR``):

    DIR/train/<class>/<picture>   required; the class names are these folder names, sorted
    DIR/dev/<class>/...           optional (or val/, validation/)
    DIR/test/<class>/...          optional

Pictures: .png .jpg .jpeg .bmp .gif .webp (anything PIL opens; other files are skipped), greyscale
and palette pictures converted to RGB, every one resized to ``image_size`` x ``image_size``. Row
order (hence ``sample_index``) is class by class, files sorted by name; ``files(split)[row]`` is a
picture's path relative to DIR.

:func:`check_image_folder` reads the layout and opens every picture's header, so a missing folder, a
train/ without class folders, an empty class or an unreadable picture is one line naming it before
anything is computed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from memlab.data.image_sources import IMAGE_EXTENSIONS, ImageFolderSource, ImageSplit
from memlab.errors import DataError

VAL_FOLDERS = ("dev", "val", "validation")


def split_folders(root: Path) -> dict[str, Path]:
    """The split folders DIR holds: train, and val (dev/, val/ or validation/) and test when present."""
    found = {"train": root / "train"}
    val = next((root / name for name in VAL_FOLDERS if (root / name).is_dir()), None)
    if val is not None:
        found["val"] = val
    if (root / "test").is_dir():
        found["test"] = root / "test"
    return found


def picture_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def class_folders(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def check_image_folder(path: str | os.PathLike | None) -> list[str]:
    """The class names of an image folder, after checking its layout and every picture's header
    (one :class:`DataError` line naming what is wrong)."""
    from PIL import Image, UnidentifiedImageError

    if not path:
        raise DataError("data=image_folder needs data.path=DIR (a folder with train/<class>/<pictures>)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"data.path={path}: no such folder; pass data.path=DIR with train/<class>/<pictures>")
    if not (root / "train").is_dir():
        raise DataError(f"data.path={path} has no train/ folder; put one sub-folder per class under {root / 'train'}")
    names = class_folders(root / "train")
    if not names:
        raise DataError(f"{root / 'train'} has no class folders; put one sub-folder per class there")
    for split, folder in split_folders(root).items():
        extra = sorted(set(class_folders(folder)) - set(names))
        if extra:
            raise DataError(f"{folder} has class folder {extra[0]!r} that train/ lacks; classes come from train/")
        for name in names:
            files = picture_files(folder / name) if (folder / name).is_dir() else []
            if split == "train" and not files:
                raise DataError(f"{folder / name} holds no pictures ({', '.join(IMAGE_EXTENSIONS)})")
            for file in files:
                try:
                    with Image.open(file):  # the header only: fast, and catches what is not a picture
                        pass
                except (UnidentifiedImageError, OSError, ValueError) as err:
                    raise DataError(f"{file} is not a readable picture ({type(err).__name__}); "
                                    f"fix or remove it") from None
    return names


class ClassFolderSource(ImageFolderSource):
    """The pictures of ``root``'s split folders, all resized to ``image_size`` (see the module doc)."""

    name = "image_folder"

    def __init__(self, root: str | os.PathLike, image_size: int):
        super().__init__(Path(root).expanduser(), image_size)
        self.folders = split_folders(self.root)
        self.splits = tuple(self.folders)

    @property
    def class_names(self) -> list[str]:
        return class_folders(self.root / "train")

    def pictures(self, split: str) -> list[tuple[Path, int]]:
        """(file, label) of every picture of ``split``, in row order (listed, not read)."""
        out = []
        for label, cls in enumerate(self.class_names):
            folder = self.folders[split] / cls
            out += [(path, label) for path in (picture_files(folder) if folder.is_dir() else [])]
        return out

    def files(self, split: str) -> list[str]:
        """The pictures' paths relative to the folder, in row order (``sample_index`` -> file)."""
        return [str(path.relative_to(self.root)) for path, _ in self.pictures(split)]

    def _read(self, split: str) -> ImageSplit:
        from PIL import Image

        images, labels = [], []
        for path, label in self.pictures(split):
            try:
                with Image.open(path) as img:
                    img = img.convert("RGB").resize((self.image_size, self.image_size), Image.BILINEAR)
                    images.append(np.asarray(img, dtype=np.uint8))
            except (OSError, ValueError) as err:  # truncated or corrupt past its header
                raise DataError(f"{path} is not a readable picture ({type(err).__name__}); fix or remove it") from None
            labels.append(label)
        if not images:
            return ImageSplit(np.zeros((0, self.image_size, self.image_size, 3), np.uint8), np.zeros((0,), np.int64))
        return ImageSplit(np.stack(images), np.asarray(labels, dtype=np.int64))
