"""Seeded label noise for the label-error benchmark: which training labels a data module flips, and
to what (``data.label_noise``, ``data.label_noise_seed``). Plain numpy / pandas."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def choose_label_flips(sample_index: Sequence[int], labels: Sequence[int], fraction: float, seed: int,
                       num_classes: int) -> pd.DataFrame:
    """Which labels to flip and to what: exactly ``round(fraction * N)`` instances, drawn without
    replacement with ``numpy.random.default_rng(seed)`` in ``sample_index`` order (so the draw does not
    depend on the order the data arrived in), each given a uniformly drawn other class.

    Returns ``sample_index, original_label, noisy_label`` for the flipped instances only.
    """
    index, labels = np.asarray(sample_index, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if len(index) != len(labels):
        raise ValueError(f"{len(index)} sample indices for {len(labels)} labels")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"noise fraction must be in [0, 1), got {fraction}")
    if num_classes < 2 or labels.min(initial=0) < 0 or labels.max(initial=0) >= num_classes:
        raise ValueError(f"labels must lie in 0..{num_classes - 1} with at least 2 classes")
    order = np.argsort(index, kind="stable")
    rng = np.random.default_rng(seed)
    ranks = np.sort(rng.choice(len(index), size=int(round(fraction * len(index))), replace=False))
    chosen = order[ranks]  # positions, in sample_index order: the new labels follow it too
    shift = rng.integers(1, num_classes, size=len(chosen))  # 1..C-1: never the original class
    return pd.DataFrame({"sample_index": index[chosen], "original_label": labels[chosen],
                         "noisy_label": (labels[chosen] + shift) % num_classes})
