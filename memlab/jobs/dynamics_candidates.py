"""The training-dynamics candidates of the scored model (:mod:`memlab.jobs.candidate_scores`): the
records of :class:`memlab.callbacks.training_dynamics.TrainingDynamicsCallback`, saved beside the
candidates as ``training_dynamics.npz``, turned into the six proxies of
:mod:`memlab.studies.training_dynamics` (forgetting, -AUM, EL2N at ``el2n_epoch``, learning time,
1 - cumulative correctness, mean training loss). Each one's ``seconds`` is the callback's overhead:
they cost no pass of their own.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..callbacks.timing import EpochTimer
from ..callbacks.training_dynamics import TrainingDynamicsCallback
from ..studies.training_dynamics import dynamics_scores


def dynamics_candidates(callback: TrainingDynamicsCallback, el2n_epoch: int,
                        out_dir: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """(one column per proxy, indexed by ``sample_index``; seconds per proxy)."""
    callback.save(Path(out_dir) / "training_dynamics.npz")
    table = dynamics_scores(callback.records(), el2n_epoch=el2n_epoch).set_index("sample_index")
    return table, {name: callback.seconds for name in table.columns}


def epoch_seconds(trainer) -> float:
    """The trainer's mean training-epoch wall time (its :class:`EpochTimer`; NaN without one)."""
    timer = next((c for c in trainer.callbacks if isinstance(c, EpochTimer)), None)
    return timer.mean_seconds if timer is not None else float("nan")
