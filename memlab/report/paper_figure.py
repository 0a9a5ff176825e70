"""Fig. 1 on every data set in one picture: memlab's top − random removed (pp, with its 95% interval) beside
the paper's, one panel per data set. ``python -m memlab.report paper`` writes it next to the report
(``docs/paper_vs_memlab_fig1.png``) and embeds it at the top."""
from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from .figures import new_figure, save_figure
from .paper_markdown import DATA_NAMES, SECTIONS
from .paper_rows import top_minus_random
from .run_dirs import RunDir


def removal_panels(paper: pd.DataFrame, runs: list[RunDir]) -> list[tuple[str, pd.DataFrame]]:
    """One Fig. 1 panel per section: its first data set with a removal sweep (else its first)."""
    panels = []
    for section in SECTIONS:
        ran = [k for k in section.memlab_keys if any(r.dataset == k and r.kind == "sweep" for r in runs)]
        key = (ran or list(section.memlab_keys))[0]
        title = DATA_NAMES[section.paper_key] if key == section.paper_key else \
            f"{DATA_NAMES.get(key, key).split(' (')[0]} (paper: {DATA_NAMES[section.paper_key]})"
        panels.append((title, top_minus_random(paper, section.paper_key, [r for r in runs if r.dataset == key])))
    return panels


def plot_removal_differences(panels: list[tuple[str, pd.DataFrame]], path: str | os.PathLike) -> Path:
    """``panels``: (title, :func:`memlab.report.paper_rows.top_minus_random` table) per data set."""
    fig, axes = new_figure(1, len(panels), figsize=(3.4 * len(panels), 3.4), sharey=False)
    for ax, (title, table) in zip(axes[0], panels):
        ax.axhline(0.0, color="0.6", lw=0.8)
        ran = table[table["memlab"].notna()]
        if len(ran):
            err = [ran["memlab"] - ran["low"], ran["high"] - ran["memlab"]]
            low, high = int(ran["n_pairs"].min()), int(ran["n_pairs"].max())
            seeds = (f"{low}" if low == high else f"{low}-{high}") + (" paired" if ran["paired"].all() else "")
            epochs = {int(e) for e in ran["epochs"] if e is not None and math.isfinite(e)}
            label = f"memlab ({seeds} seeds" + (f", {epochs.pop()} epochs)" if len(epochs) == 1 else ")")
            ax.errorbar(ran["x"], ran["memlab"], yerr=err, color="tab:red", marker="o", capsize=3, label=label)
        reported = table[table["paper"].notna()]
        if len(reported):
            ax.plot(reported["x"], reported["paper"], color="black", marker="x", ls="--", label="the paper")
        if not len(ran):
            ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("X% removed")
        xs = [x for x in table["x"] if math.isfinite(x)]
        if xs:
            ax.set_xticks(sorted(set(xs)))
        if len(ran) or len(reported):
            ax.legend(fontsize=7, loc="lower left")
    axes[0][0].set_ylabel("top − random removed:\ntest accuracy (pp)")
    fig.suptitle("Removing the most memorized X% vs a random X% (Fig. 1); bars: 95% intervals", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
