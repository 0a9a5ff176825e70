"""Tiny models shared by the numerical tests."""
from torch import nn
import torch


class TinyMLP(nn.Module):
    """Linear -> LayerNorm -> tanh -> Linear: small enough for a dense Hessian, LayerNorm included."""

    def __init__(self, d=4, h=8, c=3):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.norm = nn.LayerNorm(h)
        self.fc2 = nn.Linear(h, c)

    def forward(self, x):
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))
