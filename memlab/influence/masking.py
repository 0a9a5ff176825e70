"""Token masking for memorization attribution: the all-[MASK] baseline X' of Eq. 5 and the top-k /
random token removal that the faithfulness test of Eq. 6 re-scores; and the image counterpart, grid
cells of a feature map [C, H, W] set to Eq. 5's image baseline (zero).

Rules (the study's code): k = int(fraction · (len - 2)) with len the number of non-padding tokens,
at least 1; [CLS]/[SEP] (special positions) and padding are never masked; the attention mask is left
unchanged. Every function takes one sequence [T] or a batch [B, T] and returns new tensors.
Cells: k = int(fraction · H·W), at least 1, every cell maskable; one grid [H, W] or a batch [B, H, W].
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def _as_batch(*tensors: Tensor) -> tuple[bool, list[Tensor]]:
    single = tensors[0].dim() == 1
    return single, [t.unsqueeze(0) if single else t for t in tensors]


def tokens_to_mask(attention_mask: Tensor, fraction: float) -> Tensor:
    """k per sequence: int(fraction · (len - 2)), at least 1 (``[B]`` long; len = non-padding tokens).

    The float product is the study's (``int(p * (len - 2))``), so k matches it exactly.
    """
    lengths = attention_mask.reshape(-1, attention_mask.shape[-1]).sum(-1).tolist()
    ks = [max(1, int(fraction * (length - 2))) for length in lengths]
    return torch.tensor(ks, dtype=torch.long, device=attention_mask.device).view(attention_mask.shape[:-1])


def _select_top(scores: Tensor, eligible: Tensor, ks: Tensor) -> Tensor:
    """Boolean [B, T]: the ``ks[b]`` highest-scoring eligible positions of each row."""
    scores = scores.masked_fill(~eligible, float("-inf"))
    order = scores.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    ks = torch.minimum(ks, eligible.sum(-1))  # never more than the maskable tokens
    return (ranks < ks.unsqueeze(-1)) & eligible


def top_token_positions(attention_mask: Tensor, attributions: Tensor, fraction: float,
                        special_positions_mask: Tensor) -> Tensor:
    """Boolean mask of the top-k attributed non-special, non-padding positions (Eq. 6's z^\\attr)."""
    single, (am, attr, special) = _as_batch(attention_mask, attributions, special_positions_mask)
    eligible = am.bool() & ~special.bool()
    chosen = _select_top(attr.to(torch.float64), eligible, tokens_to_mask(am, fraction))
    return chosen[0] if single else chosen


def random_token_positions(attention_mask: Tensor, fraction: float, special_positions_mask: Tensor,
                           generator: torch.Generator | None = None) -> Tensor:
    """Boolean mask of k uniformly random non-special, non-padding positions (the random baseline)."""
    single, (am, special) = _as_batch(attention_mask, special_positions_mask)
    eligible = am.bool() & ~special.bool()
    noise = torch.rand(am.shape, generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else am.device).to(am.device)
    chosen = _select_top(noise, eligible, tokens_to_mask(am, fraction))
    return chosen[0] if single else chosen


def mask_top_tokens(input_ids: Tensor, attention_mask: Tensor, attributions: Tensor, fraction: float,
                    special_positions_mask: Tensor, mask_token_id: int) -> Tensor:
    """input_ids with the top-k attributed tokens replaced by [MASK] (paper Eq. 6, z^\\attr)."""
    chosen = top_token_positions(attention_mask, attributions, fraction, special_positions_mask)
    return input_ids.masked_fill(chosen, mask_token_id)


def mask_random_tokens(input_ids: Tensor, attention_mask: Tensor, fraction: float, special_positions_mask: Tensor,
                       mask_token_id: int, generator: torch.Generator | None = None) -> Tensor:
    """input_ids with k random non-special tokens replaced by [MASK] (same k as :func:`mask_top_tokens`)."""
    chosen = random_token_positions(attention_mask, fraction, special_positions_mask, generator)
    return input_ids.masked_fill(chosen, mask_token_id)


def mask_all_tokens(input_ids: Tensor, attention_mask: Tensor, special_ids: Iterable[int], mask_token_id: int,
                    mask_special: bool = True) -> Tensor:
    """The baseline input x' of Eq. 5: every non-padding token replaced by [MASK].

    ``mask_special=True`` is the study's code ([CLS]/[SEP] masked too); ``False`` keeps the tokens
    whose id is in ``special_ids``, as the paper's text ("a sequence of only [MASK] tokens" of the
    same length) can also be read.
    """
    chosen = attention_mask.bool()
    if not mask_special:
        special = torch.as_tensor(list(special_ids), dtype=input_ids.dtype, device=input_ids.device)
        chosen = chosen & ~torch.isin(input_ids, special)
    return input_ids.masked_fill(chosen, mask_token_id)


# ---- image grid cells ---------------------------------------------------------------------------

def cells_to_mask(num_cells: int, fraction: float) -> int:
    """k: int(fraction · num_cells), at least 1 (the token rule; a grid has no special cells)."""
    return max(1, int(fraction * num_cells))


def _select_cells(scores: Tensor, fraction: float) -> Tensor:
    """Boolean [..., H, W]: the k highest-scoring cells of each grid (k of :func:`cells_to_mask`)."""
    flat = scores.reshape(-1, scores.shape[-2] * scores.shape[-1])
    k = cells_to_mask(flat.shape[-1], fraction)
    ks = torch.full(flat.shape[:1], k, dtype=torch.long, device=flat.device)
    return _select_top(flat, torch.ones_like(flat, dtype=torch.bool), ks).view(scores.shape)


def top_cell_positions(attributions: Tensor, fraction: float) -> Tensor:
    """Boolean mask of the top-k attributed cells of each grid (Eq. 6's z^\\attr for images)."""
    return _select_cells(attributions.to(torch.float64), fraction)


def random_cell_positions(grid_shape: tuple[int, ...] | torch.Size, fraction: float,
                          generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """Boolean mask ``grid_shape`` ([H, W] or [B, H, W]) of k uniformly random cells per grid (the random baseline)."""
    noise = torch.rand(tuple(grid_shape), generator=generator, dtype=torch.float64,
                       device=generator.device if generator is not None else device)
    return _select_cells(noise if device is None else noise.to(device), fraction)


def mask_cells(features: Tensor, chosen: Tensor) -> Tensor:
    """features [C, H, W] / [B, C, H, W] with the ``chosen`` cells ([H, W] / [B, H, W]) set to zero in
    every channel: the all-zero feature map is the image baseline of Eq. 5, so a masked cell is one
    whose attribution path has been walked to its end."""
    return features.masked_fill(chosen.unsqueeze(-3), 0)


def mask_top_cells(features: Tensor, attributions: Tensor, fraction: float) -> Tensor:
    """features with the top-k attributed cells set to the baseline (zero)."""
    return mask_cells(features, top_cell_positions(attributions, fraction))


def mask_random_cells(features: Tensor, fraction: float, generator: torch.Generator | None = None) -> Tensor:
    """features with k random cells set to the baseline (same k as :func:`mask_top_cells`)."""
    grid = features.shape[:-3] + features.shape[-2:]
    return mask_cells(features, random_cell_positions(grid, fraction, generator, features.device))
