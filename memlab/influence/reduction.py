"""Faithfulness of memorization attribution: the Reduction Rate of paper Eq. 6 and its curve over k.

Reduction Rate = mean over instances of (M - M') / M, with M the self-influence of z and M' the
re-scored influence after the top-k% attributed tokens (or k% random tokens) are replaced by [MASK].
Re-scoring (new hidden states, a fresh inverse-Hessian solve) is the caller's callable.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from .masking import mask_random_tokens, mask_top_tokens

DEFAULT_K_PERCENTS = tuple(range(10, 100, 10))


def reduction_rate(before: Tensor, after: Tensor) -> float:
    """Reduction Rate (paper Eq. 6): mean((M - M') / M) over the instances."""
    before, after = torch.as_tensor(before, dtype=torch.float64), torch.as_tensor(after, dtype=torch.float64)
    if before.shape != after.shape:
        raise ValueError(f"before {tuple(before.shape)} and after {tuple(after.shape)} differ in shape")
    return ((before - after) / before).mean().item()


def reduction_curve(input_ids: Tensor, attention_mask: Tensor, special_positions_mask: Tensor,
                    scores_before: Tensor, rescore: Callable[[Tensor], Tensor],
                    attributions: Tensor | Callable[[], Tensor], mask_token_id: int,
                    k_percents: Sequence[int] = DEFAULT_K_PERCENTS, random_draws: int = 3, seed: int = 0,
                    methods: Sequence[str] = ("attribution", "random")) -> list[dict]:
    """Reduction Rate (Eq. 6) for each k% and method, over a set of instances (the study: the top-10%).

    Args:
        input_ids, attention_mask, special_positions_mask: [n, T] of the instances.
        scores_before: [n] their self-influence M.
        rescore: masked input_ids [n, T] -> [n] self-influence M' of the masked instances.
        attributions: [n, T] token attributions, or a callable returning them.
        k_percents: the k% of tokens masked (k = int(k/100 · (len - 2)), at least 1).
        random_draws: seeded random maskings averaged per k (draw j uses seed + j).
    Returns rows ``{"k_percent", "method", "reduction_rate", "num_draws"}``.
    """
    rows = []
    if "attribution" in methods:
        attr = attributions() if callable(attributions) else attributions
    for k in k_percents:
        fraction = k / 100
        if "attribution" in methods:
            masked = mask_top_tokens(input_ids, attention_mask, attr, fraction, special_positions_mask, mask_token_id)
            rows.append({"k_percent": k, "method": "attribution",
                         "reduction_rate": reduction_rate(scores_before, rescore(masked)), "num_draws": 1})
        if "random" in methods:
            rates = []
            for draw in range(random_draws):
                generator = torch.Generator(device=input_ids.device).manual_seed(seed + draw)
                masked = mask_random_tokens(input_ids, attention_mask, fraction, special_positions_mask,
                                            mask_token_id, generator)
                rates.append(reduction_rate(scores_before, rescore(masked)))
            rows.append({"k_percent": k, "method": "random", "reduction_rate": sum(rates) / len(rates),
                         "num_draws": random_draws})
    return rows
