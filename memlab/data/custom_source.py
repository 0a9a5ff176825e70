"""Any text classification data, read through HF ``datasets`` (``data=custom``): a hub id (config name,
split names), a folder of ``train``/``dev``/``test`` files in CSV, TSV, JSON Lines or Parquet (the
format from the extension), or a ``save_to_disk`` folder; the user's own column names; integer or
string labels. :func:`read_custom` returns the splits in the frame layout of
:mod:`memlab.data.text_sources` (``text[, text_pair], label, sample_index``) and the class names.

Class names: the label column's ``ClassLabel`` names, else ``class_names`` (strings are looked up in
it, integers index it), else the sorted distinct strings of every split, else (integer labels)
``"0".."k-1"``. Every problem with the input is one :class:`~memlab.errors.DataError` line that names
the file (or hub split) it is in.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataError
from .empty_texts import check_no_empty_texts
from .text_sources import carve_missing_splits

SPLITS = ("train", "val", "test")
FILE_STEMS = {"train": ("train",), "val": ("dev", "val", "validation"), "test": ("test",)}
# extension -> (datasets builder, its options)
FILE_FORMATS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}), ".jsonl": ("json", {}),
                ".json": ("json", {}), ".parquet": ("parquet", {})}
HUB_SPLIT_ALIASES = {"train": ("train",), "val": ("validation", "dev", "val"), "test": ("test",)}


@dataclass
class CustomColumns:
    """Which columns of the user's data hold what (``data.text_column`` ...)."""

    text: str = "text"
    label: str = "label"
    text_pair: str | None = None
    id: str | None = None

    def required(self) -> dict[str, str]:
        """{the setting that names it: column} of every column the data must have."""
        named = {"data.text_column": self.text, "data.label_column": self.label,
                 "data.text_pair_column": self.text_pair, "data.id_column": self.id}
        return {key: col for key, col in named.items() if col}


def read_custom(path: str, columns: CustomColumns, class_names: Sequence[str] | None = None,
                num_classes: int | None = None, hub_config: str | None = None,
                split_names: dict | None = None, seed: int = 0, val_size: float | int = 0.1,
                test_size: float | int = 0.1, split_from_train: bool = False,
                cache_dir: str | None = None, drop_empty: bool = False) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """({"train","val","test"} -> DataFrame(text, [text_pair,] label, sample_index), class names).
    A missing dev or test split is an error unless ``split_from_train`` (a seeded split of train);
    empty texts are an error naming their rows unless ``drop_empty`` (the data module drops them)."""
    if not path:
        raise DataError("data=custom needs data.path: a folder of train/dev/test files, a save_to_disk folder "
                        "or a hub id")
    with _quiet_datasets():
        tables = load_tables(str(path), hub_config, split_names or {}, cache_dir)
    raw = {split: _select_columns(ds, where, columns) for split, (ds, where) in tables.items()}
    label_names = _class_label_names(tables["train"][0], columns.label)
    names, encoded = encode_labels({s: (df[columns.label], tables[s][1]) for s, df in raw.items()},
                                   class_names or label_names, num_classes)
    frames = {split: _standardize(df, tables[split][1], columns, encoded[split]) for split, df in raw.items()}
    for split, frame in frames.items():
        check_no_empty_texts(frame, tables[split][1], drop_empty)
    _check_classes(frames["train"], tables["train"][1], names)
    missing = [s for s in ("test", "val") if s not in frames]
    if missing and not split_from_train:
        raise DataError(f"{path} has no {' and no '.join('dev' if s == 'val' else s for s in missing)} split; add it, "
                        f"or pass data.split_from_train=true for a seeded split of train")
    return carve_missing_splits(frames, val_size, test_size, seed), names


# -- where the tables come from ---------------------------------------------------------------------
def custom_offline_needs(path: str | None) -> list[tuple[str, str]]:
    """``data=custom``'s path before anything else is checked or loaded: none, or a folder that is not
    there, is a DataError naming it; a hub id needs the hub or the datasets cache (``[(what, override)]``).
    The data itself is read and checked next (:func:`read_custom`)."""
    from ..utils.network import hub_dataset_cached, hub_reachable

    if not path:
        raise ConfigError("data=custom needs data.path=DIR (a folder of train/dev/test files or a save_to_disk "
                        "folder) or data.path=HUB_ID")
    path = str(path)
    if os.path.exists(os.path.expanduser(path)):
        return []
    if path.startswith(("/", ".", "~")) or path.count("/") > 1:
        raise DataError(f"data.path={path}: no such folder")
    if hub_dataset_cached(path) or hub_reachable():
        return []
    return [(f"data.path={path} (a hub data set)", "data.path=DIR (a folder of train/dev/test files)")]


