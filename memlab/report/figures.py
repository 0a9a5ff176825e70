"""A matplotlib figure without pyplot's global state, and saving it atomically (a temp file beside
the target, then ``os.replace``: :func:`memlab.utils.io.atomic_write`)."""
from __future__ import annotations

import os
from pathlib import Path

from ..utils.io import atomic_write


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(6.0, 4.0), **subplot_kw):
    """A Figure on the Agg canvas and its axes (always 2-D), without touching pyplot's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a ``matplotlib.figure.Figure`` atomically, in the format its suffix names (png default)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight"))
