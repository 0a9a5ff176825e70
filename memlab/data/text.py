"""Text classification data modules (SST-2 sentences or phrases, SNLI entailment-vs-not, Yahoo! Answers,
generated toys).

``source``: ``hub`` (real loading code, needs the network), ``local`` (``data.dir`` in the study's CSV
layout; ``name=sst2_phrases`` also reads ``<dir>/trees/train.txt``), ``custom`` (any text classification
data through HF ``datasets``, your column names, string labels: :mod:`memlab.data.custom_source`) or
``generated``. Examples are
tokenised once and held as columns (:mod:`memlab.data.columns`: memory does not grow by a dict of
tensors per example); each carries its stable ``sample_index``. ``limit_train=N`` keeps a seeded sample of
N training examples (the data seed; scale benchmarks; ``data.limit_train=N`` composes for every text data
set: :mod:`memlab.__main__`). ``drop_empty=True`` leaves out rows with an empty text (else an error naming
them: :mod:`memlab.data.empty_texts`). Cached prefix outputs (``hidden``) are views of an on-disk store,
read per batch by :meth:`TextDataModule.collate`.
"""
from __future__ import annotations

import hashlib
import os

import torch
from torch.nn.utils.rnn import pad_sequence

from .base import DataError, MemlabDataModule
from .columns import ColumnDataset, RaggedColumn
from .custom_source import CustomColumns, read_custom
from .disk_store import materialize
from .empty_texts import check_no_empty_texts, drop_empty_texts
from .text_sources import PHRASE_DATASETS, generate, limit_rows, read_hub, read_local, read_local_phrases


TOKENIZE_CHUNK = 4096  # texts per tokenizer call


