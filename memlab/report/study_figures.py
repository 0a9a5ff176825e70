"""The figures of the smaller studies: typicality histograms (Fig. 4), the stability heat map
(Table 5), the validation bars and percentile curves, the label-noise precision-recall curves, and the learning
curve of a full-data run (accuracy per epoch, its plateau).
The numbers they draw come from :mod:`memlab.studies`."""
from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
import pandas as pd

from ..studies.typicality import split_groups
from ..studies.validation import score_columns
from .figures import new_figure, save_figure


def plot_typicality_histograms(scores_df: pd.DataFrame, fractions_df: pd.DataFrame,
                               path: str | os.PathLike, top_pct: float = 10,
                               class_names: Sequence[str] | None = None, bins: int = 20):
    """Fig. 4 with Table 1's groups: one panel per class, the distribution of positive fraction
    over all instances of the class (grey) and over its top-X% (red) and bottom-X% (blue) memorized,
    as densities so the groups compare despite their sizes. Writes a PNG; returns its path."""
    groups = split_groups(scores_df, fractions_df, top_pct)
    labels = sorted({label for _, label in groups})
    names = list(class_names) if class_names is not None else ["negative", "positive"]
    fig, axes = new_figure(1, max(1, len(labels)), figsize=(5.0 * max(1, len(labels)), 3.8))
    edges = np.linspace(0.0, 1.0, bins + 1)
    tag = f"{top_pct:g}%"
    for ax, label in zip(axes[0], labels):
        for group, color, alpha in (("all", "0.6", 0.45), (f"top-{tag}", "tab:red", 0.55),
                                    (f"bottom-{tag}", "tab:blue", 0.55)):
            values = groups[(group, label)]["positive_fraction"].to_numpy()
            ax.hist(values, bins=edges, density=True, color=color, alpha=alpha,
                    label=f"{group} (n={len(values)}, mean {100 * values.mean():.1f}%)")
        name = names[label] if 0 <= label < len(names) else str(label)
        ax.set_title(f"{name} class")
        ax.set_xlabel("positive phrase fraction")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    fig.suptitle(f"Typicality (Fig. 4, Table 1): positive-phrase fraction of the top / bottom {tag} memorized")
    return save_figure(fig, path)


def plot_heatmap(matrix_df: pd.DataFrame, path: str | os.PathLike, title: str = "Spearman ρ",
                 fmt: str = "{:.3f}"):
    """An annotated heat map of a square correlation matrix; writes the image, returns its path."""
    n = len(matrix_df)
    fig, axes = new_figure(1, 1, figsize=(1.2 * n + 2.5, 1.0 * n + 1.5))
    ax = axes[0, 0]
    values = matrix_df.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    # Rankings of checkpoints agree at ~0.98: start the colour scale just below the data so that
    # differences show, on a round step.
    vmin = max(-1.0, math.floor(float(finite.min()) * 10) / 10 - 0.1) if finite.size else 0.0
    image = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=1.0)
    ax.set_xticks(range(n), [str(c) for c in matrix_df.columns], rotation=30, ha="right")
    ax.set_yticks(range(n), [str(i) for i in matrix_df.index])
    for i in range(n):
        for j in range(values.shape[1]):
            v = values[i, j]
            text = "nan" if not np.isfinite(v) else fmt.format(v)
            light = np.isfinite(v) and v < vmin + 0.6 * (1.0 - vmin)
            ax.text(j, i, text, ha="center", va="center", color="white" if light else "black", fontsize=9)
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return save_figure(fig, path)


