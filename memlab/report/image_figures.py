"""Memorized images shown as images: the most and least memorized training images of every class as a
grid (``top_bottom.png``, beside ``top_bottom.md``: paper Table 4's view for pictures) and the
attribution heat map over each class's most memorized image (``attributions.png``, paper Fig. 3: red
cells raise the memorization score, blue ones lower it). Pictures come from a callable
``images(sample_indices) -> uint8 [N, H, W, 3]`` (the image data module's ``images``)."""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..studies.ranking import memorization_column, rank_by_memorization
from .figures import new_figure, save_figure

Images = Callable[[Sequence[int]], np.ndarray]


def class_name(label, class_names: Sequence[str] | None) -> str:
    """A label's class name when there is one for it, else the label itself."""
    if isinstance(label, (float, np.floating)) and float(label).is_integer():  # a pandas row upcasts ints
        label = int(label)
    if class_names is not None and isinstance(label, (int, np.integer)) and 0 <= label < len(class_names):
        return str(class_names[label])
    return str(label)


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def plot_top_bottom_images(scores: pd.DataFrame, images: Images, path: str | os.PathLike, n: int = 3,
                           class_names: Sequence[str] | None = None):
    """One row per class: its ``n`` most memorized training images, then its ``n`` least memorized, in
    the order of scores.csv's ``rank`` (the score it follows, loo_score else mem_score). Under each
    picture: its class and sample_index, the score, and the model's prediction (red when wrong)."""
    column = memorization_column(scores)
    ordered = rank_by_memorization(scores, "rank", ascending=True) if "rank" in scores else rank_by_memorization(scores)
    labels = sorted(ordered["label"].unique())
    fig, axes = new_figure(len(labels), 2 * n, figsize=(1.9 * 2 * n, 2.3 * len(labels)))
    for ax in axes.flat:
        _blank(ax)
    for row, label in enumerate(labels):
        part = ordered[ordered["label"] == label]
        chosen = [("top", i, r) for i, (_, r) in enumerate(part.head(n).iterrows())]
        bottom = part.tail(min(n, max(len(part) - n, 0)))  # never the same picture twice
        chosen += [("bottom", n + i, r) for i, (_, r) in enumerate(bottom.iterrows())]
        pictures = images([int(r["sample_index"]) for _, _, r in chosen])
        for (_, col, r), picture in zip(chosen, pictures):
            ax = axes[row, col]
            ax.imshow(picture)
            predicted = r.get("prediction")
            wrong = predicted is not None and not pd.isna(predicted) and predicted != r["label"]
            pred = "" if predicted is None or pd.isna(predicted) else f"\npred {class_name(predicted, class_names)}"
            ax.set_xlabel(f"{class_name(r['label'], class_names)} #{int(r['sample_index'])}\n"
                          f"{column} {float(r[column]):.3g}{pred}", fontsize=7, color="tab:red" if wrong else "black")
        axes[row, 0].set_ylabel(class_name(label, class_names), fontsize=9)
    axes[0, 0].set_title(f"most memorized (by {column}) →", fontsize=9, loc="left")
    axes[0, n].set_title("least memorized →", fontsize=9, loc="left")
    fig.suptitle(f"The {n} most and {n} least memorized training images of every class", fontsize=11)
    fig.legend(handles=[_caption_key("tab:red", "red caption: the model's prediction is wrong"),
                        _caption_key("black", "black caption: the prediction is right")],
               loc="lower center", ncol=2, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    return save_figure(fig, path)


def _caption_key(color: str, text: str):
    """A legend entry that is only coloured text (the captions it explains are text too)."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, marker="s", ls="none", label=text)


def top_per_class(records: Sequence[Mapping]) -> list[Mapping]:
    """The first record of every label, in label order (records come most memorized first)."""
    first: dict = {}
    for r in records:
        first.setdefault(r["label"], r)
    return [first[k] for k in sorted(first)]


def attribution_overlay(grid: np.ndarray, max_alpha: float = 0.7) -> np.ndarray:
    """RGBA ``[h, w, 4]`` of an attribution grid: red where positive, blue where negative, opacity
    ``max_alpha`` · |a| / max |a| (so only the cells that matter cover the picture, as in Fig. 3)."""
    peak = float(np.abs(grid).max()) or 1.0
    overlay = np.zeros((*grid.shape, 4))
    overlay[..., 0] = grid > 0
    overlay[..., 2] = grid < 0
    overlay[..., 3] = max_alpha * np.abs(grid) / peak
    return overlay


def _attribution_colours():
    """Blue (negative) through transparent white to red (positive): the colours of :func:`attribution_overlay`."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("memlab_attribution", [(0, 0, 1, 0.7), (1, 1, 1, 0.0), (1, 0, 0, 0.7)])


def plot_image_heatmaps(records: Sequence[Mapping], images: Images, path: str | os.PathLike,
                        class_names: Sequence[str] | None = None, predictions: Mapping[int, object] | None = None):
    """Paper Fig. 3: every class's most memorized training image (the first record of its label; records
    most memorized first) with its Eq. 5 attribution grid over it (:func:`attribution_overlay`), and a colour key
    (red raises memorization, blue lowers it). Each picture's title gives the prediction, the score the
    attributions explain and what the cells sum to (M_replace, Eq. 4)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    colours = _attribution_colours()
    chosen = top_per_class(records)
    cols = min(5, len(chosen))
    rows = -(-len(chosen) // cols)
    fig, axes = new_figure(rows, cols, figsize=(2.6 * cols, 2.9 * rows))
    for ax in axes.flat:
        ax.axis("off")
    pictures = images([int(r["sample_index"]) for r in chosen])
    for ax, r, picture in zip(axes.flat, chosen, pictures):
        grid = np.asarray(r["attributions"], dtype=float)
        ax.imshow(picture)
        height, width = picture.shape[:2]  # the grid's cells cover the picture's pixels exactly
        ax.imshow(attribution_overlay(grid), interpolation="nearest",
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        predicted = (predictions or {}).get(int(r["sample_index"]))
        pred = "" if predicted is None else f", pred {class_name(predicted, class_names)}"
        score = f"loo_score {r['loo_score']:.3g}" if "loo_score" in r else f"mem_score {r['mem_score']:.3g}"
        ax.set_title(f"{class_name(r['label'], class_names)} #{r['sample_index']}{pred}\n{score}, "
                     f"cells sum {r.get('attribution_total', grid.sum()):.3g}", fontsize=7)
    fig.suptitle("Each class's most memorized training image and its attributions (Eq. 5, Fig. 3)", fontsize=10)
    key = fig.colorbar(ScalarMappable(norm=Normalize(-1.0, 1.0), cmap=colours), ax=list(axes.flat),
                       orientation="horizontal", fraction=0.04, pad=0.04, aspect=40)
    key.set_ticks([-1.0, 0.0, 1.0], labels=["lowers memorization", "0", "raises memorization"])
    key.ax.tick_params(labelsize=8)
    key.set_label("attribution / max |attribution| of the image: red raises memorization, blue lowers it",
                  fontsize=8)
    return save_figure(fig, path)