def load_tables(path: str, hub_config: str | None, split_names: dict, cache_dir: str | None) -> dict:
    """{split: (datasets.Dataset, where it is: a file, a folder/split or hub id [split])}; train always."""
    root = Path(path).expanduser()
    if root.is_dir() and (root / "dataset_dict.json").is_file():
        return _saved_dict(root, split_names)
    if root.is_dir() and (root / "state.json").is_file():  # one saved Dataset: the train split
        return {"train": (_load_from_disk(root), str(root))}
    if root.is_dir():
        return _file_folder(root, cache_dir)
    if root.exists():
        raise DataError(f"data.path={path} is a file; point data.path at the folder that holds it (as train.*)")
    if path.startswith(("/", ".", "~")) or path.count("/") > 1:
        raise DataError(f"data.path={path}: no such folder")
    return _hub(path, hub_config, split_names)


def _file_folder(root: Path, cache_dir: str | None) -> dict:
    tables = {}
    for split, stems in FILE_STEMS.items():
        found = [root / f"{stem}{ext}" for stem in stems for ext in FILE_FORMATS if (root / f"{stem}{ext}").is_file()]
        if len(found) > 1:
            raise DataError(f"{root} holds {len(found)} {split} files ({', '.join(f.name for f in found)}); keep one")
        if found:
            tables[split] = (_load_file(found[0], cache_dir), str(found[0]))
    if "train" not in tables:
        names = ", ".join(f"train{ext}" for ext in FILE_FORMATS)
        raise DataError(f"{root} has no train file ({names}), nor is it a save_to_disk folder")
    return tables


def _load_file(file: Path, cache_dir: str | None):
    from datasets import load_dataset

    builder, options = FILE_FORMATS[file.suffix]
    if _has_no_rows(file):  # datasets' own errors for these do not say so
        raise DataError(f"{file}: empty split (no rows)")
    try:
        return load_dataset(builder, data_files=str(file), split="train", cache_dir=cache_dir and
                            str(Path(cache_dir) / "datasets"), **options)
    except Exception as err:  # datasets wraps the parser's error: show the innermost one
        reason = _reason(err)
        if "corresponds to no data" in reason or "EmptyDataError" in reason:  # a header and no rows, or nothing
            raise DataError(f"{file}: empty split (no rows)") from None
        raise DataError(f"{file}: cannot be read as {file.suffix[1:].upper()} ({reason})") from None


def _has_no_rows(file: Path) -> bool:
    if file.stat().st_size == 0:
        return True
    if file.suffix != ".parquet":
        return False
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(file).num_rows == 0
    except Exception:  # not Parquet: loading it says so
        return False


def _load_from_disk(folder: Path):
    from datasets import load_from_disk

    try:
        return load_from_disk(str(folder))
    except Exception as err:
        raise DataError(f"{folder}: cannot be read as a save_to_disk folder ({_reason(err)})") from None


def _saved_dict(root: Path, split_names: dict) -> dict:
    saved = _load_from_disk(root)
    return {split: (saved[name], f"{root}/{name}") for split, name in _pick_splits(saved, str(root), split_names).items()}


def _hub(hub_id: str, hub_config: str | None, split_names: dict) -> dict:
    from datasets import load_dataset

    try:
        loaded = load_dataset(hub_id, hub_config)
    except Exception as err:
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = "; offline and not in the datasets cache: pass data.path=DIR (a folder of files)" if offline else ""
        raise DataError(f"data.path={hub_id}: could not load it from the hub ({_reason(err)}){hint}") from None
    where = f"{hub_id}" + (f" ({hub_config})" if hub_config else "")
    return {split: (loaded[name], f"{where} [{name}]") for split, name in _pick_splits(loaded, where, split_names).items()}


def _pick_splits(found, where: str, split_names: dict) -> dict[str, str]:
    """{split: the data set's split name}: ``data.split_names`` where given (it must exist), else the usual names."""
    available = list(found.keys())
    picked = {}
    for split in SPLITS:
        named = split_names.get(split)
        if named and named not in available:
            raise DataError(f"{where} has no split {named!r} (data.split_names.{split}); splits: {', '.join(available)}")
        name = named or next((n for n in HUB_SPLIT_ALIASES[split] if n in available), None)
        if name:
            picked[split] = name
    if "train" not in picked:
        raise DataError(f"{where} has no train split (splits: {', '.join(available)}); pass data.split_names.train=NAME")
    return picked


def _reason(err: BaseException) -> str:
    while err.__cause__ is not None or err.__context__ is not None:  # the innermost: the parser's own words
        err = err.__cause__ or err.__context__
    text = " ".join(str(err).split())[:160]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextlib.contextmanager
