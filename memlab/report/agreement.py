"""Does memlab's finding agree with the paper's? One word per comparison (``agrees``, ``disagrees``,
``inconclusive``; ``—`` where the paper makes no claim to test), by rules stated in :data:`RULES`
(printed in docs/paper_vs_memlab.md).
"""
from __future__ import annotations

import math

AGREES, DISAGREES, INCONCLUSIVE, NO_CLAIM = "agrees", "disagrees", "inconclusive", "—"

RULES = [
    "Fig. 1 (top − random removed, pp): the paper's difference d where it reports both arms, else its stated "
    "direction (top-removed below random-removed). **agrees**: memlab's 95% interval excludes 0 on the paper's "
    "side; **disagrees**: the interval excludes 0 on the other side, or it includes 0 and excludes d; "
    "**inconclusive**: anything else (the interval holds both 0 and d, or there is no interval: fewer than 2 "
    "paired seeds).",
    "Fig. 2 (attribution − random reduction rate), Table 1 (top/bottom-10% against the class's all): memlab's "
    "point values have no interval; **agrees** when memlab's difference has the paper's sign, **disagrees** when "
    "the opposite, **inconclusive** when either is 0. With several seeds the interval decides as for Fig. 1.",
    "Table 5 (the ranking is stable across training seeds): **agrees** when memlab's lowest Spearman between "
    "seeds is at least the paper's lowest less 0.05, else **disagrees**.",
    "Own top-10% train accuracy: **agrees** when memlab's and the paper's lie on the same side of 50% (the model "
    "gets most of its own most memorized right, or most wrong), else **disagrees**.",
    "Full-data accuracy and the single arms of Fig. 1 and Fig. 2 are shown for scale only (—): a different "
    "encoder gives different accuracies.",
]


def _finite(*values) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def interval_verdict(paper: float | None, low: float | None, high: float | None,
                     paper_sign: int | None = None) -> str:
    """Fig. 1's rule: ``paper`` the paper's difference (None: only its direction ``paper_sign``)."""
    sign = (1 if paper > 0 else -1 if paper < 0 else 0) if _finite(paper) else (paper_sign or 0)
    if not _finite(low, high) or sign == 0:
        return INCONCLUSIVE
    if (sign < 0 and high < 0) or (sign > 0 and low > 0):
        return AGREES
    if (sign < 0 and low > 0) or (sign > 0 and high < 0):
        return DISAGREES
    if _finite(paper) and not low <= paper <= high:
        return DISAGREES  # the interval holds 0 but not the paper's difference
    return INCONCLUSIVE


def sign_verdict(paper: float | None, memlab: float | None) -> str:
    """Same sign: agrees; opposite: disagrees; a zero or a missing value: inconclusive."""
    if not _finite(paper, memlab) or paper == 0 or memlab == 0:
        return INCONCLUSIVE
    return AGREES if (paper > 0) == (memlab > 0) else DISAGREES


STABILITY_TOLERANCE = 0.05  # a Spearman of 0.974 against the paper's 0.98 still says "stable across seeds"


def at_least_verdict(paper: float | None, memlab: float | None, tolerance: float = 0.0) -> str:
    if not _finite(paper, memlab):
        return INCONCLUSIVE
    return AGREES if memlab >= paper - tolerance else DISAGREES


def same_side_verdict(paper: float | None, memlab: float | None, threshold: float) -> str:
    if not _finite(paper, memlab):
        return INCONCLUSIVE
    return AGREES if (paper < threshold) == (memlab < threshold) else DISAGREES