def plot_validation(table: pd.DataFrame, path, title: str = "") -> None:
    """Horizontal bars: Spearman with FZ overall and in the top 10%, the ceiling as a line."""
    fig, axes = new_figure(figsize=(7.0, 0.45 * len(table) + 1.5))
    ax = axes[0, 0]
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["spearman_vs_fz"], height=0.4, label="all instances")
    ax.barh(y + 0.2, table["spearman_vs_fz_top10"], height=0.4, label="its top 10%")
    if len(table):
        ax.axvline(float(table["ceiling"].iloc[0]), color="black", ls="--", lw=1, label="ceiling (sqrt reliability)")
    ax.set_yticks(y, table["score"], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="Spearman with Feldman-Zhang memorization", title=title or "which score measures memorization?")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_fz_reliability(table: pd.DataFrame, path, target: float = 0.8, title: str = "") -> None:
    """Split-half reliability of the Feldman-Zhang reference against the number of models (points),
    the Spearman-Brown projection from all of them (line) and the ``target`` (dashed)."""
    fig, axes = new_figure(figsize=(5.0, 3.4))
    ax = axes[0, 0]
    ax.plot(table["models"], table["projected"], "-", color="grey", lw=1, label="Spearman-Brown from all models")
    ax.errorbar(table["models"], table["reliability"], yerr=table["half_sd"], fmt="o", ms=4, capsize=2,
                label="split-half reliability (± sd over splits, of the half)")
    ax.axhline(target, color="black", ls="--", lw=1, label=f"target {target:g}")
    ax.set(xlabel="models (K)", ylabel="reliability", ylim=(0, 1), title=title or "Feldman-Zhang reference")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_scores_vs_fz(candidates: pd.DataFrame, fz: pd.DataFrame, path, bins: int = 20) -> None:
    """One panel per candidate: mean FZ memorization (± its standard error over the bin) per
    percentile bin of the candidate; a score that measures memorization rises to the right."""
    merged = candidates.merge(fz[["sample_index", "fz_mem"]], on="sample_index").dropna(subset=["fz_mem"])
    names = score_columns(candidates)
    cols = min(4, max(1, len(names)))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = new_figure(rows, cols, figsize=(3.2 * cols, 2.6 * rows), sharey=True)
    for ax, name in zip(axes.flat, names):
        pct = merged[name].rank(pct=True, method="first")
        grouped = merged["fz_mem"].groupby(np.minimum((pct * bins).astype(int), bins - 1))
        mean, err = grouped.mean(), grouped.sem()
        ax.errorbar((mean.index + 0.5) / bins * 100, mean, yerr=err, fmt="o-", ms=2, lw=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("percentile of the score", fontsize=7)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel("mean FZ memorization", fontsize=7)
    fig.suptitle("Feldman-Zhang memorization by percentile of each score (rising: it measures memorization)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def plot_precision_recall(candidates: pd.DataFrame, flipped: Sequence[int], path, title: str = "") -> None:
    """Precision-recall curve of every score in finding the flipped labels (one figure)."""
    import matplotlib
    from sklearn.metrics import precision_recall_curve

    is_noisy = candidates["sample_index"].isin(set(int(i) for i in flipped)).to_numpy()
    fig, axes = new_figure(figsize=(7.0, 5.0))
    ax = axes[0, 0]
    names = [c for c in candidates.columns if c != "sample_index"]
    colors = matplotlib.colormaps["tab20"].colors
    for i, name in enumerate(names):
        precision, recall, _ = precision_recall_curve(is_noisy, candidates[name].to_numpy())
        ax.plot(recall, precision, label=name, lw=1.2, color=colors[i % len(colors)],
                ls="--" if name.startswith("cleanlab") else "-")
    ax.axhline(is_noisy.mean(), color="grey", ls=":", lw=1, label="random")
    ax.set(xlabel="recall of flipped labels", ylabel="precision", ylim=(0, 1.02), title=title or "label-error detection")
    ax.legend(fontsize=7, loc="upper right")
    save_figure(fig, path)


def plot_learning_curve(epochs: Sequence[int], curves: dict[str, Sequence[float]], path, plateau: int | None = None,
                        title: str = "Learning curve"):
    """Accuracy (%) per epoch, one line per split (``curves``: name -> fractions), the plateau epoch marked."""
    fig, axes = new_figure(1, 1, figsize=(5.5, 3.5))
    ax = axes[0, 0]
    for name, values in curves.items():
        ax.plot(list(epochs), [100 * v for v in values], marker="o", label=name)
    if plateau is not None:
        ax.axvline(plateau, color="grey", linestyle="--", label=f"plateau: epoch {plateau}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
