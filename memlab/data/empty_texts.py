"""Rows whose text is empty (or only spaces): an error that names them, or, with ``data.drop_empty=true``
(``conf/data/custom.yaml``; a code default of False for the other text data), rows dropped and counted
(``data/dropped_empty`` in metrics.json). An empty text would otherwise be trained on and scored as
if it said something.
"""
from __future__ import annotations

import pandas as pd

from ..errors import DataError

SHOWN_ROWS = 5  # rows named in the error, then "and N more"
TEXT_FIELDS = ("text", "text_pair")


def empty_text_mask(frame: pd.DataFrame) -> pd.Series:
    """True where ``text`` (or, for pairs, ``text_pair``) is empty or blank."""
    mask = pd.Series(False, index=frame.index)
    for field in TEXT_FIELDS:
        if field in frame.columns:
            mask |= frame[field].fillna("").astype(str).str.strip() == ""
    return mask


def check_no_empty_texts(frame: pd.DataFrame, where: str, drop_empty: bool = False) -> None:
    """A DataError naming the first rows of ``frame`` (1-based, as in the file) with an empty text and
    their sample_index; nothing when there are none or ``drop_empty`` (the data module drops them)."""
    mask = empty_text_mask(frame).to_numpy()
    if drop_empty or not mask.any():
        return
    rows = [int(i) + 1 for i in mask.nonzero()[0]]
    ids = [int(i) for i in frame["sample_index"].to_numpy()[mask]] if "sample_index" in frame.columns else []
    shown = ", ".join(map(str, rows[:SHOWN_ROWS]))
    more = f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    id_part = f" (sample_index {', '.join(map(str, ids[:SHOWN_ROWS]))}{more and ', ...'})" if ids else ""
    raise DataError(f"{where}: {len(rows)} row(s) with an empty text: row {shown}{more}{id_part}; "
                    f"fill them in, or pass data.drop_empty=true to leave them out (counted in metrics.json)")


def drop_empty_texts(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """``frames`` without their empty-text rows (sample indices kept), and how many each split lost."""
    kept, dropped = {}, {}
    for split, frame in frames.items():
        mask = empty_text_mask(frame)
        kept[split] = frame[~mask].reset_index(drop=True)
        dropped[split] = int(mask.sum())
    return kept, dropped
