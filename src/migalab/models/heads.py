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
    ``init_std`` instead draws the weight from a truncated Normal(0, init_std), as ViT / MViT
    heads (0.02): their features come out of a LayerNorm with unit variance per channel, where
    the AGCN init gives initial logits of std ~0.25·sqrt(C) (≈5 for C = 384) and a first loss far
    above ln(K).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dropout: float = 0.0,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_channels, num_classes)
        if init_std is None:
            nn.init.normal_(self.fc.weight, 0.0, math.sqrt(2.0 / num_classes))
        else:
            std = float(init_std)  # truncated at 2 std (torch's default cut is at ±2 absolute)
            nn.init.trunc_normal_(self.fc.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ClassificationHead expects (N, {self.in_channels}), got {tuple(x.shape)}"
            )
        return self.fc(self.dropout(x))
