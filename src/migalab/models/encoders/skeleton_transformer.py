"""Skeleton transformer with spatio-temporal joint tokens: the encoder of MAMP (Mao et al.,
"Masked Motion Predictors are Strong 3D Action Representation Learners", ICCV 2023), which the
MiGA 2026 winner pretrains on unlabelled pose sequences.

Design (as MAMP's encoder): a sequence (T, V, C) is cut into segments of ``t_patch`` frames;
each (segment, joint) is one token, embedded by a linear map of its ``t_patch`` x C values
(a Conv2d with kernel = stride = (t_patch, 1)) plus a learned temporal embedding (T / t_patch
positions) and a learned joint embedding (V positions); ``depth`` pre-norm transformer blocks
(timm's ``Block``: full attention over all T'·V tokens) and a final LayerNorm. Persons (M) are
separate sequences; their tokens are averaged in the output. MAMP's sizes (dim 256, depth 8,
8 heads, t_patch 4, 120 frames) are the defaults of ``conf/model/encoder/skeleton_transformer``;
the CPU preset is ``skeleton_transformer_small``.

The masked pretraining (:class:`migalab.models.pretrain.MaskedMotionPrediction`) uses
:meth:`SkeletonTransformer.embed` and :meth:`SkeletonTransformer.encode` on the visible tokens
only, so a pretrained checkpoint's ``encoder.*`` keys are exactly this module's.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from migalab.data.skeleton.layouts import get_layout
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.finetune import FinetuneMixin
from migalab.models.fusion.token_fusion import init_transformer_weights

__all__ = ["SkeletonTransformer"]


class SkeletonTransformer(FinetuneMixin, nn.Module):
    """Skeleton (N, C, T, V, M) -> joint-segment tokens (N, T'·V, dim) averaged over persons,
    ordered (t', v), T' = T / t_patch; pooled (N, dim) = mean over persons and tokens.

    Args:
        layout: joint layout (``data.layout``), which gives V.
        num_frames: T of the input (``data.num_frames``); a multiple of ``t_patch``.
        in_channels: C (3: x, y, confidence as the gcn pipeline gives them).
        num_persons: M.
        t_patch: frames per token.
        dim: the transformer's width.
        depth: its blocks.
        heads: attention heads per block.
        mlp_ratio: MLP hidden width over ``dim``.
        drop_path: stochastic depth of the last block (linear from 0).
        dropout: dropout after the embeddings.
        finetune: ``full`` | ``frozen`` | ``partial`` over ``[embedding, *blocks]``
            (:mod:`migalab.models.finetune`); ``trainable_blocks`` for ``partial``.
        init: a checkpoint (e.g. of ``migalab-pretrain experiment=pretrain/mamp_skeleton``) whose
            ``encoder.*`` weights initialise this encoder when a fit starts fresh (strict).

    Attributes:
        out_channels: ``dim``.
        spatial_positions: V (sizes the token fusion's spatial embedding).
    """

    def __init__(
        self,
        layout: str,
        num_frames: int = 120,
        in_channels: int = 3,
        num_persons: int = 1,
        t_patch: int = 4,
        dim: int = 256,
        depth: int = 8,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        dropout: float = 0.0,
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        if num_frames % t_patch:
            raise ValueError(f"num_frames ({num_frames}) must be a multiple of t_patch ({t_patch})")
        self.init_checkpoint = init
        self.layout = layout
        self.num_joints = self.spatial_positions = get_layout(layout).num_joints
        self.num_frames, self.t_patch = int(num_frames), int(t_patch)
        self.num_segments = self.num_frames // self.t_patch
        self.in_channels, self.num_persons = in_channels, num_persons
        self.out_channels = self.dim = dim
        self.patch_embed = nn.Conv2d(in_channels, dim, (t_patch, 1), stride=(t_patch, 1))
        self.temporal_embed = nn.Parameter(torch.zeros(1, self.num_segments, 1, dim))
        self.joint_embed = nn.Parameter(torch.zeros(1, 1, self.num_joints, dim))
        self.embed_drop = nn.Dropout(dropout)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            Block(dim, heads, mlp_ratio=mlp_ratio, qkv_bias=True, drop_path=r) for r in rates
        )
        self.norm = nn.LayerNorm(dim)
        nn.init.trunc_normal_(self.temporal_embed, std=0.02)
        nn.init.trunc_normal_(self.joint_embed, std=0.02)
        init_transformer_weights(self.blocks, self.norm)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(dim, -1))
        nn.init.zeros_(self.patch_embed.bias)
        # the token embedding is the first "block" (a container not registered: no duplicate
        # state-dict keys); the final norm trains in partial mode
        stem = nn.ModuleList([self.patch_embed])
        self.configure_finetune(finetune, [stem, *self.blocks], trainable_blocks, [self.norm])

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless ``x`` is (N, C, T, V, M) of this encoder's C, T, V."""
        if x.dim() != 5:
            raise ValueError(f"SkeletonTransformer expects (N, C, T, V, M), got {tuple(x.shape)}")
        _, c, t, v, _ = x.shape
        if (c, t, v) != (self.in_channels, self.num_frames, self.num_joints):
            raise ValueError(
                f"SkeletonTransformer built for C={self.in_channels}, T={self.num_frames}, "
                f"V={self.num_joints} ({self.layout}); got (N, C, T, V, M) = {tuple(x.shape)}"
            )

    @staticmethod
    def sequences(x: torch.Tensor) -> torch.Tensor:
        """(N, C, T, V, M) -> (N·M, T, V, C): one sequence per person."""
        n, c, t, v, m = x.shape
        return x.permute(0, 4, 2, 3, 1).reshape(n * m, t, v, c)

    def embed(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T, V, C) sequences -> (B, T'·V, dim) tokens with their positions added, (t', v)
        order."""
        b = seq.shape[0]
        tokens = self.patch_embed(seq.permute(0, 3, 1, 2))  # (B, dim, T', V)
        tokens = tokens.permute(0, 2, 3, 1) + self.temporal_embed + self.joint_embed
        return self.embed_drop(tokens.reshape(b, -1, self.dim))

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The transformer over any subset of tokens (B, L, dim) -> (B, L, dim), normalised."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        self.check_input(x)
        n, m = x.shape[0], x.shape[-1]
        tokens = self.encode(self.embed(self.sequences(x)))  # (N·M, T'·V, dim)
        tokens = tokens.view(n, m, -1, self.dim).mean(dim=1)
        time, space = grid_index(self.num_segments, self.num_joints, x.device)
        return EncoderOutput(tokens, tokens.mean(dim=1), time, space)
