"""MAMP: masked motion prediction for skeleton transformers (Mao et al., ICCV 2023), the
skeleton pretraining of the MiGA 2026 winner.

The encoder (:class:`~migalab.models.encoders.skeleton_transformer.SkeletonTransformer`) sees
only the visible ~10 % of the (segment, joint) tokens; a light transformer decoder fills in the
rest with a learned mask token and predicts, for every masked token, the **motion** of its
frames, ``x[t + s] - x[t]`` (``motion_stride`` s, zero for the last s frames), each token's
target normalised over its own values (MAMP's ``norm_skes_loss``). Masking is **motion-aware**:
a token's chance of being masked grows with how much its segment moves relative to the previous
segment (softmax of motion / (max motion x ``tau``), drawn without replacement by Gumbel top-k);
``tau`` = 0 masks uniformly at random (MAE). The loss is the MSE over masked tokens.

Defaults are MAMP's NTU-60 recipe: mask ratio 0.9, tau 0.8, motion stride 1, decoder 3 blocks
of width 256 with 8 heads (``conf/model/pretrain_mamp.yaml``).

Written from the paper and its public code's conventions; no pretraining library provides it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from migalab.models.encoders.skeleton_transformer import SkeletonTransformer
from migalab.models.fusion.token_fusion import init_transformer_weights

__all__ = ["MaskedMotionPrediction", "motion_aware_mask", "motion_target", "patchify"]


def motion_target(seq: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Per-frame motion of sequences (B, T, V, C): ``out[:, t] = seq[:, t + stride] - seq[:, t]``
    for t < T - stride, zero for the last ``stride`` frames. Same shape."""
    out = torch.zeros_like(seq)
    out[:, :-stride] = seq[:, stride:] - seq[:, :-stride]
    return out


def patchify(seq: torch.Tensor, t_patch: int) -> torch.Tensor:
    """(B, T, V, C) -> (B, T'·V, t_patch·C) tokens in (t', v) order, T' = T / t_patch; a token
    holds its ``t_patch`` frames' C values, frame-major."""
    b, t, v, c = seq.shape
    x = seq.reshape(b, t // t_patch, t_patch, v, c).permute(0, 1, 3, 2, 4)
    return x.reshape(b, (t // t_patch) * v, t_patch * c)


def motion_aware_mask(
    patches: torch.Tensor,
    num_joints: int,
    ratio: float,
    tau: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose the tokens to mask.

    Args:
        patches: (B, L, D) the input's tokens (:func:`patchify`), L = T'·V in (t', v) order.
        num_joints: V.
        ratio: share of tokens masked (``int(L · (1 - ratio))`` stay visible).
        tau: > 0: motion-aware (probability ∝ softmax(m / (max m · tau)), m = mean |difference|
            of a token to the same joint's token one segment earlier, the first segment taking
            the second's); 0: uniform.
        generator: for reproducible masks (e.g. validation).

    Returns:
        mask (B, L) bool, True = masked; keep (B, L_vis) long, the visible tokens' positions in
        ascending order.
    """
    b, length, _ = patches.shape
    n_keep = int(round(length * (1 - ratio), 6))  # int(): MAMP's count, without 3.999... = 3
    u = torch.rand(b, length, device=patches.device, generator=generator)
    if tau > 0:
        grid = patches.reshape(b, length // num_joints, num_joints, -1)
        motion = torch.zeros(grid.shape[:3], device=patches.device, dtype=patches.dtype)
        motion[:, 1:] = (grid[:, 1:] - grid[:, :-1]).abs().mean(dim=-1)
        motion[:, 0] = motion[:, 1] if grid.shape[1] > 1 else 0
        motion = motion.reshape(b, length)
        logits = motion / (motion.amax(dim=1, keepdim=True) * tau + 1e-10)
        gumbel = -torch.log(-torch.log(u + 1e-10) + 1e-10)
        score = F.log_softmax(logits, dim=1) + gumbel  # high: masked first
    else:
        score = u
    order = torch.argsort(score, dim=1)  # ascending: the first n_keep stay visible
    keep = order[:, :n_keep].sort(dim=1).values
    mask = torch.ones(b, length, dtype=torch.bool, device=patches.device)
    mask.scatter_(1, keep, False)
    return mask, keep


class MaskedMotionPrediction(nn.Module):
    """The MAMP pretext head over a :class:`SkeletonTransformer` (which it does not own: the
    pretraining task holds the encoder, so checkpoint keys ``encoder.*`` load into a fine-tuned
    encoder as they are).

    Args:
        encoder: the skeleton transformer (sizes are read from it).
        decoder_dim, decoder_depth, decoder_heads: the decoder's width, blocks and heads.
        mask_ratio, motion_aware_tau, motion_stride, norm_target: see the module docstring.
    """

    def __init__(
        self,
        encoder: SkeletonTransformer,
        decoder_dim: int = 256,
        decoder_depth: int = 3,
        decoder_heads: int = 8,
        mask_ratio: float = 0.9,
        motion_aware_tau: float = 0.8,
        motion_stride: int = 1,
        norm_target: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.mask_ratio, self.tau = float(mask_ratio), float(motion_aware_tau)
        self.motion_stride, self.norm_target = int(motion_stride), bool(norm_target)
        self.t_patch, self.num_joints = encoder.t_patch, encoder.num_joints
        segments = encoder.num_segments
        self.decoder_embed = nn.Linear(encoder.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_temporal_embed = nn.Parameter(torch.zeros(1, segments, 1, decoder_dim))
        self.decoder_joint_embed = nn.Parameter(torch.zeros(1, 1, self.num_joints, decoder_dim))
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads, qkv_bias=True) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.t_patch * encoder.in_channels)
        for p in (self.mask_token, self.decoder_temporal_embed, self.decoder_joint_embed):
            nn.init.trunc_normal_(p, std=0.02)
        init_transformer_weights(
            self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred
        )

    def target(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T, V, C) sequences -> (B, L, t_patch·C) per-token motion targets."""
        target = patchify(motion_target(seq, self.motion_stride), self.t_patch)
        if self.norm_target:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def forward(
        self,
        encoder: SkeletonTransformer,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss of one batch of skeletons (N, C, T, V, M).

        Returns:
            ``loss`` (scalar), ``pred`` and ``target`` (N·M, L, t_patch·C), ``mask`` (N·M, L).
        """
        encoder.check_input(x)
        seq = encoder.sequences(x)  # (B, T, V, C), B = N·M
        tokens = encoder.embed(seq)  # (B, L, dim)
        mask, keep = motion_aware_mask(
            patchify(seq, self.t_patch), self.num_joints, self.mask_ratio, self.tau, generator
        )
        b, length, dim = tokens.shape
        visible = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, dim))
        latent = self.decoder_embed(encoder.encode(visible))  # (B, L_vis, D)
        full = self.mask_token.to(latent.dtype).expand(b, length, -1).clone()  # AMP-safe
        full.scatter_(1, keep.unsqueeze(-1).expand(-1, -1, full.shape[-1]), latent)
        pos = (self.decoder_temporal_embed + self.decoder_joint_embed).reshape(1, length, -1)
        h = full + pos.to(full.dtype)
        for block in self.decoder_blocks:
            h = block(h)
        pred = self.decoder_pred(self.decoder_norm(h))
        target = self.target(seq)
        per_token = (pred - target).pow(2).mean(dim=-1)
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
        return {"loss": loss, "pred": pred, "target": target, "mask": mask}
