"""Dense 3D ResNet video encoder (Tran et al., "A Closer Look at Spatiotemporal Convolutions for
Action Recognition", CVPR 2018: R3D) on torchvision's video ResNet
(``torchvision.models.video.resnet``), for the RGB stream of the CPU variants: a convolutional
inductive bias like X3D, but dense 3×3×3 convs, which PyTorch's CPU kernels run far faster than
X3D's depthwise ones (see ``RESNET3D_PRESETS`` for measured costs).

Reused from torchvision: the residual blocks (``BasicBlock``, ``Bottleneck``), the 3×3×3 conv
(``Conv3DSimple``), the r3d_18 stem (``BasicStem``), the stage builder
(``VideoResNet._make_layer``: projection shortcut where the shape changes) and the weight init,
and for preset ``"r18"`` exactly r3d_18's architecture (module names as torchvision's, so its
Kinetics-400 checkpoint loads directly, ``fc.*`` ignored). ``VideoResNet`` itself is not built
(its ``__init__`` hard-codes the 64-wide stem, the widths 64..512 and the classifier); added here:

* configurable stage widths and depths (``_make_layer`` called per stage, see
  :func:`make_stage`), and a narrow stem (:class:`ResNet3DStem`: ``BasicStem`` with a
  configurable width and kernel);
* :class:`Conv3DSpatialStride`: ``Conv3DSimple`` striding (1, s, s) instead of (s, s, s), for
  clips of 4-8 frames that must keep their frames (``temporal_downsample=False``);
* zero-initialised last BN of every block (torchvision's ``zero_init_residual`` addresses a
  ``bn3`` attribute its blocks do not have, so it does nothing);
* the token output, fine-tuning modes, gradient checkpointing, ``pretrained``.

Architecture: stem Conv3d 3 -> ``stem_width``, kernel ``stem_kernel``, stride (1, 2, 2), padding
kernel // 2, BN, ReLU (no max-pool); stages ``layer1``..``layer4`` of ``depths`` blocks at
``widths`` (× 4 for bottlenecks); the first block of stages 2-4 strides 2 in space (and in time
when ``temporal_downsample``, as r3d_18). Total spatial stride 16: a (B, 3, T, H, W) clip gives
a T' × ⌈H/16⌉ × ⌈W/16⌉ grid, T' = T (``"xs"``) or ⌈T/8⌉ (r3d_18: 16 × 112² -> 2 × 7 × 7).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.video.resnet import (
    BasicBlock,
    BasicStem,
    Bottleneck,
    Conv3DSimple,
    R3D_18_Weights,
    VideoResNet,
)

from migalab.models.encoders.conv3d_common import clip_size, init_conv3d_bn
from migalab.models.encoders.mvit import _format_keys
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.encoders.x3d import _batchnorm_stats_frozen
from migalab.models.finetune import FinetuneMixin
from migalab.utils.checkpoints import load_checkpoint

__all__ = [
    "RESNET3D_BLOCKS",
    "RESNET3D_PRESETS",
    "Conv3DSpatialStride",
    "ResNet3D",
    "ResNet3DStem",
    "make_stage",
]

#: Presets: the architecture and the default clip (T, (H, W)).
RESNET3D_PRESETS: dict[str, dict[str, Any]] = {
    # narrow r3d for CPUs: 0.90 M parameters, 0.86 GFLOPs (FlopCounterMode, forward) per
    # 4 × 96² clip. Stem (1, 5, 5), the cheapest of the four measured: a (3, 7, 7) stem costs
    # 0.13 instead of 0.02 GFLOPs (+13 % for the network) and 2-2.5x the stem's fwd+bwd time
    # (~10 vs ~4 ms per clip, batch 16, 2 threads); the eight 3×3×3 convs of the four blocks
    # already see 17 frames, more than the 4-8 of a clip
    "xs": {
        "block": "basic",
        "depths": (1, 1, 1, 1),
        "widths": (16, 32, 64, 128),
        "stem_width": 16,
        "stem_kernel": (1, 5, 5),
        "temporal_downsample": False,
        "temporal_size": 8,
        "spatial_size": (64, 64),
    },
    # exactly torchvision's r3d_18 (33.2 M parameters without its 400-class fc)
    "r18": {
        "block": "basic",
        "depths": (2, 2, 2, 2),
        "widths": (64, 128, 256, 512),
        "stem_width": 64,
        "stem_kernel": (3, 7, 7),
        "temporal_downsample": True,
        "temporal_size": 16,
        "spatial_size": (112, 112),
    },
}

#: block name -> torchvision block class
RESNET3D_BLOCKS: dict[str, type[BasicBlock | Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}

_STRIP_PREFIXES = ("module.", "backbone.")


class ResNet3DStem(nn.Sequential):
    """torchvision's ``BasicStem`` with a configurable width and kernel: Conv3d ``in_channels``
    -> ``width``, ``kernel``, stride (1, 2, 2), padding ``kernel // 2``, no bias; BN; ReLU:
    (B, C_in, T, H, W) -> (B, width, T, ⌈H/2⌉, ⌈W/2⌉) for odd kernels. Same module layout (and
    state-dict keys ``0.weight``, ``1.*``) as ``BasicStem``, which it equals for
    (3, 64, (3, 7, 7))."""

    def __init__(self, in_channels: int, width: int, kernel: Sequence[int]) -> None:
        k = tuple(int(v) for v in kernel)
        if len(k) != 3 or min(k) < 1 or not all(v % 2 for v in k):
            raise ValueError(f"stem_kernel must be three odd positive sizes, got {kernel}")
        super().__init__(
            nn.Conv3d(
                in_channels,
                width,
                kernel_size=k,
                stride=(1, 2, 2),
                padding=(k[0] // 2, k[1] // 2, k[2] // 2),
                bias=False,
            ),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )


class Conv3DSpatialStride(Conv3DSimple):
    """torchvision's ``Conv3DSimple`` (3×3×3, padding 1, no bias) striding only in space:
    stride (1, s, s), and a (1, s, s) projection shortcut in ``VideoResNet._make_layer``
    (torchvision's ``Conv3DNoTemporal`` strides the same way but has a (1, 3, 3) kernel)."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        midplanes: int | None = None,
        stride: int = 1,
        padding: int = 1,
    ) -> None:
        super().__init__(in_planes, out_planes, midplanes, (1, stride, stride), padding)  # type: ignore[arg-type]

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return 1, stride, stride


