"""Learning-rate schedules built per step once the trainer knows the number of steps."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def cosine_with_warmup(
    optimizer: Optimizer,
    total_steps: int,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to
    ``min_lr_ratio`` x base lr. Stepped once per optimiser step (``interval: step``).

    torch's SequentialLR(LinearLR, CosineAnnealingLR) needs the split point at construction and
    warns on resume; one LambdaLR is simpler and resumes exactly from its state dict.
    """
    total_steps = max(int(total_steps), 1)
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