def _quiet_datasets():
    """No progress bars for a few small files (the log stays readable)."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


# -- columns, labels, ids -------------------------------------------------------------------------------
def _select_columns(ds, where: str, columns: CustomColumns) -> pd.DataFrame:
    have = list(ds.column_names)
    for key, col in columns.required().items():
        if col not in have:
            raise DataError(f"{where}: no column {col!r} ({key}); columns: {', '.join(have)}")
    if len(ds) == 0:
        raise DataError(f"{where}: empty split (no rows)")
    wanted = list(dict.fromkeys(columns.required().values()))
    return ds.select_columns(wanted).to_pandas()


def _class_label_names(ds, label_column: str) -> list[str] | None:
    feature = ds.features.get(label_column)
    return list(feature.names) if type(feature).__name__ == "ClassLabel" else None


def encode_labels(labels: dict[str, tuple[pd.Series, str]], class_names: Sequence[str] | None,
                  num_classes: int | None) -> tuple[list[str], dict[str, np.ndarray]]:
    """(class names, {split: int64 labels}) of every split's label column (``labels``: split ->
    (values, where they are)). Strings are class names; integers are class indices."""
    for series, where in labels.values():
        if series.isna().any():
            raise DataError(f"{where}: row {int(np.argmax(series.isna().values)) + 1} has no label")
    strings = any(_is_text(series) for series, _ in labels.values())
    if strings:
        names = [str(n) for n in class_names] if class_names else sorted(
            {str(v) for series, _ in labels.values() for v in series.unique()})
        index = {name: i for i, name in enumerate(names)}
        encoded = {}
        for split, (series, where) in labels.items():
            values = series.astype(str)
            unknown = ~values.isin(list(index))
            if unknown.any():
                row = int(np.argmax(unknown.values))
                raise DataError(f"{where}: unknown label {values.iloc[row]!r} in row {row + 1}; "
                                f"data.class_names has {', '.join(names)}")
            encoded[split] = values.map(index).to_numpy(np.int64)
    else:
        encoded = {split: _integer_labels(series, where) for split, (series, where) in labels.items()}
        top = max(int(v.max()) for v in encoded.values())
        count = len(class_names) if class_names else (int(num_classes) if num_classes else top + 1)
        if top >= count:
            where = next(w for s, (_, w) in labels.items() if int(encoded[s].max()) == top)
            limit = f"data.class_names has {count} names" if class_names else f"data.num_classes={count}"
            raise DataError(f"{where}: label {top} but {limit} (labels 0..{count - 1})")
        names = [str(n) for n in class_names] if class_names else [str(i) for i in range(count)]
    if num_classes is not None and int(num_classes) != len(names):
        raise DataError(f"data.num_classes={num_classes} but the data has {len(names)} classes "
                        f"({', '.join(names[:10])}); leave data.num_classes unset (null)")
    return names, encoded


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series)


def _integer_labels(series: pd.Series, where: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").astype(float)
    bad = values.isna() | (values != values.round()) | (values < 0)
    if bad.any():
        row = int(np.argmax(bad.values))
        hint = ("; unlabelled rows, as some hub test splits have: pick another split with data.split_names"
                if values.iloc[row] < 0 else "")
        raise DataError(f"{where}: label {_plain(series.iloc[row])!r} in row {row + 1} is not a class index "
                        f"(0, 1, ...) or a class name{hint}")
    return values.to_numpy(np.int64)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _standardize(df: pd.DataFrame, where: str, columns: CustomColumns, labels: np.ndarray) -> pd.DataFrame:
    out = pd.DataFrame({"text": df[columns.text].fillna("").astype(str)})
    if columns.text_pair:
        out["text_pair"] = df[columns.text_pair].fillna("").astype(str)
    out["label"] = labels
    out["sample_index"] = _ids(df, where, columns.id) if columns.id else np.arange(len(df), dtype=np.int64)
    return out.reset_index(drop=True)


def _ids(df: pd.DataFrame, where: str, column: str) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").astype(float)
    bad = values.isna() | (values != values.round())
    if bad.any():
        row = int(np.argmax(bad.values))
        raise DataError(f"{where}: id {_plain(df[column].iloc[row])!r} in row {row + 1} is not an integer "
                        f"(data.id_column={column}); use integer ids, or leave data.id_column unset for row order")
    ids = values.to_numpy(np.int64)
    repeated = pd.unique(ids[pd.Series(ids).duplicated().to_numpy()])
    if len(repeated):
        shown = ", ".join(str(int(i)) for i in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        raise DataError(f"{where}: {len(repeated)} ids of data.id_column={column} occur more than once ({shown}); "
                        f"each row needs its own id")
    return ids


def _check_classes(train: pd.DataFrame, where: str, names: list[str]) -> None:
    present = np.unique(train["label"].to_numpy())
    if len(present) < 2:
        raise DataError(f"{where}: every training row has the label {names[int(present[0])]!r}; "
                        f"a classifier needs two classes or more")