def make_stage(
    block: type[BasicBlock | Bottleneck],
    conv_builder: type[nn.Module],
    inplanes: int,
    planes: int,
    depth: int,
    stride: int = 1,
) -> nn.Sequential:
    """One ResNet stage built by torchvision's ``VideoResNet._make_layer`` (which reads and
    advances only ``self.inplanes``), at any width: ``depth`` blocks ``inplanes`` ->
    ``planes · block.expansion``, the first striding ``stride`` (through ``conv_builder``) with a
    1×1×1 conv + BN projection shortcut where the shape changes.
    (B, inplanes, T, H, W) -> (B, planes · expansion, T', ⌈H/s⌉, ⌈W/s⌉)."""
    holder = SimpleNamespace(inplanes=inplanes)
    return VideoResNet._make_layer(holder, block, conv_builder, planes, depth, stride)  # type: ignore[arg-type]


def _last_bn(block: nn.Module) -> nn.BatchNorm3d:
    """The BN closing a block's residual branch (``conv2[1]`` / ``conv3[1]``)."""
    branch = block.conv3 if isinstance(block, Bottleneck) else block.conv2
    bn = branch[1]
    assert isinstance(bn, nn.BatchNorm3d)
    return bn


class ResNet3D(FinetuneMixin, nn.Module):
    """Dense 3D ResNet encoder returning the last stage's map as grid tokens and its global
    average (see the module docstring).

    Args:
        preset: ``"xs"`` (narrow, for CPUs) or ``"r18"`` (torchvision's r3d_18), see
            :data:`RESNET3D_PRESETS`.
        temporal_size: the clip's T (default: the preset's, 8 / 16). Sizes ``grid`` /
            ``num_tokens``; the forward takes any T.
        spatial_size: the clip's (H, W), or one int for square (default: 64² / 112²; multiples
            of 16 tile exactly). Sizes ``spatial_positions`` (the token fusion's spatial
            embedding table), so the forward, which takes any size, must not get a larger frame
            than this inside a fusion.
        block / depths / widths / stem_width / stem_kernel / temporal_downsample: override the
            preset's block (``"basic"`` or ``"bottleneck"``), blocks per stage, stage widths,
            stem width and kernel, and whether stages 2+ also stride 2 in time.
        in_channels: input channels (3, RGB).
        pretrained: None (random init), ``"kinetics400"`` (torchvision's
            ``R3D_18_Weights.KINETICS400_V1``, preset ``"r18"`` only) or the path of a
            torchvision-format r3d state dict (see :meth:`load_pretrained`). Loaded when a fit
            starts fresh (:meth:`load_initial_weights`), not at construction.
        grad_checkpointing: in training, recompute each block in the backward pass
            (``torch.utils.checkpoint``, non-reentrant): less activation memory, ~1/3 more
            compute, same outputs, gradients and BN running statistics.
        finetune: ``"full"``, ``"frozen"`` or ``"partial"`` (``migalab.models.finetune``) over
            the blocks ``[stem, *blocks of layer1..layer4]``. Frozen parts stay in eval mode
            (their BN statistics do not move).
        trainable_blocks: with ``"partial"``: how many of the last of those blocks train (0:
            none, as ``"frozen"``).
        init: a migalab checkpoint (or saved state dict) whose weights initialise this encoder
            when a fit starts fresh, after ``pretrained``
            (:func:`migalab.models.finetune.load_initial_weights`); None: none.

    Attributes:
        out_channels: C = ``widths[-1] · block.expansion`` (128 for "xs", 512 for "r18").
        in_channels: C_in (3).
        temporal_size, spatial_size: the configured clip size (T, (H, W)).
        spatial_stride, temporal_stride: 16; 8 with ``temporal_downsample`` else 1.
        grid: the token grid (T', H', W') of the configured clip ((8, 4, 4) for "xs" at 8 × 64²,
            (2, 7, 7) for "r18" at 16 × 112²).
        num_tokens: ``T'·H'·W'`` (no global token).
        spatial_positions: ``H'·W'`` (the range of the tokens' ``space`` index).
        blocks: the residual blocks in forward order (a tuple; registered under ``layer1``..).
        is_torchvision_r18: the architecture is exactly torchvision's r3d_18.

    Forward:
        x: (B, C_in, T, H, W) float, normalised like MViT's input
        (``migalab.data.video.transforms``), any T, H, W.
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens
        (B, T'·H'·W', C), the last stage's map in (t', h', w') order (time ``(t' + 0.5) / T'``,
        space ``h'·W' + w'``); pooled (B, C), its global average over (T', H', W') (what
        r3d_18's ``avgpool`` gives its ``fc``).
    """

    def __init__(
        self,
        preset: str = "xs",
        temporal_size: int | None = None,
        spatial_size: int | Sequence[int] | None = None,
        block: str | None = None,
        depths: Sequence[int] | None = None,
        widths: Sequence[int] | None = None,
        stem_width: int | None = None,
        stem_kernel: Sequence[int] | None = None,
        temporal_downsample: bool | None = None,
        in_channels: int = 3,
        pretrained: str | None = None,
        grad_checkpointing: bool = False,
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self.init_checkpoint = init
        if preset not in RESNET3D_PRESETS:
            raise ValueError(
                f"unknown ResNet3D preset {preset!r}; choose one of {list(RESNET3D_PRESETS)}"
            )
        cfg = RESNET3D_PRESETS[preset]
        self.preset = preset
        self.block_name = str(cfg["block"] if block is None else block)
        if self.block_name not in RESNET3D_BLOCKS:
            raise ValueError(
                f"unknown ResNet3D block {self.block_name!r}; choose one of {list(RESNET3D_BLOCKS)}"
            )
        block_cls = RESNET3D_BLOCKS[self.block_name]
        self.depths = tuple(int(v) for v in (cfg["depths"] if depths is None else depths))
        self.widths = tuple(int(v) for v in (cfg["widths"] if widths is None else widths))
        self.stem_width = int(cfg["stem_width"] if stem_width is None else stem_width)
        self.stem_kernel = tuple(
            int(v) for v in (cfg["stem_kernel"] if stem_kernel is None else stem_kernel)
        )
        self.temporal_downsample = bool(
            cfg["temporal_downsample"] if temporal_downsample is None else temporal_downsample
        )
        if len(self.depths) != len(self.widths) or not self.depths:
            raise ValueError(
                f"depths and widths need one entry per stage, got {self.depths}, {self.widths}"
            )
        if min(self.depths) < 1 or min(self.widths) < 1 or min(self.stem_width, in_channels) < 1:
            raise ValueError(
                f"depths, widths, stem_width and in_channels must be positive, got "
                f"{self.depths}, {self.widths}, {self.stem_width}, {in_channels}"
            )
        self.in_channels = int(in_channels)
        n_down = len(self.depths) - 1  # stages 2.. stride 2
        self.spatial_stride = 2 ** (1 + n_down)
        self.temporal_stride = 2**n_down if self.temporal_downsample else 1

        t, hw = clip_size(
            temporal_size, spatial_size, cfg["temporal_size"], cfg["spatial_size"], "ResNet3D"
        )
        self.temporal_size, self.spatial_size = t, hw
        self.grid = self.token_grid(t, *hw)
        self.num_tokens = self.grid[0] * self.grid[1] * self.grid[2]
        self.spatial_positions = self.grid[1] * self.grid[2]

        tv_stem = (self.in_channels, self.stem_width, self.stem_kernel) == (3, 64, (3, 7, 7))
        self.stem: nn.Sequential = (
            BasicStem()
            if tv_stem
            else ResNet3DStem(self.in_channels, self.stem_width, self.stem_kernel)
        )
        conv_builder = Conv3DSimple if self.temporal_downsample else Conv3DSpatialStride
        inplanes = self.stem_width
        self.stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(self.depths)))
        for i, (name, depth, width) in enumerate(
            zip(self.stage_names, self.depths, self.widths, strict=True)
        ):
            stage = make_stage(block_cls, conv_builder, inplanes, width, depth, 2 if i else 1)
            self.add_module(name, stage)
            inplanes = width * block_cls.expansion
        self.out_channels = inplanes
        r18 = RESNET3D_PRESETS["r18"]
        self.is_torchvision_r18 = tv_stem and (
            self.block_name,
            self.depths,
            self.widths,
            self.temporal_downsample,
        ) == (r18["block"], r18["depths"], r18["widths"], r18["temporal_downsample"])
        self.grad_checkpointing = bool(grad_checkpointing)
        self.init_weights()

        if pretrained == "kinetics400" and preset != "r18":
            raise ValueError(
                f"pretrained='kinetics400' exists only for preset 'r18' (torchvision's r3d_18), "
                f"not {preset!r}"
            )
        #: weights for a fresh fit (:meth:`load_initial_weights`); never read at construction,
        #: so a checkpoint naming them is evaluated or resumed without the file
        self.pretrained = pretrained
        self.configure_finetune(finetune, [self.stem, *self.blocks], trainable_blocks)

    # ------------------------------------------------------------------ structure
    @property
    def stages(self) -> tuple[nn.Sequential, ...]:
        """``layer1``, ``layer2``, ... in forward order."""
        return tuple(getattr(self, name) for name in self.stage_names)

    @property
    def blocks(self) -> tuple[nn.Module, ...]:
        """The residual blocks of all stages, in forward order."""
        return tuple(block for stage in self.stages for block in stage)

    def token_grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """(T', H', W') of the last stage for a (t, h, w) clip: each stride-2 step (the stem's
        kernel k, padding k // 2 with odd k; the blocks' 3×3×3 convs and 1×1×1 shortcuts) maps
        n to ⌈n/2⌉: (t or ⌈t/8⌉, ⌈h/16⌉, ⌈w/16⌉) with four stages."""
        s, ts = self.spatial_stride, self.temporal_stride
        return -(-t // ts), -(-h // s), -(-w // s)

    def init_weights(self) -> None:
        """torchvision's ``VideoResNet`` init (kaiming-normal fan_out / relu convs with zero
        biases, BN weight 1 / bias 0), and the last BN of every block zero, so each block
        starts as its shortcut."""
        init_conv3d_bn(self)
        for block in self.blocks:
            nn.init.zeros_(_last_bn(block).weight)

    # ------------------------------------------------------------------ weights
    def load_initial_weights(self) -> list[str]:
        """Load ``pretrained`` (if any); called by :func:`migalab.models.finetune.
        load_initial_weights` when a fit starts fresh. Returns what was loaded."""
        if self.pretrained is None:
            return []
        self.load_pretrained(self.pretrained)
        return [f"ResNet3D <- {self.pretrained}"]

    def load_pretrained(self, source: str) -> None:
        """Load torchvision-format r3d weights.

        ``source``: ``"kinetics400"`` (torchvision's ``R3D_18_Weights.KINETICS400_V1``, fetched
        through the torch hub cache; preset "r18" only) or a file holding a state dict (read
        with ``weights_only``), possibly wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``
        with ``module.`` / ``backbone.`` key prefixes. ``fc.*`` keys (the classifier) are
        ignored; every other key must match in name and shape.

        Raises:
            ValueError: Kinetics weights for another architecture, or keys that do not match
                (the message lists missing / unexpected / mis-shaped keys and names the source).
            FileNotFoundError: no such file.
            RuntimeError: the Kinetics download failed (offline machine).
        """
        if source == "kinetics400":
            if not self.is_torchvision_r18:
                raise ValueError(
                    f"Kinetics-400 weights exist only for preset 'r18' with its default block, "
                    f"depths, widths, stem and temporal_downsample (this encoder: preset "
                    f"{self.preset!r})"
                )
            weights = R3D_18_Weights.KINETICS400_V1
            try:
                state = weights.get_state_dict(progress=True, check_hash=True)
            except Exception as err:  # no network, proxy, bad hash ...
                fname = os.path.basename(weights.url)
                hub_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
                raise RuntimeError(
                    f"could not fetch the r3d_18 Kinetics-400 weights from {weights.url} "
                    f"({type(err).__name__}: {err}). Download that file on a machine with "
                    f"network access and either put it at {os.path.join(hub_dir, fname)} or "
                    f"pass its path as pretrained=/path/to/{fname}"
                ) from err
            self._load_torchvision_state(state, f"torchvision {weights}")
            return
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"ResNet3D pretrained weights: no file {source!r} (expected None, 'kinetics400' "
                f"or the path of a torchvision-format r3d state dict)"
            )
        obj = load_checkpoint(source)  # torch.load(weights_only=True): a file runs no code
        self._load_torchvision_state(obj, source)

    def _load_torchvision_state(self, obj: Any, source: str) -> None:
        if isinstance(obj, Mapping):
            for key in ("state_dict", "model"):
                if isinstance(obj.get(key), Mapping):
                    obj = obj[key]
                    break
        if not isinstance(obj, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()
        ):
            raise ValueError(f"{source}: expected a state dict of tensors, got {type(obj)}")
        state: dict[str, torch.Tensor] = {}
        for key, value in obj.items():
            while key.startswith(_STRIP_PREFIXES):
                key = key.split(".", 1)[1]
            if not key.startswith("fc."):
                state[key] = value

        own = self.state_dict()
        mismatched = [
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in state.items()
            if k in own and own[k].shape != v.shape
        ]
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected or mismatched:
            parts = []
            if missing:
                parts.append(f"missing keys ({len(missing)}): {_format_keys(missing)}")
            if unexpected:
                parts.append(f"unexpected keys ({len(unexpected)}): {_format_keys(unexpected)}")
            if mismatched:
                parts.append(f"shape mismatches ({len(mismatched)}): {_format_keys(mismatched)}")
            raise ValueError(
                f"{source} does not match this ResNet3D encoder (preset {self.preset!r}, "
                f"depths {self.depths}, widths {self.widths}): " + "; ".join(parts)
            )
        self.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """(B, C_in, T, H, W) -> EncoderOutput(tokens (B, T'·H'·W', C), pooled (B, C),
        time / space (T'·H'·W',)); see the class docstring."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNet3D expects (B, {self.in_channels}, T, H, W), got {tuple(x.shape)}"
            )
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
        _, _, t, hh, ww = x.shape  # (B, C, T', H', W')
        tokens = x.flatten(2).transpose(1, 2)  # (B, T'·H'·W', C)
        time, space = grid_index(t, hh * ww, tokens.device)
        return EncoderOutput(tokens, x.mean(dim=(2, 3, 4)), time, space)
