"""Prediction heads on pooled encoder features."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ClassificationHead"]


class ClassificationHead(nn.Module):
    """Dropout + linear classifier: (N, C) -> logits (N, K).

    Initialised as the 2s-AGCN ``fc``: weight ~ Normal(0, sqrt(2 / K)); the bias starts at 0
    (the reference keeps PyTorch's default uniform bias; zero gives a flat class prior).
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ClassificationHead expects (N, {self.in_channels}), got {tuple(x.shape)}"
            )
        return self.fc(self.dropout(x))