class TextDataModule(MemlabDataModule):
    def __init__(self, name: str, tokenizer: str, num_classes: int = 2, source: str = "local",
                 dir: str | None = None, pair: bool = False, class_names: list[str] | None = None,
                 max_length: int = 128, val_size: float | int = 0.1, test_size: float | int = 0.1,
                 hub_id: str | None = None, train_size: int | None = None, generated_task: str = "sentiment",
                 generated_sizes: tuple[int, int, int] = (96, 32, 32), split_from_train: bool = False,
                 limit_train: int | None = None, path: str | None = None, text_column: str = "text",
                 text_pair_column: str | None = None, label_column: str = "label", id_column: str | None = None,
                 hub_config: str | None = None, split_names: dict | None = None, cache_dir: str | None = None,
                 drop_empty: bool = False, **kwargs):
        super().__init__(**kwargs)
        # rows with an empty text: an error naming them, or (True) left out and counted in dropped_empty
        self.drop_empty, self.dropped_empty = bool(drop_empty), {}
        self.limit_train = None if limit_train is None else int(limit_train)
        self.split_from_train = split_from_train  # local files: carve a missing dev/test out of train
        self.name, self.source, self.dir, self.pair = name, source, dir, pair or bool(text_pair_column)
        # source=custom: what to read and how (memlab.data.custom_source); the classes follow the data
        self.path, self.hub_config, self.split_names, self.cache_dir = path, hub_config, dict(split_names or {}), cache_dir
        self.custom_columns = CustomColumns(text_column, label_column, text_pair_column, id_column)
        self.given_class_names = list(class_names) if class_names else None
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes or 0)]
        self.max_length, self.val_size, self.test_size = max_length, val_size, test_size
        self.hub_id, self.train_size = hub_id, train_size
        self.generated_task, self.generated_sizes = generated_task, tuple(generated_sizes)
        self.tokenizer_name = tokenizer
        self._tokenizer = None
        self.frames = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..utils.pretrained import load_tokenizer

            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def read_frames(self):
        if self.source == "local":
            if not self.dir:
                raise DataError("data.source=local needs data.dir=DIR (a folder with train.csv)")
            if self.name in PHRASE_DATASETS:
                return read_local_phrases(self.dir, self.seed)
            return read_local(self.dir, self.num_classes, self.pair, self.seed, self.val_size, self.test_size,
                              self.split_from_train, self.drop_empty)
        if self.source == "hub":
            if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
                raise DataError("data.source=hub but the hub is offline; use data.source=local data.dir=DIR")
            return read_hub(self.name, self.seed, self.hub_id, self.train_size)
        if self.source == "custom":
            frames, self.class_names = read_custom(
                self.path, self.custom_columns, self.given_class_names, self.num_classes, self.hub_config,
                self.split_names, self.seed, self.val_size, self.test_size, self.split_from_train, self.cache_dir,
                self.drop_empty)
            self.num_classes = len(self.class_names)
            return frames
        if self.source == "generated":
            return generate(self.generated_task, self.generated_sizes, self.seed)
        raise DataError(f"unknown data.source={self.source!r} (hub, local, custom, generated)")

    def build_splits(self) -> dict[str, ColumnDataset]:
        self.frames = self.read_frames()
        if self.drop_empty:
            self.frames, self.dropped_empty = drop_empty_texts(self.frames)
        else:  # hub and generated data: the readers of files have named theirs already
            for split, frame in self.frames.items():
                check_no_empty_texts(frame, f"data={self.name} ({split} split)")
        self.frames["train"] = limit_rows(self.frames["train"], self.limit_train, self.seed)
        return {split: self.tokenize(df) for split, df in self.frames.items()}

    def tokenize(self, df) -> ColumnDataset:
        """The rows of ``df`` tokenised, as columns (a few bytes per example, see
        :mod:`memlab.data.columns`); each example reads ``{"input_ids", "labels", "sample_index",
        "text"[, "token_type_ids"]}``, ``text`` joining a pair with `` ||| ``."""
        texts = df["text"].tolist()
        pairs = df["text_pair"].tolist() if self.pair else None
        ids, types = [], []
        # a chunk at a time: the tokenizer's encodings (~1-2 KB per text of Python and Rust objects) are
        # freed before the next chunk, so the heap they fragment does not grow with n
        for start in range(0, len(texts), TOKENIZE_CHUNK):
            chunk = slice(start, start + TOKENIZE_CHUNK)
            enc = self.tokenizer(texts[chunk], pairs[chunk] if pairs else None, truncation=True,
                                 max_length=self.max_length)
            ids.append(RaggedColumn.from_lists(enc["input_ids"]))
            if "token_type_ids" in enc and self.pair:
                types.append(RaggedColumn.from_lists(enc["token_type_ids"]))
            del enc
        columns = {"input_ids": RaggedColumn.concat(ids),
                   "labels": torch.tensor(df["label"].tolist()),
                   "sample_index": torch.tensor([int(i) for i in df["sample_index"].tolist()], dtype=torch.int64),
                   "text": texts if not self.pair else [f"{a} ||| {b}" for a, b in zip(texts, pairs)]}
        if types:
            columns["token_type_ids"] = RaggedColumn.concat(types)
        return ColumnDataset(columns)

    def collate(self, examples: list[dict]) -> dict:
        pad = self.tokenizer.pad_token_id or 0
        ids = [e["input_ids"] for e in examples]
        batch = {"input_ids": pad_sequence(ids, batch_first=True, padding_value=pad),
                 "labels": torch.stack([e["labels"] for e in examples]),
                 "sample_index": torch.tensor([e["sample_index"] for e in examples])}
        batch["attention_mask"] = pad_sequence([torch.ones_like(i) for i in ids], batch_first=True)
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = pad_sequence([e["token_type_ids"] for e in examples], batch_first=True)
        if "hidden" in examples[0]:
            # views of the on-disk prefix store: read now, per example (materialize), not through the mapping
            batch["hidden"] = pad_sequence([materialize(e["hidden"]).float() for e in examples], batch_first=True)
        return batch

    def example_length(self, example: dict) -> int:
        return len(example["input_ids"])

    def describe(self, example: dict) -> str:
        return example["text"]

    def fingerprint(self) -> str:
        """Hash of the tokenised data (all splits): the key of caches derived from it."""
        h = hashlib.sha1(f"{self.name}|{self.tokenizer_name}|{self.max_length}".encode())
        for split in ("train", "val", "test"):
            for e in (self.full_train if split == "train" else self.splits[split]).examples:
                h.update(e["input_ids"].numpy().tobytes())
                h.update(str(e["sample_index"]).encode())
        return h.hexdigest()[:16]
