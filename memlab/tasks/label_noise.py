"""Task ``label_noise``, the label-error benchmark: flip ``noise.fraction`` of the training labels
(``noise.seed``), train once, and ask every candidate score and cleanlab which labels were flipped:

    python -m memlab experiment=sst2_label_noise [data.source=local data.dir=DIR model=minilm] [noise.fraction=0.1]

Writes ``flipped_labels.csv`` (which ones, from what to what), ``label_noise.csv``
(``score,auroc,average_precision,precision_at_noise,seconds,cost_epochs``, best AUROC first), ``label_noise_pr.png``
(precision-recall curves) and ``scores.csv`` (every score and ``flipped`` per instance). cleanlab runs its
documented way, ``cleanlab.rank.get_label_quality_scores`` on out-of-sample probabilities from
``cleanlab.folds``-fold cross-validation with the same recipe (``cleanlab_cv``; its seconds include the
fold trainings), and on the scored model's in-sample probabilities (``cleanlab_in_sample``, which ranks
like 1-P(y|x)). ``seconds`` is each score's cost beyond the one training run all the others share; ``cost_epochs`` the
same in units of the scored model's mean training epoch.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from ..errors import ConfigError
from ..report.study_figures import plot_precision_recall
from ..studies.label_noise import cleanlab_suspicion, detection_table, stratified_folds
from ..jobs.data_classes import data_set_name
from ..utils.io import atomic_write_csv, update_json
from ..jobs.candidate_scores import candidate_scores
from ..jobs.subset_training import Predictions, SubsetModel, cached_subset_predictions, training_key, training_split

log = logging.getLogger("memlab")


def cross_validated_probabilities(cfg: DictConfig, ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Out-of-sample P(·|x) of every instance from ``cleanlab.folds`` models of the run's recipe, each
    trained without one stratified fold (cached per fold), and the folds' total training seconds."""
    n_folds, fold_seed = int(cfg.cleanlab.folds), int(cfg.cleanlab.fold_seed)
    folds = stratified_folds(labels, n_folds, fold_seed)
    fold_dir = Path(cfg.paths.cache_dir) / "cleanlab" / training_key(cfg, seed=int(cfg.seed), folds=n_folds,
                                                                      fold_seed=fold_seed)
    fold_dir.mkdir(parents=True, exist_ok=True)
    models = [SubsetModel(fold_dir / f"fold-{f}.npz", int(cfg.seed), ids[folds == f],
                          f"cleanlab cross-validation: fold {f + 1}/{n_folds}") for f in range(n_folds)]
    fold_models = cached_subset_predictions(cfg, models, ids)
    probs = np.zeros_like(fold_models[0].probs)
    for f, predictions in enumerate(fold_models):
        probs[folds == f] = predictions.probs[folds == f]
    seconds = float(sum(p.seconds for p in fold_models))
    return probs, seconds


def cleanlab_scores(cfg: DictConfig, scored: Predictions) -> tuple[pd.DataFrame, dict]:
    """cleanlab's suspicion (1 - label quality) of every instance, cross-validated and in-sample."""
    ids, labels = scored.sample_index, scored.labels
    cv_probs, cv_seconds = cross_validated_probabilities(cfg, ids, labels)
    started = time.perf_counter()
    cv = cleanlab_suspicion(labels, cv_probs)
    cv_seconds += time.perf_counter() - started
    started = time.perf_counter()
    in_sample = cleanlab_suspicion(labels, scored.probs)
    in_seconds = scored.predict_seconds + time.perf_counter() - started
    name = f"cleanlab_cv{int(cfg.cleanlab.folds)}"
    frame = pd.DataFrame({"sample_index": ids, name: cv, "cleanlab_in_sample": in_sample})
    return frame, {name: cv_seconds, "cleanlab_in_sample": in_seconds}


def check_noise_settings(cfg: DictConfig) -> None:
    """One-line errors for noise.* and cleanlab.* values that cannot work, before any training."""
    if not 0.0 < float(cfg.noise.fraction) < 1.0:
        raise ConfigError(f"noise.fraction={cfg.noise.fraction} is out of range; allowed: between 0 and 1")
    if float(cfg.data.get("label_noise") or 0.0) != float(cfg.noise.fraction):
        raise ConfigError(f"data.label_noise={cfg.data.get('label_noise')} differs from noise.fraction="
                          f"{cfg.noise.fraction}; allowed: data.label_noise=${{noise.fraction}} (the experiment's)")
    if int(cfg.cleanlab.folds) < 2:
        raise ConfigError(f"cleanlab.folds={cfg.cleanlab.folds} is out of range; allowed: an integer >= 2")


def run(cfg: DictConfig) -> dict:
    """Task ``label_noise``: label_noise.csv and its figure; returns the metrics written to metrics.json."""
    check_noise_settings(cfg)
    out = Path(cfg.paths.output_dir)
    flips = training_split(cfg).label_flips
    atomic_write_csv(flips, out / "flipped_labels.csv")
    candidates, seconds, scored = candidate_scores(cfg)
    trained_with = dict(zip(scored.sample_index.tolist(), scored.labels.tolist()))
    if any(trained_with[i] != y for i, y in zip(flips["sample_index"], flips["noisy_label"])):
        raise RuntimeError("the scored model was not trained with the flipped labels; clear its candidates cache")
    cleanlab, cleanlab_seconds = cleanlab_scores(cfg, scored)
    scores = candidates.merge(cleanlab, on="sample_index")
    table = detection_table(scores, flips["sample_index"], {**seconds, **cleanlab_seconds})
    atomic_write_csv(table, out / "label_noise.csv")
    atomic_write_csv(scores.assign(flipped=scores["sample_index"].isin(set(flips["sample_index"]))), out / "scores.csv")
    plot_precision_recall(scores, flips["sample_index"], out / "label_noise_pr.png",
                          title=f"{data_set_name(cfg)}: {len(flips)} of {len(scores)} labels flipped")
    metrics = {"noise/fraction": float(cfg.noise.fraction), "noise/flipped": len(flips)}
    for row in table.itertuples():
        metrics.update({f"label_noise/{row.score}/auroc": row.auroc, f"label_noise/{row.score}/ap": row.average_precision,
                        f"label_noise/{row.score}/seconds": row.seconds,
                        f"label_noise/{row.score}/cost_epochs": row.cost_epochs})
    log.info("finding %d flipped labels:\n%s", len(flips), table.round(3).to_string(index=False))
    return update_json(out / "metrics.json", metrics)
