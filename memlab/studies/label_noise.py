"""The label-error benchmark: flip a seeded fraction of the training labels, then ask how well each
score finds the flipped instances (AUROC, average precision, precision at the noise rate; the cost in
training epochs), side by side with cleanlab's label-quality scores. Pure numpy / pandas; scikit-learn
and cleanlab are imported where they are used.

    flips = choose_label_flips(  # memlab.data.label_flipssample_index, labels, fraction=0.1, seed=0, num_classes=2)
    table = detection_table(candidates, flips["sample_index"], seconds)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .validation import cost_columns


def precision_at_k(suspicion: np.ndarray, is_noisy: np.ndarray, k: int) -> float:
    """Fraction of noisy instances among the ``k`` most suspicious (ties: earlier instances first)."""
    if k <= 0:
        return float("nan")
    top = np.argsort(-suspicion, kind="stable")[:k]
    return float(is_noisy[top].mean())


def detection_metrics(suspicion, is_noisy) -> dict[str, float]:
    """``auroc``, ``average_precision`` and ``precision_at_noise`` (precision among the top-m, m the
    number of noisy instances) of a score where higher means more likely mislabeled."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    suspicion, is_noisy = np.asarray(suspicion, dtype=float), np.asarray(is_noisy, dtype=bool)
    if not np.isfinite(suspicion).all():
        raise ValueError("a detection score holds NaN or infinite values")
    if is_noisy.all() or not is_noisy.any():
        return {"auroc": float("nan"), "average_precision": float("nan"), "precision_at_noise": float("nan")}
    return {"auroc": float(roc_auc_score(is_noisy, suspicion)),
            "average_precision": float(average_precision_score(is_noisy, suspicion)),
            "precision_at_noise": precision_at_k(suspicion, is_noisy, int(is_noisy.sum()))}


def detection_table(candidates: pd.DataFrame, flipped: Sequence[int], seconds: Mapping[str, float]) -> pd.DataFrame:
    """``score,auroc,average_precision,precision_at_noise,seconds,cost_epochs``: one row per column of
    ``candidates`` (``sample_index`` + one column per score), best AUROC first; ``cost_epochs`` is
    ``seconds`` over ``seconds["epoch"]``, the scored model's mean training-epoch seconds."""
    is_noisy = candidates["sample_index"].isin(set(int(i) for i in flipped)).to_numpy()
    rows = [{"score": name, **detection_metrics(candidates[name].to_numpy(), is_noisy), **cost_columns(name, seconds)}
            for name in candidates.columns if name != "sample_index"]
    return pd.DataFrame(rows).sort_values("auroc", ascending=False, kind="stable").reset_index(drop=True)


def cleanlab_suspicion(labels, pred_probs) -> np.ndarray:
    """1 - cleanlab.rank.get_label_quality_scores (its default, self-confidence): higher = more
    likely mislabeled, like every other score here."""
    from cleanlab.rank import get_label_quality_scores

    return 1.0 - get_label_quality_scores(np.asarray(labels, dtype=np.int64), np.asarray(pred_probs, dtype=float))


def stratified_folds(labels: Sequence[int], n_folds: int, seed: int) -> np.ndarray:
    """Fold id (0..n_folds-1) of every instance: seeded, stratified by label (cross-validated
    predicted probabilities, cleanlab's documented way)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    fold = np.empty(len(labels), dtype=np.int64)
    split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for f, (_, held_out) in enumerate(split.split(np.zeros(len(labels)), labels)):
        fold[held_out] = f
    return fold
