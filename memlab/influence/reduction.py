"""Faithfulness of memorization attribution: the Reduction Rate of paper Eq. 6 and its curve over k.

Reduction Rate = mean over instances of (M - M') / M, with M the self-influence of z and M' the
re-scored influence after the top-k% attributed positions (or k% random ones) are set to the baseline:
tokens replaced by [MASK] (text), grid cells of the feature map set to zero (images). Re-scoring (new
hidden states, a fresh inverse-Hessian solve) is the caller's callable.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .masking import random_cell_positions, random_token_positions, top_cell_positions, top_token_positions

DEFAULT_K_PERCENTS = tuple(range(10, 100, 10))


def reduction_rate(before: Tensor, after: Tensor) -> float:
    """Reduction Rate (paper Eq. 6): mean((M - M') / M) over the instances."""
    before, after = torch.as_tensor(before, dtype=torch.float64), torch.as_tensor(after, dtype=torch.float64)
    if before.shape != after.shape:
        raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
    return ((before - after) / before).mean().item()


def masked_reduction_curve(scores_before: Tensor, rescore: Callable[[Tensor], Tensor],
                           top_positions: Callable[[float], Tensor],
                           random_positions: Callable[[float, torch.Generator], Tensor],
                           k_percents: Sequence[int] = DEFAULT_K_PERCENTS, random_draws: int = 3, seed: int = 0,
                           methods: Sequence[str] = ("attribution", "random"),
                           device: torch.device | str = "cpu") -> list[dict]:
    """Reduction Rate (Eq. 6) for each k% and method, whatever the positions are (tokens, grid cells).

    Args:
        scores_before: [n] the instances' self-influence M.
        rescore: boolean positions (True = set to the baseline) -> [n] self-influence M' of the masked instances.
        top_positions: fraction -> the top-k attributed positions of every instance.
        random_positions: (fraction, generator) -> k random positions of every instance (the same k).
        random_draws: seeded random maskings averaged per k (draw j uses a generator seeded seed + j on ``device``).
    Returns rows ``{"k_percent", "method", "reduction_rate", "num_draws"}``.
    """
    rows = []
    for k in k_percents:
        fraction = k / 100
        if "attribution" in methods:
            rows.append({"k_percent": k, "method": "attribution",
                         "reduction_rate": reduction_rate(scores_before, rescore(top_positions(fraction))),
                         "num_draws": 1})
        if "random" in methods:
            rates = []
            for draw in range(random_draws):
                generator = torch.Generator(device=device).manual_seed(seed + draw)
                rates.append(reduction_rate(scores_before, rescore(random_positions(fraction, generator))))
            rows.append({"k_percent": k, "method": "random", "reduction_rate": sum(rates) / len(rates),
                         "num_draws": random_draws})
    return rows


def reduction_curve(input_ids: Tensor, attention_mask: Tensor, special_positions_mask: Tensor,
                    scores_before: Tensor, rescore: Callable[[Tensor], Tensor],
                    attributions: Tensor | Callable[[], Tensor], mask_token_id: int,
                    k_percents: Sequence[int] = DEFAULT_K_PERCENTS, random_draws: int = 3, seed: int = 0,
                    methods: Sequence[str] = ("attribution", "random")) -> list[dict]:
    """Reduction Rate (Eq. 6) for each k% and method over text instances (the study: the top-10%).

    Args:
        input_ids, attention_mask, special_positions_mask: [n, T] of the instances.
        scores_before: [n] their self-influence M.
        rescore: masked input_ids [n, T] -> [n] self-influence M' of the masked instances.
        attributions: [n, T] token attributions, or a callable returning them.
        k_percents: the k% of tokens masked (k = int(k/100 · (len - 2)), at least 1).
        random_draws: seeded random maskings averaged per k (draw j uses seed + j).
    Returns rows ``{"k_percent", "method", "reduction_rate", "num_draws"}``.
    """
    attr = (attributions() if callable(attributions) else attributions) if "attribution" in methods else None
    return masked_reduction_curve(
        scores_before, lambda chosen: rescore(input_ids.masked_fill(chosen, mask_token_id)),
        lambda fraction: top_token_positions(attention_mask, attr, fraction, special_positions_mask),
        lambda fraction, generator: random_token_positions(attention_mask, fraction, special_positions_mask, generator),
        k_percents, random_draws, seed, methods, input_ids.device)


def image_reduction_curve(scores_before: Tensor, rescore: Callable[[Tensor], Tensor],
                          attributions: Tensor | Callable[[], Tensor],
                          k_percents: Sequence[int] = DEFAULT_K_PERCENTS, random_draws: int = 3, seed: int = 0,
                          methods: Sequence[str] = ("attribution", "random")) -> list[dict]:
    """Reduction Rate (Eq. 6) for each k% and method over image instances attributed per grid cell.

    Args:
        scores_before: [n] the instances' self-influence M.
        rescore: chosen cells [n, H, W] (True = set to zero, :func:`~memlab.influence.masking.mask_cells`)
            -> [n] self-influence M' of the masked feature maps. The cells, not the masked maps, are
            passed so that the caller can mask batch by batch (n maps of [C, 7, 7] can be GBs).
        attributions: [n, H, W] cell attributions, or a callable returning them.
        k_percents: the k% of cells masked (k = int(k/100 · H·W), at least 1).
        random_draws: seeded random maskings averaged per k (draw j uses seed + j).
    Returns rows ``{"k_percent", "method", "reduction_rate", "num_draws"}``.
    """
    attr = attributions() if callable(attributions) else attributions
    return masked_reduction_curve(
        scores_before, rescore, lambda fraction: top_cell_positions(attr, fraction),
        lambda fraction, generator: random_cell_positions(attr.shape, fraction, generator, attr.device),
        k_percents, random_draws, seed, methods, attr.device)
