"""TRAK features of a trained model on its training split (:mod:`memlab.influence.trak`): one pass over
``datamodule.score_dataloader`` giving Φ [N, k] (the projected margin gradients, float32), p_i = P(y_i|x_i)
and the sample indices, in ``sample_index`` order, with the pass's seconds.

    feats = trak_features(pl_module, datamodule, proj_dim=2048, projection="auto", seed=0)
    h = self_influence(feats.features, damping_rel=1e-3)
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..influence.functional import gold_probability, other_probability, trainable_params
from ..influence.trak_projection import make_projector


@dataclass
class TrakFeatures:
    features: Tensor          # Φ [N, k] float32
    gold_probability: Tensor  # p_i [N] float64
    q: Tensor                 # 1 − p_i [N] float64, as Σ_{c≠y} P(c|x) (exact where p_i rounds to 1)
    sample_index: np.ndarray  # [N] int64, increasing
    projection: str           # the kind the projector used ("dense" or "kronecker")
    seconds: float


def scoring_module(pl_module, datamodule):
    """θ's module: the trainable suffix when the data module serves cached prefix outputs, else the net."""
    module = pl_module.scoring_module
    if module is not pl_module.net and not getattr(datamodule, "prefix_cached", False):
        module = pl_module.net
    return module


def trak_features(pl_module, datamodule, proj_dim: int, projection: str = "auto", seed: int = 0,
                  batch_size: int = 64) -> TrakFeatures:
    """Φ, p and the sample indices of every training instance ``datamodule.score_dataloader`` serves."""
    started = time.perf_counter()
    module = scoring_module(pl_module, datamodule)
    params = trainable_params(module)
    projector = make_projector(module, params, proj_dim, projection, seed)
    feats, probs, labels, index = [], [], [], []
    for batch in datamodule.score_dataloader(batch_size):
        phi, p = projector.features(batch)
        feats.append(phi.float().cpu())
        probs.append(p.cpu())
        labels.append(batch["labels"].cpu())
        index.append(batch["sample_index"].cpu())
    probs_all, labels_all = torch.cat(probs), torch.cat(labels)
    index_all = torch.cat(index)
    order = torch.argsort(index_all)
    return TrakFeatures(torch.cat(feats)[order], gold_probability(probs_all, labels_all)[order],
                        other_probability(probs_all, labels_all)[order], index_all[order].numpy().astype(np.int64),
                        projector.kind, time.perf_counter() - started)
