"""One sentence per data set under its rows in docs/paper_vs_memlab.md: what Fig. 1 (top − random
removed) says against the paper at each X, with memlab's difference, its 95% interval and what the
design detects (80% power), the paired seeds and the training epochs, e.g.

    SST-2 (5 seeds, 5 epochs): disagrees at 30% (+0.03 pp, 95% CI -0.56 to +0.62; detects 0.79 pp);
    inconclusive at 10% (...) and 50% (...); not run at 20% and 40%.

Made from the same rows as the table (:func:`memlab.report.paper_rows.removal_rows`), so the two never differ.
"""
from __future__ import annotations

from .agreement import AGREES, DISAGREES, INCONCLUSIVE
from .paper_rows import NOT_RUN, Row

FIG1_DIFFERENCE = "Fig. 1: top − random (pp)"
ORDER = (AGREES, DISAGREES, INCONCLUSIVE)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _detail(row: Row) -> str:
    """``(+0.03 pp, 95% CI -0.56 to +0.62; detects 0.79 pp)`` from the row's cells."""
    parts = [f"{row.memlab} pp"]
    if row.interval:
        low, high = row.interval.strip("[]").split(", ")
        parts[0] += f", 95% CI {low} to {high}"
    if row.detectable:
        parts.append(f"detects {row.detectable} pp")
    return "(" + "; ".join(parts) + ")"


def _seeds(rows: list[Row]) -> str:
    counts = sorted({int(r.n.split()[0]) for r in rows if r.n and r.n.split()[0].isdigit()})
    if not counts:
        return "seeds not recorded"
    shown = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{shown} seed{'' if shown == '1' else 's'}"


def _epochs(rows: list[Row], paper_epochs: int | None) -> str:
    found = {r.source.epochs for r in rows if r.source is not None}
    if len(found) != 1 or None in found:
        return "epochs not recorded" if not found or found == {None} else "epochs differ by X"
    epochs = found.pop()
    text = f"{epochs} epoch{'' if epochs == 1 else 's'}"
    return text + (f", the paper's {paper_epochs}" if paper_epochs is not None and epochs < paper_epochs else "")


def verdict_sentence(name: str, rows: list[Row], paper_epochs: int | None = None) -> str | None:
    """The Fig. 1 sentence of one data set from its rows; None when the rows hold no Fig. 1 difference."""
    fig1 = [r for r in rows if r.measurement == FIG1_DIFFERENCE]
    if not fig1:
        return None
    judged = [r for r in fig1 if r.agreement in ORDER]
    if not judged:
        return f"{name}: Fig. 1 not measured yet (no removal sweep with paired seeds)."
    clauses = []
    for word in ORDER:
        at = [f"{r.x} {_detail(r)}" for r in judged if r.agreement == word]
        if at:
            clauses.append(f"{word} at {_and(at)}")
    missing = [r.x for r in fig1 if r.memlab == NOT_RUN]
    if missing:
        clauses.append(f"not run at {_and(missing)}")
    return f"{name} ({_seeds(judged)}, {_epochs(judged, paper_epochs)}): " + "; ".join(clauses) + "."
