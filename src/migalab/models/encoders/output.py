"""What every encoder (and fusion neck) returns: :class:`EncoderOutput`.

An encoder flattens its features into a token sequence and says where each token sits in time
and space, so consumers (a classification head on ``pooled``, the cross-modal token fusion on
``tokens``) need no knowledge of the encoder's internal layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["EncoderOutput", "grid_index"]


def grid_index(
    num_frames: int, positions: int, device: torch.device | None = None, num_global: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(time, space) index of ``num_global`` global tokens followed by a (t', s) grid of
    ``num_frames`` x ``positions`` tokens in time-major order.

    Returns:
        time: (num_global + T'·S,) float32; -1 for global tokens, ``(t' + 0.5) / T'`` (the
            centre of frame t' as a fraction of the clip, in [0, 1)) for grid tokens.
        space: (num_global + T'·S,) long; -1 for global tokens, ``s`` for grid tokens.
    """
    centres = (torch.arange(num_frames, device=device, dtype=torch.float32) + 0.5) / num_frames
    time = centres.repeat_interleave(positions)
    space = torch.arange(positions, device=device).repeat(num_frames)
    if num_global:
        time = torch.cat([torch.full((num_global,), -1.0, device=device), time])
        space = torch.cat([torch.full((num_global,), -1, dtype=torch.long, device=device), space])
    return time, space


@dataclass
class EncoderOutput:
    """Tokens, pooled feature and token positions of an encoder (or a fusion neck).

    Attributes:
        tokens: (B, N, C) token features: the encoder's global tokens (e.g. a class token)
            first, then its grid tokens in time-major (t', s) order.
        pooled: (B, C) the clip-level feature a classification head takes.
        time: (N,) float32 temporal position of each token: ``(t' + 0.5) / T'`` in [0, 1) for
            grid tokens, -1 for global tokens (class tokens, fused tokens without a time).
        space: (N,) long spatial position (joint v, or ``h'·W' + w'``), -1 where a token has
            none (global tokens, tokens pooled over space).
        aux: name -> (B, K) logits of auxiliary heads (a fusion neck's per-modality heads);
            empty for plain encoders.
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    time: torch.Tensor
    space: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_global(self) -> int:
        """Number of leading global tokens (time -1)."""
        return int((self.time < 0).sum())

    @property
    def num_frames(self) -> int:
        """T', the number of distinct token times of the grid."""
        return int(torch.unique(self.time[self.time >= 0]).numel())

    def pool_space(self) -> EncoderOutput:
        """Average the grid tokens of each frame over space: tokens (B, G + T', C) with the G
        global tokens kept first, ``space`` all -1. Needs a time-major grid with the same
        number of positions per frame (as every encoder in :mod:`migalab.models.encoders`)."""
        g, t = self.num_global, self.num_frames
        b, n, c = self.tokens.shape
        if t == 0 or (n - g) % t:
            raise ValueError(f"{n - g} grid tokens do not form {t} frames of equal size")
        grid = self.tokens[:, g:].reshape(b, t, (n - g) // t, c).mean(dim=2)
        time, space = grid_index(t, 1, self.tokens.device, num_global=g)
        space = torch.full_like(space, -1)
        tokens = torch.cat([self.tokens[:, :g], grid], dim=1) if g else grid
        return EncoderOutput(tokens, self.pooled, time, space, dict(self.aux))
