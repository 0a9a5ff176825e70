"""A matplotlib figure without pyplot's global state, and saving it atomically (a temp file beside
the target, then ``os.replace``: :func:`memlab.utils.io.atomic_write`). Every saved figure carries its
title in the file too (PNG ``Title`` text chunk; :func:`saved_title` reads it back)."""
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


def figure_title(fig) -> str:
    """What a figure says it shows: its suptitle, else the first axes title (centre, then left), else ''."""
    if fig._suptitle is not None and fig._suptitle.get_text():
        return fig._suptitle.get_text()
    for ax in fig.axes:
        for loc in ("center", "left"):
            if ax.get_title(loc):
                return ax.get_title(loc)
    return ""


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a ``matplotlib.figure.Figure`` atomically, in the format its suffix names (png default); a PNG
    carries :func:`figure_title` as its ``Title`` metadata."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    metadata = {"Title": figure_title(fig)} if fmt == "png" else None
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight",
                                                      metadata=metadata))


def saved_title(path: str | os.PathLike) -> str:
    """The ``Title`` a PNG written by :func:`save_figure` carries ('' when none)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.text.get("Title", "")
