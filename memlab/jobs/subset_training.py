"""Training one recipe many times in one process, each time with its own training seed and on a
subset of the training split, keeping only the model's predicted probabilities on the whole split:
the models of the Feldman-Zhang reference, of cleanlab's cross-validation and the scored model of the
validation and label-noise experiments. Each trains through :func:`memlab.jobs.training.train_model`.

The training seed must reach everything it stands for: Lightning's global RNG (dropout), the head's
initialisation (``model.net.seed``) and the shuffling (``data.shuffle_seed``). Configs are resolved
before they are changed, so :func:`with_training_seed` sets all three explicitly.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf, open_dict

from ..data.base import ListDataset
from ..utils.fingerprint import pretrained_fingerprint, short_hash
from ..utils.io import atomic_write
from .training import train_model

# Callbacks that score or attribute after training: a subset model only needs its predictions.
SCORING_CALLBACKS = ("memorization", "attribution", "tracin")
# Trainer settings that change the trained model (the rest are logging and progress display).
TRAINING_KEYS = ("max_epochs", "max_steps", "gradient_clip_val", "gradient_clip_algorithm",
                 "accumulate_grad_batches", "precision")


def with_training_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """A resolved copy of ``cfg`` trained with ``seed`` (dropout, head initialisation, shuffling),
    without logger and without the scoring callbacks."""
    job = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(job):
        job.seed = int(seed)
        job.data.shuffle_seed = int(seed)
        if "seed" in (job.model.get("net") or {}):
            job.model.net.seed = int(seed)
        job.logger = {}
        job.callbacks = {k: v for k, v in (job.get("callbacks") or {}).items() if k not in SCORING_CALLBACKS}
    return job


def training_key(cfg: DictConfig, **extra) -> str:
    """Key of what a model trained from ``cfg`` depends on: data (without exclusions and the shuffle
    seed, which every model sets itself), model (without its seed), the data seed, the recipe's
    trainer settings, and ``extra`` (subset seed and fraction, fold, ...)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    data = {k: v for k, v in container["data"].items() if k not in ("exclude", "shuffle_seed")}
    model = dict(container["model"])
    model["net"] = {k: v for k, v in (model.get("net") or {}).items() if k != "seed"}
    trainer = {k: container["trainer"].get(k) for k in TRAINING_KEYS}
    weights = pretrained_fingerprint(model.get("pretrained"))  # a model folder's files, not its name
    return short_hash({"data": data, "model": model, "weights": weights, "data_seed": container.get("data_seed"),
                       "trainer": trainer, "extra": extra})


@dataclasses.dataclass
class Predictions:
    """A trained model's softmax on the whole training split, in the data module's order."""

    sample_index: np.ndarray   # [N] int64
    labels: np.ndarray         # [N] int64, the labels it was trained with (noisy ones included)
    probs: np.ndarray          # [N, C] float64
    seconds: float = float("nan")  # training + prediction wall time
    predict_seconds: float = float("nan")  # the prediction pass alone

    def gold_probability(self) -> np.ndarray:
        return self.probs[np.arange(len(self.labels)), self.labels]

    def correct(self) -> np.ndarray:
        return self.probs.argmax(1) == self.labels

    def save(self, path: str | Path) -> None:
        atomic_write(path, lambda tmp: np.savez(tmp, sample_index=self.sample_index, labels=self.labels,
                                                probs=self.probs, seconds=np.float64(self.seconds),
                                                predict_seconds=np.float64(self.predict_seconds)))

    @classmethod
    def load(cls, path: str | Path) -> "Predictions":
        with np.load(path) as f:
            return cls(f["sample_index"], f["labels"], f["probs"], float(f["seconds"]), float(f["predict_seconds"]))


@torch.no_grad()
def predict_train_split(model, datamodule) -> Predictions:
    """P(·|x) of every instance of the full training split (the excluded ones too), in its order.
    Batches run in length order (little padding) through ``model.predict_logits``."""
    model.eval()
    examples = datamodule.full_train
    order = sorted(range(len(examples)), key=lambda i: datamodule.example_length(examples[i]))
    loader = datamodule.loader(ListDataset([examples[i] for i in order]), False, datamodule.eval_batch_size)
    sorted_probs = torch.cat([model.predict_logits(batch).double().softmax(-1) for batch in loader])
    probs = torch.empty_like(sorted_probs)
    probs[torch.tensor(order)] = sorted_probs
    return Predictions(np.asarray(examples.sample_indices(), dtype=np.int64),
                       np.array([int(e["labels"]) for e in examples.examples], dtype=np.int64), probs.numpy())


def train_on_subset(cfg: DictConfig, seed: int, exclude: Iterable[int] = (), extra_callbacks: Iterable = ()):
    """Train ``cfg``'s recipe with ``seed`` on the training split minus ``exclude`` (``extra_callbacks``
    join the config's training callbacks; no test, no checkpoint to resume). Returns (predictions on
    the whole split, model, trainer, data module)."""
    started = time.perf_counter()
    job = with_training_seed(cfg, seed)
    with open_dict(job):
        job.train, job.test, job.ckpt_path = True, False, None
        # only the predictions on the training split are kept: no validation loop (~10% of the time)
        job.trainer.limit_val_batches, job.trainer.num_sanity_val_steps = 0, 0
    trained = train_model(job, list(exclude), extra_callbacks)
    predicting = time.perf_counter()
    predictions = predict_train_split(trained.model, trained.datamodule)
    predictions.seconds, predictions.predict_seconds = time.perf_counter() - started, time.perf_counter() - predicting
    return predictions, trained.model, trained.trainer, trained.datamodule


def predictions_of_subset_model(cfg: DictConfig, seed: int, exclude: Iterable[int] = ()) -> Predictions:
    """:func:`train_on_subset`, keeping only the predictions (model, trainer and data freed at once:
    one process trains many)."""
    predictions, *_ = train_on_subset(cfg, seed, exclude)
    gc.collect()
    return predictions


@dataclasses.dataclass(frozen=True)
class SubsetModel:
    """One cached subset model: where its predictions live, its training seed, what it leaves out."""

    file: Path
    seed: int
    exclude: np.ndarray  # sample indices
    description: str = ""  # logged when it is trained


def cached_subset_predictions(cfg: DictConfig, models: list[SubsetModel], ids: np.ndarray) -> list[Predictions]:
    """Every model's predictions, training the missing ones (each claimed by a lock, so several
    processes share the work: a model another process is training is skipped, then waited for at
    the end). Every file must hold predictions on the training split ``ids``."""
    log = logging.getLogger("memlab")
    for blocking in (False, True):
        for model in models:
            if model.file.is_file():
                continue
            try:
                with FileLock(str(model.file) + ".lock", timeout=-1 if blocking else 0):
                    if not model.file.is_file():
                        log.info("%s", model.description or f"training {model.file.name}")
                        predictions_of_subset_model(cfg, model.seed, model.exclude.tolist()).save(model.file)
            except Timeout:
                continue
    loaded = [Predictions.load(m.file) for m in models]
    for model, predictions in zip(models, loaded):
        if not np.array_equal(predictions.sample_index, ids):
            raise RuntimeError(f"{model.file} holds another training split; delete {model.file.parent} to retrain")
    return loaded


def training_split(cfg: DictConfig):
    """The set-up data module of ``cfg`` (tokenised, not prefix-cached): sample indices and labels."""
    import hydra

    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup()
    return datamodule
