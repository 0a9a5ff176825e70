"""The learning curve of a full-data training run (issue 29: how many epochs a data set needs before its
test accuracy stops rising): the plateau epoch, the first epoch whose accuracy is within ``tolerance``
(0.5 pp by default) of the best epoch's."""
from __future__ import annotations

import math
from typing import Sequence

PLATEAU_TOLERANCE_PP = 0.5


def plateau_epoch(epochs: Sequence[int], accuracies: Sequence[float], tolerance_pp: float = PLATEAU_TOLERANCE_PP
                  ) -> int | None:
    """The first of ``epochs`` whose accuracy (a fraction) is within ``tolerance_pp`` percentage points of
    the best; None without a finite accuracy."""
    pairs = [(int(e), float(a)) for e, a in zip(epochs, accuracies) if a is not None and math.isfinite(a)]
    if not pairs:
        return None
    best = max(a for _, a in pairs)
    return next(e for e, a in pairs if 100 * (best - a) <= tolerance_pp + 1e-9)
