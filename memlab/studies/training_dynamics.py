"""Training-dynamics memorization proxies of one training run: from what the model predicted for each
training instance each time it was presented (:mod:`memlab.callbacks.training_dynamics` records it
from the training step's own forward), one row per instance, every column "higher = more memorized":

    forgetting       Toneva et al. 2019: forgetting events, presentations where the instance turns
                     from correct to incorrect; an instance never correct gets E (the number of epochs),
                     more than the ⌊E/2⌋ events any instance correct at least once can have
    aum              Pleiss et al. 2020, negated: -AUM, AUM = mean over epochs of the margin
                     z_y - max_{c≠y} z_c (assigned logit minus the largest other logit)
    el2n@epoch<e>    Paul et al. 2021: EL2N = ‖softmax(z) - onehot(y)‖₂ at epoch e (e clamped to the
                     last epoch; the name says the epoch used)
    learning_time    the first epoch from which every later presentation is correct (E when the last
                     one is incorrect: never learned)
    1-cum_correct    1 - mean correctness over the presentations (cumulative correctness / learning speed)
    mean_train_loss  the cross-entropy averaged over the presentations

Pure numpy / pandas:

    table = dynamics_scores(records, el2n_epoch=1)   # records: sample_index, epoch, correct, margin, el2n, loss
"""
from __future__ import annotations

import numpy as np
import pandas as pd

RECORD_FIELDS = ("sample_index", "epoch", "correct", "margin", "el2n", "loss")


def dynamics_columns(n_epochs: int, el2n_epoch: int = 1) -> list[str]:
    """The score columns :func:`dynamics_scores` writes for a run of ``n_epochs`` epochs."""
    return ["forgetting", "aum", f"el2n@epoch{clamped_epoch(n_epochs, el2n_epoch)}", "learning_time",
            "1-cum_correct", "mean_train_loss"]


def clamped_epoch(n_epochs: int, epoch: int) -> int:
    return int(min(max(int(epoch), 0), n_epochs - 1))


def dynamics_scores(records: pd.DataFrame, el2n_epoch: int = 1) -> pd.DataFrame:
    """``sample_index`` + the six proxies (module docstring), one row per instance in ``sample_index``
    order. ``records`` holds one row per presentation (at most one per instance and epoch); the number
    of epochs E is the highest epoch recorded + 1."""
    missing = [f for f in RECORD_FIELDS if f not in records.columns]
    if missing:
        raise ValueError(f"training-dynamics records lack {missing}")
    if records.empty:
        raise ValueError("no training-dynamics records: the model was not trained")
    if records.duplicated(["sample_index", "epoch"]).any():
        raise ValueError("training-dynamics records hold an instance twice in one epoch")
    rec = records.sort_values(["sample_index", "epoch"], kind="mergesort").reset_index(drop=True)
    n_epochs = int(rec["epoch"].max()) + 1
    correct = rec["correct"].astype(bool)
    by = rec.groupby("sample_index", sort=True)
    previous = correct.groupby(rec["sample_index"]).shift(1, fill_value=False).astype(bool)
    forgetting = (previous & ~correct).groupby(rec["sample_index"]).sum().astype(float)
    ever_correct = correct.groupby(rec["sample_index"]).any()
    forgetting[~ever_correct] = float(n_epochs)
    # learning time: one past the last incorrect presentation (0 when none), E when the last is incorrect
    wrong_epoch = rec["epoch"].where(~correct, -1)
    learning_time = (wrong_epoch.groupby(rec["sample_index"]).max() + 1).astype(float)
    last_correct = correct.groupby(rec["sample_index"]).last()
    learning_time[~last_correct] = float(n_epochs)
    e = clamped_epoch(n_epochs, el2n_epoch)
    el2n = rec.loc[rec["epoch"] == e].set_index("sample_index")["el2n"]
    out = pd.DataFrame({
        "forgetting": forgetting,
        "aum": -by["margin"].mean(),
        f"el2n@epoch{e}": el2n.reindex(forgetting.index).astype(float),
        "learning_time": learning_time,
        "1-cum_correct": 1.0 - correct.groupby(rec["sample_index"]).mean(),
        "mean_train_loss": by["loss"].mean(),
    })
    out = out.astype(float).rename_axis("sample_index").reset_index()
    out["sample_index"] = out["sample_index"].astype(np.int64)
    return out[["sample_index", *dynamics_columns(n_epochs, el2n_epoch)]]
