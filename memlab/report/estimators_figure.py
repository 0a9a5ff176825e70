"""docs/estimators.png: per data set, each estimator's Spearman with Feldman-Zhang ÷ the ceiling, with its
95% interval, against its cost beyond training (× one training epoch, log scale). An estimator with no
recorded cost is named under its panel; a cost of 0 is drawn at the axis' left end."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter

from .estimator_runs import DatasetResult
from .estimators_markdown import dataset_name
from .figures import new_figure, save_figure


def _colours(names: list[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_estimators(results: list[DatasetResult], path: str | Path) -> Path:
    names = list(dict.fromkeys(s for r in results for s in r.table["score"]))
    colours = _colours(names)
    columns = min(3, max(1, len(results)))
    rows = math.ceil(max(1, len(results)) / columns)
    fig, axes = new_figure(rows, columns, figsize=(5.2 * columns, 4.2 * rows))
    positive = [c for r in results for c in r.table["cost"] if np.isfinite(c) and c > 0]
    floor = min(positive) / 3 if positive else 0.01  # where a cost of 0 is drawn on the log axis
    shown = set()
    for ax, result in zip(axes.flat, results):
        table = result.table[np.isfinite(result.table["ratio"].to_numpy(dtype=float))]
        priced = table[np.isfinite(table["cost"].to_numpy(dtype=float))]
        for row in priced.itertuples(index=False):
            x = max(row.cost, floor)
            low, high = row.ratio - row.ratio_low, row.ratio_high - row.ratio
            error = [[low], [high]] if np.isfinite(low) and np.isfinite(high) else None
            ax.errorbar([x], [row.ratio], yerr=error, fmt="o", color=colours[row.score], capsize=3,
                        label=row.score if row.score not in shown else None)
            shown.add(row.score)
            ax.annotate(row.score + (" (0)" if row.cost == 0 else ""), (x, row.ratio), textcoords="offset points",
                        xytext=(4, 3), fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        if priced.empty:
            ax.set_xlim(floor, 100)
            ax.text(0.5, 0.5, "no cost recorded in this run\n(see the table)", transform=ax.transAxes,
                    ha="center", va="center", color="grey")
        ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("cost beyond training (× one training epoch, log)")
        ax.set_ylabel("Spearman with FZ ÷ ceiling")
        ax.set_title(f"{dataset_name(result.runs.dataset)} (K = {result.models or '–'}, ceiling "
                     f"{result.ceiling:.2f})", fontsize=10)
        unpriced = [s for s in table["score"] if s not in set(priced["score"])]
        if unpriced and not priced.empty:
            ax.text(0.02, 0.02, "no cost recorded: " + ", ".join(unpriced), transform=ax.transAxes, fontsize=7,
                    va="bottom", color="grey")
    for ax in list(axes.flat)[len(results):]:
        ax.set_visible(False)
    if shown:
        fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, len(shown)), fontsize=8, frameon=False)
    fig.suptitle("Which estimator: agreement with Feldman-Zhang (÷ ceiling, 95% CI) against cost")
    return save_figure(fig, path)
