"""X3D video encoder (Feichtenhofer, "X3D: Expanding Architectures for Efficient Video
Recognition", CVPR 2020): a small 3D CNN with a convolutional inductive bias, for the RGB stream
where a from-scratch video transformer (MViT) does not learn within a CPU budget.

Written here from the paper's description because neither torchvision nor timm has X3D and
pytorchvideo (which has it) is unmaintained since 2022 and not one of our dependencies.

Architecture (all presets share it; X3D-XS, -S and -M differ only in the clip size):

* stem: a spatial Conv3d (1, 3, 3), stride (1, 2, 2), 3 -> ``stem_width`` (24), then a
  channel-wise (depthwise) temporal Conv3d (5, 1, 1), BN, ReLU;
* 4 stages ("res2" - "res5") of residual bottleneck blocks, ``widths`` (24, 48, 96, 192),
  ``depths`` (3, 5, 11, 7): the paper's depth expansion 2.2 of its X2D base (1, 2, 5, 3),
  rounded up (the base depths give 0.94 M parameters, not the paper's 3.8 M with its head; see
  tests/models/encoders/test_x3d.py); spatial stride 2 in the first block of each stage (no
  temporal stride anywhere: T' = T). A block: Conv3d 1×1×1 to the inner width
  ``round(width · expansion)`` (expansion 2.25: 54, 108, 216, 432), BN, ReLU; depthwise Conv3d
  3×3×3, stride (1, s, s), BN;
  Squeeze-Excitation (bottleneck ``max(8, round(inner · se_ratio))``, se_ratio 1/16) in every
  other block (the 1st, 3rd, ... of each stage); Swish (SiLU); Conv3d 1×1×1 back to the width,
  BN (gamma zero-initialised, so each block starts as its shortcut); + shortcut (identity, or
  Conv3d 1×1×1 stride (1, s, s) + BN where the shape changes); ReLU;
* ``conv5``: Conv3d 1×1×1 to ``conv5_width`` (432 = 192 × 2.25), BN, ReLU.

The paper's head (global pool, 1×1×1 conv to 2048, ReLU, dropout, linear) is not part of the
encoder; migalab's ``ClassificationHead`` (dropout + linear) classifies ``pooled``. All convs are
bias-free except the SE's; init: kaiming-normal (fan_out, relu) convs, BN 1 / 0 except the
zero-initialised last BN of every block. Total spatial stride 32 (stem 2, four stages 2 each),
so a (B, 3, T, H, W) clip gives a T × ⌈H/32⌉ × ⌈W/32⌉ grid (exact for multiples of 32, e.g.
8 × 64² -> 8 × 2 × 2; 112² -> 4 × 4, its last stages padding the odd sides).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from migalab.models.encoders.conv3d_common import clip_size, init_conv3d_bn
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.finetune import FinetuneMixin

__all__ = ["X3D", "X3D_PRESETS", "X3DBlock", "X3DStem", "SqueezeExcitation3d", "se_width"]

#: The X3D architecture (identical for XS, S and M: the presets differ only in their clip).
_X3D_ARCH: dict[str, Any] = {
    "depths": (3, 5, 11, 7),
    "widths": (24, 48, 96, 192),
    "expansion": 2.25,
    "se_ratio": 1 / 16,
    "stem_width": 24,
    "conv5_width": 432,
}
#: X3D presets: the architecture and the default clip (T, (H, W)).
X3D_PRESETS: dict[str, dict[str, Any]] = {
    # X3D-XS: 4 frames at 160² in the paper; 8 × 64² here, the CPU variants' clip size
    "xs": {**_X3D_ARCH, "temporal_size": 8, "spatial_size": (64, 64)},
    # X3D-S: 13 frames at 160²
    "s": {**_X3D_ARCH, "temporal_size": 13, "spatial_size": (160, 160)},
    # X3D-M: 16 frames at 224²
    "m": {**_X3D_ARCH, "temporal_size": 16, "spatial_size": (224, 224)},
}


def se_width(channels: int, ratio: float) -> int:
    """Bottleneck width of a Squeeze-Excitation over ``channels``: ``round(channels · ratio)``,
    at least 8 (so the narrow early stages keep a usable gate: 54 · 1/16 would be 3)."""
    return max(8, int(round(channels * ratio)))


class SqueezeExcitation3d(nn.Module):
    """Squeeze-Excitation (Hu et al., CVPR 2018) over a 3D feature map: global average over
    (T, H, W), Conv 1×1×1 C -> r, ReLU, Conv 1×1×1 r -> C, sigmoid, channel-wise rescale:
    (B, C, T, H, W) -> (B, C, T, H, W)."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(channels, reduced, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)  # (B, C, 1, 1, 1)
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(s))))


