"""What every memlab data module shares: splits held as ``Dataset``s of dict examples (a list of
dicts, or columns that build each dict when it is read: text) that carry a stable ``sample_index``,
a train split that leaves out a given set of indices (the removal studies), deterministic loaders
for scoring, and one-line errors for bad input.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence, Union

import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import DataError  # noqa: F401  (defined without Lightning: config checks raise it early)
from ..utils.memory import release_free_memory
from .columns import ColumnDataset


class ListDataset(Dataset):
    """Examples held as a list of dicts (tensors inside); ``sample_index`` travels with each."""

    def __init__(self, examples: Sequence[dict]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]

    def sample_indices(self) -> list[int]:
        return [int(e["sample_index"]) for e in self.examples]

    def without(self, exclude: Iterable[int]) -> "ListDataset":
        drop = {int(i) for i in exclude}
        return ListDataset([e for e in self.examples if int(e["sample_index"]) not in drop])

    def column(self, name: str) -> list:
        """Field ``name`` of every example, in order."""
        return [e[name] for e in self.examples]

    def subset(self, positions: Iterable[int]) -> "ListDataset":
        """The examples at ``positions``, in that order (the same dicts)."""
        return type(self)([self.examples[int(p)] for p in positions])

    def with_column(self, name: str, values: Sequence) -> "ListDataset":
        """These examples with field ``name`` set to ``values[i]`` for example i (new dicts)."""
        if len(values) != len(self):
            raise ValueError(f"{len(values)} values of {name!r} for {len(self)} examples")
        return type(self)([{**e, name: values[i]} for i, e in enumerate(self.examples)])

    def map(self, fn: Callable[[list[dict]], list[dict]]) -> "ListDataset":
        return ListDataset(fn(self.examples))


ExampleDataset = Union[ListDataset, ColumnDataset]  # a split: dict examples, as a list or as columns


class MemlabDataModule(L.LightningDataModule):
    """Base of the text and image data modules.

    Subclasses implement :meth:`build_splits` returning ``{"train","val","test"} -> ListDataset``
    (or :class:`~memlab.data.columns.ColumnDataset`, as the text modules do) and :meth:`collate`.
    ``exclude`` (sample indices) is removed from the train split only.
    """

    num_classes: int = 2
    class_names: list[str] = []

    def __init__(self, batch_size: int = 32, eval_batch_size: int = 64, num_workers: int = 0,
                 exclude: Iterable[int] | None = None, seed: int = 0, shuffle_seed: int | None = None,
                 group_by_length: bool = False, label_noise: float = 0.0, label_noise_seed: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.exclude = sorted({int(i) for i in (exclude or [])})
        self.seed = seed  # splits and subsamples: fixed across training seeds (removal needs it)
        self.shuffle_seed = seed if shuffle_seed is None else shuffle_seed  # follows the training seed
        self.group_by_length = group_by_length
        # the label-error benchmark: this fraction of the train labels flipped (seeded), see with_label_noise
        self.label_noise, self.label_noise_seed = float(label_noise or 0.0), int(label_noise_seed)
        self.label_flips = None  # sample_index, original_label, noisy_label of the flipped ones
        self.splits: dict[str, ExampleDataset] | None = None
        self.full_train: ExampleDataset | None = None

    # -- to implement -------------------------------------------------------------------------
    def build_splits(self) -> dict[str, ExampleDataset]:
        raise NotImplementedError

    def collate(self, examples: list[dict]) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self, example: dict) -> str:
        """Human-readable text of one example (the ``text`` column of scores.csv)."""
        return f"#{int(example['sample_index'])}"

    # -- shared -------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = self.build_splits()
        for name, ds in splits.items():
            if len(ds) == 0:
                raise DataError(f"the {name} split is empty; check data.dir and the split sizes")
        if self.label_noise:
            splits["train"] = self.with_label_noise(splits["train"])
        self.full_train = splits["train"]
        unknown = set(self.exclude) - set(self.full_train.sample_indices())
        if unknown:
            raise DataError(f"{len(unknown)} excluded sample_index values are not in the train split "
                            f"(e.g. {sorted(unknown)[:3]}); was the ranking computed on other data?")
        splits["train"] = self.full_train.without(self.exclude)
        if len(splits["train"]) == 0:
            raise DataError("removal left the train split empty; lower removal.pct")
        self.splits = splits
        # the readers' and the tokenizer's lists are freed now, but glibc keeps their pages (145 MiB at
        # 68k SST-2 phrases) under everything allocated later: give them back
        release_free_memory()

    def with_label_noise(self, train: ExampleDataset) -> ExampleDataset:
        """``train`` with exactly round(label_noise x N) labels flipped to another class (seeded by
        ``label_noise_seed``; which ones: ``self.label_flips``)."""
        from .label_flips import choose_label_flips

        labels = [int(y) for y in train.column("labels")]
        try:
            self.label_flips = choose_label_flips(train.sample_indices(), labels, self.label_noise,
                                                  self.label_noise_seed, self.num_classes)
        except ValueError as err:
            raise DataError(f"data.label_noise={self.label_noise}: {err}") from None
        noisy = dict(zip(self.label_flips["sample_index"].tolist(), self.label_flips["noisy_label"].tolist()))
        labels = [noisy.get(i, label) for i, label in zip(train.sample_indices(), labels)]
        return train.with_column("labels", torch.tensor(labels, dtype=torch.int64))

    def set_exclude(self, exclude: Iterable[int]) -> None:
        """Leave these ``sample_index`` values out of the train split (after setup too)."""
        self.exclude = sorted({int(i) for i in exclude})
        if self.splits is not None:
            self.splits["train"] = self.full_train.without(self.exclude)

    def transform_splits(self, fn: Callable[[str, ExampleDataset], ExampleDataset]) -> None:
        """Replace every split (and the full train split) by ``fn(name, split)`` (the prefix cache)."""
        assert self.splits is not None, "call setup() first"
        self.full_train = fn("train", self.full_train)
        self.splits = {name: fn(name, ds) if name != "train" else self.full_train.without(self.exclude)
                       for name, ds in self.splits.items()}

    def loader(self, ds: Dataset, shuffle: bool, batch_size: int) -> DataLoader:
        """A loader of ``ds`` (any examples of this module) with its collate and workers; shuffled
        with the training seed when ``shuffle``."""
        g = torch.Generator().manual_seed(self.shuffle_seed)
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=self.collate,
                          num_workers=self.num_workers, generator=g if shuffle else None,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        ds = self.splits["train"]
        distributed = self.trainer is not None and self.trainer.world_size > 1
        if self.group_by_length and not distributed:  # DDP: Lightning's distributed sampler instead
            from .samplers import LengthGroupedBatches

            g = torch.Generator().manual_seed(self.shuffle_seed)
            batches = LengthGroupedBatches([self.example_length(e) for e in ds.examples], self.batch_size, g)
            return DataLoader(ds, batch_sampler=batches, collate_fn=self.collate, num_workers=self.num_workers,
                              persistent_workers=self.num_workers > 0)
        return self.loader(ds, True, self.batch_size)

    def example_length(self, example: dict) -> int:
        """Cost proxy used to group batches (text: number of tokens)."""
        return 1

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.splits["val"], False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.splits["test"], False, self.eval_batch_size)

    def score_dataloader(self, batch_size: int | None = None) -> DataLoader:
        """The (reduced) train split in a fixed order: what memorization scores are computed on.
        With ``group_by_length`` the order is by length (then sample_index): batches pad far less."""
        ds = self.splits["train"]
        if self.group_by_length:
            ds = ds.subset(self.length_order(ds))
        return self.loader(ds, False, batch_size or self.batch_size)

    def length_order(self, ds) -> list[int]:
        """Positions of ``ds``'s examples by (length, sample_index): the scoring order."""
        keys = [(self.example_length(e), int(e["sample_index"])) for e in ds.examples]
        return sorted(range(len(keys)), key=keys.__getitem__)
