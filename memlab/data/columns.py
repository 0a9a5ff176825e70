"""Examples held as columns: a data set whose memory is a few bytes per example, not a few KB.

A list of dict examples costs a dict and, per field, a tensor (a Python object, a TensorImpl and a
storage of its own) whose payload is a few dozen bytes: 1.35 KB of heap per SST-2 phrase (87 MiB at
68k), and a tagged view of its prefix states 0.7 KB more. As columns: 0.18 KB (most of it the token
ids; the texts are the data frame's strings) and 16 bytes for the prefix states.

:class:`ColumnDataset` keeps each field as one column (token ids as one flat tensor with offsets,
labels and sample indices as one tensor each, the texts as a list of str, the prefix states as
:class:`~memlab.data.disk_store.StoreRows`) and builds an example's dict only when it is indexed: to
the code that reads them, examples are the same dicts as before
(``input_ids`` a 1-D int64 tensor, ``labels`` a 0-d tensor, ``sample_index`` an int, ``text`` a str,
``hidden`` a tagged view of the store). Subsets (removal, reordering) are index tensors into shared
columns, so they copy nothing either.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Iterable, Iterator, Mapping

import torch
from torch import Tensor
from torch.utils.data import Dataset


class RaggedColumn:
    """Variable-length rows (token ids) as one flat tensor: row i is ``values[offsets[i]:][:lengths[i]]``."""

    def __init__(self, values: Tensor, offsets: Tensor, lengths: Tensor):
        self.values, self.offsets, self.lengths = values, offsets, lengths

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], dtype: torch.dtype = torch.int64) -> "RaggedColumn":
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
        offsets = torch.cumsum(lengths, 0) - lengths
        values = torch.tensor([v for r in rows for v in r], dtype=dtype)
        return cls(values, offsets, lengths)

    @classmethod
    def concat(cls, parts: Sequence["RaggedColumn"]) -> "RaggedColumn":
        """The rows of ``parts`` one after another, as one column; each part compact, as
        :meth:`from_lists` makes it (its rows its values back to back)."""
        if not parts:
            return cls.from_lists([])
        lengths = torch.cat([p.lengths for p in parts])
        return cls(torch.cat([p.values for p in parts]), torch.cumsum(lengths, 0) - lengths, lengths)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Tensor:
        start = int(self.offsets[i])
        return self.values[start:start + int(self.lengths[i])]

    def take(self, positions: Tensor) -> "RaggedColumn":
        return RaggedColumn(self.values, self.offsets[positions], self.lengths[positions])


def _take(column: Any, positions: Tensor) -> Any:
    """The rows ``positions`` of a column, as a column of the same kind (shared storage where it can)."""
    if isinstance(column, Tensor):
        return column[positions]
    if hasattr(column, "take"):
        return column.take(positions)
    return [column[p] for p in positions.tolist()]


class ExampleSequence(Sequence):
    """``dataset.examples`` of a :class:`ColumnDataset`: its examples as stored (:meth:`ColumnDataset.row`),
    a read-only sequence of dicts, each built when it is indexed (a slice gives a list)."""

    def __init__(self, dataset: "ColumnDataset"):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.dataset.row(j) for j in range(*i.indices(len(self)))]
        return self.dataset.row(i)

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self.dataset.row(i)


class ColumnDataset(Dataset):
    """A data set of dict examples stored as columns (see the module docstring), with the interface
    of :class:`~memlab.data.base.ListDataset` (``examples``, ``sample_indices``, ``without``,
    ``subset``, ``with_column``).

    ``columns``: field name -> a column of one entry per example, in the order the example dict
    lists its fields: an int64 tensor ``[N]`` (``labels``, ``sample_index``), a :class:`RaggedColumn`,
    a list, or any sequence with ``take(positions)`` (:class:`~memlab.data.disk_store.StoreRows`).
    ``int_fields``: the fields whose entries are Python ints in an example (``sample_index``)."""

    def __init__(self, columns: Mapping[str, Any], int_fields: Iterable[str] = ("sample_index",)):
        self.columns = dict(columns)
        self.int_fields = frozenset(int_fields)
        sizes = {name: len(col) for name, col in self.columns.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"columns of different lengths: {sizes}")
        self._len = next(iter(sizes.values()), 0)

    def __len__(self) -> int:
        return self._len

    def row(self, i: int) -> dict:
        """Example ``i`` as stored (``examples[i]``); what a loader gets is ``self[i]``, which a subclass
        may change (the image features are read from their store there)."""
        if not -self._len <= i < self._len:
            raise IndexError(f"example {i} of {self._len}")
        i = int(i) % self._len
        return {name: int(col[i]) if name in self.int_fields else col[i] for name, col in self.columns.items()}

    def __getitem__(self, i: int) -> dict:
        return self.row(i)

    @property
    def examples(self) -> ExampleSequence:
        return ExampleSequence(self)

    def column(self, name: str) -> Any:
        """Field ``name`` of every example, as its column (no example is built: the image split's
        features are not read)."""
        return self.columns[name]

    def sample_indices(self) -> list[int]:
        index = self.columns["sample_index"]
        return index.tolist() if isinstance(index, Tensor) else [int(i) for i in index]

    def subset(self, positions: Sequence[int] | Tensor) -> "ColumnDataset":
        """The examples at ``positions``, in that order (columns shared, not copied)."""
        positions = torch.as_tensor(positions, dtype=torch.int64)
        return type(self)({name: _take(col, positions) for name, col in self.columns.items()}, self.int_fields)

    def without(self, exclude: Iterable[int]) -> "ColumnDataset":
        drop = torch.tensor(sorted({int(i) for i in exclude}), dtype=torch.int64)
        keep = ~torch.isin(torch.as_tensor(self.sample_indices(), dtype=torch.int64), drop)
        return self.subset(keep.nonzero().flatten())

    def with_column(self, name: str, values: Any) -> "ColumnDataset":
        """These examples with field ``name`` set to ``values[i]`` for example i (added last, or replaced
        in place)."""
        if len(values) != len(self):
            raise ValueError(f"{len(values)} values of {name!r} for {len(self)} examples")
        return type(self)({**self.columns, name: values}, self.int_fields)