class X3DStem(nn.Module):
    """X3D stem: spatial Conv3d (1, 3, 3) stride (1, 2, 2), depthwise temporal Conv3d (5, 1, 1),
    BN, ReLU: (B, C_in, T, H, W) -> (B, width, T, ⌈H/2⌉, ⌈W/2⌉)."""

    def __init__(self, in_channels: int, width: int, temporal_kernel: int = 5) -> None:
        super().__init__()
        self.conv_xy = nn.Conv3d(
            in_channels, width, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False
        )
        self.conv_t = nn.Conv3d(
            width,
            width,
            (temporal_kernel, 1, 1),
            padding=(temporal_kernel // 2, 0, 0),
            groups=width,
            bias=False,
        )
        self.bn = nn.BatchNorm3d(width)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv_t(self.conv_xy(x))))


class X3DBlock(nn.Module):
    """X3D residual bottleneck block (see the module docstring):
    (B, C_in, T, H, W) -> (B, C_out, T, ⌈H/s⌉, ⌈W/s⌉).

    Args:
        in_channels: C_in.
        out_channels: C_out.
        inner_channels: width of the depthwise 3×3×3 conv (``round(C_out · expansion)``).
        stride: spatial stride s of the depthwise conv (and of the projection shortcut).
        se_channels: SE bottleneck width; None: no SE in this block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        inner_channels: int,
        stride: int = 1,
        se_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(in_channels, inner_channels, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner_channels)
        self.relu_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(
            inner_channels,
            inner_channels,
            3,
            stride=(1, stride, stride),
            padding=1,
            groups=inner_channels,
            bias=False,
        )
        self.bn_b = nn.BatchNorm3d(inner_channels)
        self.se = SqueezeExcitation3d(inner_channels, se_channels) if se_channels else nn.Identity()
        self.act_b = nn.SiLU(inplace=True)
        self.conv_c = nn.Conv3d(inner_channels, out_channels, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(out_channels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv3d(
                        in_channels, out_channels, 1, stride=(1, stride, stride), bias=False
                    ),
                    bn=nn.BatchNorm3d(out_channels),
                )
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.relu_a(self.bn_a(self.conv_a(x)))
        out = self.act_b(self.se(self.bn_b(self.conv_b(out))))
        out = self.bn_c(self.conv_c(out))
        return self.relu(out + identity)


@contextlib.contextmanager
def _batchnorm_stats_frozen(module: nn.Module) -> Iterator[None]:
    """Leave the running statistics of ``module``'s BatchNorms untouched while inside (momentum
    0, ``num_batches_tracked`` restored): the recomputation of a checkpointed block in the
    backward pass must not update them a second time. Outputs are unchanged (training-mode BN
    normalises with the batch statistics either way)."""
    saved = [
        (m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
    ]
    for m, _, _ in saved:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class X3D(FinetuneMixin, nn.Module):
    """X3D encoder returning the ``conv5`` feature map as grid tokens and its global average.

    Args:
        preset: ``"xs"``, ``"s"`` or ``"m"`` (:data:`X3D_PRESETS`; one architecture, the
            preset sets the default clip size: 8 × 64², 13 × 160², 16 × 224²).
        temporal_size: the clip's T (default: the preset's). Sizes ``grid`` / ``num_tokens``;
            the forward takes any T.
        spatial_size: the clip's (H, W), or one int for square (default: the preset's;
            multiples of 32 tile exactly). Sizes ``spatial_positions`` (the token fusion's
            spatial embedding table), so the forward, which takes any size, must not get a
            larger frame than this inside a fusion.
        depths: override the preset's blocks per stage.
        widths: override the preset's stage widths.
        expansion: override the preset's bottleneck expansion.
        se_ratio: override the preset's SE ratio (0: no SE).
        stem_width: override the preset's stem width.
        conv5_width: override the preset's ``conv5`` width.
        in_channels: input channels (3, RGB).
        grad_checkpointing: in training, recompute each block in the backward pass
            (``torch.utils.checkpoint``, non-reentrant): less activation memory, ~1/3 more
            compute, same outputs, gradients and BN running statistics.
        finetune: ``"full"``, ``"frozen"`` or ``"partial"`` (``migalab.models.finetune``) over
            the blocks ``[stem, *blocks of res2..res5]``; with ``"partial"`` ``conv5`` always
            trains. Frozen parts stay in eval mode (their BN statistics do not move).
        trainable_blocks: with ``"partial"``: how many of the last of those blocks train.
        init: a migalab checkpoint (or saved state dict) whose weights initialise this encoder
            when a fit starts fresh (:func:`migalab.models.finetune.load_initial_weights`);
            None: none.

    Attributes:
        out_channels: C = ``conv5_width`` (432).
        in_channels: C_in (3).
        temporal_size, spatial_size: the configured clip size (T, (H, W)).
        spatial_stride: 32, the total spatial stride.
        grid: the token grid (T, H', W') = (T, ⌈H/32⌉, ⌈W/32⌉) of the configured clip
            ((8, 2, 2) for "xs", (16, 7, 7) for "m").
        num_tokens: ``T·H'·W'`` (no global token).
        spatial_positions: ``H'·W'`` (the range of the tokens' ``space`` index).
        blocks: the residual blocks in forward order (a tuple; registered under ``stages``).

    Forward:
        x: (B, C_in, T, H, W) float, normalised like MViT's input
        (``migalab.data.video.transforms``), any T, H, W (multiples of 32 tile exactly).
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens
        (B, T·H'·W', C), the ``conv5`` map in (t, h', w') order (time ``(t + 0.5) / T``, space
        ``h'·W' + w'``; H' = ⌈H/32⌉, W' = ⌈W/32⌉); pooled (B, C), its global average over
        (T, H', W').
    """

    def __init__(
        self,
        preset: str = "xs",
        temporal_size: int | None = None,
        spatial_size: int | Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        expansion: float | None = None,
        se_ratio: float | None = None,
        stem_width: int | None = None,
        conv5_width: int | None = None,
        in_channels: int = 3,
        grad_checkpointing: bool = False,
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self.init_checkpoint = init
        if preset not in X3D_PRESETS:
            raise ValueError(f"unknown X3D preset {preset!r}; choose one of {list(X3D_PRESETS)}")
        cfg = X3D_PRESETS[preset]
        self.preset = preset
        self.depths = tuple(int(v) for v in (cfg["depths"] if depths is None else depths))
        self.widths = tuple(int(v) for v in (cfg["widths"] if widths is None else widths))
        self.expansion = float(cfg["expansion"] if expansion is None else expansion)
        self.se_ratio = float(cfg["se_ratio"] if se_ratio is None else se_ratio)
        self.stem_width = int(cfg["stem_width"] if stem_width is None else stem_width)
        self.conv5_width = int(cfg["conv5_width"] if conv5_width is None else conv5_width)
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ValueError(
                f"depths and widths need one entry per stage, got {self.depths}, {self.widths}"
            )
        if min(self.depths) < 1 or min(self.widths) < 1 or self.expansion <= 0:
            raise ValueError(
                f"depths, widths and expansion must be positive, got {self.depths}, "
                f"{self.widths}, {self.expansion}"
            )
        if self.se_ratio < 0 or min(self.stem_width, self.conv5_width, in_channels) < 1:
            raise ValueError(
                f"bad se_ratio={self.se_ratio}, stem_width={self.stem_width}, "
                f"conv5_width={self.conv5_width} or in_channels={in_channels}"
            )
        self.in_channels = int(in_channels)
        self.spatial_stride = 2 ** (1 + len(self.depths))

        t, hw = clip_size(
            temporal_size, spatial_size, cfg["temporal_size"], cfg["spatial_size"], "X3D"
        )
        self.temporal_size, self.spatial_size = t, hw
        self.grid = self.token_grid(t, *hw)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.spatial_positions = self.grid[1] * self.grid[2]

        self.stem = X3DStem(self.in_channels, self.stem_width)
        stages = []
        c_in = self.stem_width
        for depth, width in zip(self.depths, self.widths, strict=True):
            inner = int(round(width * self.expansion))
            se = se_width(inner, self.se_ratio) if self.se_ratio > 0 else None
            stage = [
                X3DBlock(
                    c_in if j == 0 else width,
                    width,
                    inner,
                    stride=2 if j == 0 else 1,
                    se_channels=se if j % 2 == 0 else None,
                )
                for j in range(depth)
            ]
            stages.append(nn.Sequential(*stage))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.conv5 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv3d(c_in, self.conv5_width, 1, bias=False),
                bn=nn.BatchNorm3d(self.conv5_width),
                relu=nn.ReLU(inplace=True),
            )
        )
        self.out_channels = self.conv5_width
        self.grad_checkpointing = bool(grad_checkpointing)
        self.init_weights()
        self.configure_finetune(finetune, [self.stem, *self.blocks], trainable_blocks, [self.conv5])

    @property
    def blocks(self) -> tuple[X3DBlock, ...]:
        """The residual blocks of all stages, in forward order."""
        return tuple(block for stage in self.stages for block in stage)  # type: ignore[misc]

    def token_grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """(T', H', W') of the ``conv5`` map for a (t, h, w) clip: (t, ⌈h/32⌉, ⌈w/32⌉) (each
        stride-2 conv, kernel 3, padding 1, maps n to ⌈n/2⌉)."""
        s = self.spatial_stride
        return t, -(-h // s), -(-w // s)

    def init_weights(self) -> None:
        """Kaiming-normal (fan_out, relu) convs with zero biases, BN weight 1 / bias 0, and the
        last BN (``bn_c``) of every block zero, so each block starts as its shortcut."""
        init_conv3d_bn(self)
        for block in self.blocks:
            nn.init.zeros_(block.bn_c.weight)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """(B, C_in, T, H, W) -> EncoderOutput(tokens (B, T·H'·W', C), pooled (B, C),
        time / space (T·H'·W',)); see the class docstring."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"X3D expects (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}")
        x = self.stem(x)
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if use_ckpt:
                x = checkpoint(
                    block,
                    x,
                    use_reentrant=False,
                    context_fn=lambda b=block: (
                        contextlib.nullcontext(),
                        _batchnorm_stats_frozen(b),
                    ),
                )
            else:
                x = block(x)
        x = self.conv5(x)  # (B, C, T, H', W')
        _, _, t, hh, ww = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, T·H'·W', C)
        time, space = grid_index(t, hh * ww, tokens.device)
        return EncoderOutput(tokens, x.mean(dim=(2, 3, 4)), time, space)
