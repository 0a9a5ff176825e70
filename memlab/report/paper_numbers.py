"""The paper's reported numbers, read from a CSV with columns ``dataset,figure,quantity,x,value,unit,note``
(one row per number; the study's is ``../shared/reference/paper_numbers.csv``, never copied into memlab):

    figure  fig1 (quantity full / top / random at x = X%), fig2 (attribution / random at x = k%),
            table1 (<class>_top10 / _all / _bottom10), table5 (spearman_min / spearman_max),
            own_top10 (train_acc)

Values are as the paper prints them (percent, or a correlation); a row's note may give the std
(``std 0.21 over 5 seeds``).
"""
from __future__ import annotations

import math
import os
import re

import pandas as pd

from ..errors import DataError

COLUMNS = ["dataset", "figure", "quantity", "x", "value", "unit", "note"]


def read_paper_numbers(path: str | os.PathLike) -> pd.DataFrame:
    """The paper's numbers; ``x`` and ``value`` as floats (x NaN where the row has none)."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise DataError(f"paper numbers not found: {path} (pass --paper PATH)") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataError(f"cannot read the paper numbers {path}: {type(err).__name__}") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path} lacks the column(s) {', '.join(missing)} (needs {','.join(COLUMNS)})")
    table = table[COLUMNS].copy()
    for column in ("x", "value"):
        numbers = pd.to_numeric(table[column].str.strip().replace("", "nan"), errors="coerce")
        bad = numbers.isna() & ~table[column].str.strip().isin(["", "nan"])
        if bad.any() or (column == "value" and numbers.isna().any()):
            line = int((bad | numbers.isna()).to_numpy().argmax()) + 2  # + header, 1-based
            raise DataError(f"{path} line {line}: {column} is not a number: {table[column].iloc[line - 2]!r}")
        table[column] = numbers.astype(float)
    for column in ("dataset", "figure", "quantity"):
        table[column] = table[column].str.strip().str.lower()
    return table


def paper_value(table: pd.DataFrame, dataset: str, figure: str, quantity: str, x: float | None = None) -> float | None:
    """The paper's value of one quantity (at ``x`` when given); None when the paper does not report it."""
    rows = table[(table["dataset"] == dataset) & (table["figure"] == figure) & (table["quantity"] == quantity)]
    if x is not None:
        rows = rows[rows["x"].sub(float(x)).abs() < 1e-9]
    return float(rows["value"].iloc[0]) if len(rows) else None


def paper_note(table: pd.DataFrame, dataset: str, figure: str, quantity: str) -> str:
    rows = table[(table["dataset"] == dataset) & (table["figure"] == figure) & (table["quantity"] == quantity)]
    return str(rows["note"].iloc[0]) if len(rows) else ""


def std_from_note(note: str) -> float | None:
    """``std 0.21 over 5 seeds`` -> 0.21."""
    found = re.search(r"\bstd\s*[=:]?\s*([0-9]*\.?[0-9]+)", note or "")
    value = float(found.group(1)) if found else None
    return value if value is not None and math.isfinite(value) else None


def paper_xs(table: pd.DataFrame, dataset: str, figure: str) -> list[float]:
    rows = table[(table["dataset"] == dataset) & (table["figure"] == figure)]
    return sorted({float(x) for x in rows["x"] if math.isfinite(x)})
