"""The study's CIFAR-10 classifier on frozen grid features: mean-pool the 7x7 grid, then
Linear(C, 2048) -> ReLU -> Linear(2048, num_classes).

Because the pooling is linear, an attribution to each of the 7x7 cells (baseline: the all-zero map)
sums exactly over the grid, which is what the per-cell heat maps rely on.
"""
from __future__ import annotations

from torch import Tensor, nn


class FeatureMLP(nn.Module):
    """``forward(features [B, C, H, W]) -> logits [B, num_classes]``."""

    def __init__(self, num_classes: int = 10, in_channels: int = 2048, hidden: int = 2048):
        super().__init__()
        self.hidden = nn.Linear(in_channels, hidden)
        self.activation = nn.ReLU()
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, features: Tensor) -> Tensor:
        pooled = features.mean(dim=(-2, -1))
        return self.classifier(self.activation(self.hidden(pooled)))
