"""PoseC3D backbone: the SlowOnly-R50 3D CNN of pyskl (Duan et al., "Revisiting Skeleton-based
Action Recognition", CVPR 2022) over stacked keypoint (or limb) heatmap volumes.

Architecture (defaults = pyskl's ``ResNet3dSlowOnly`` as configured for PoseC3D, i.e. mmaction's
``ResNet3d`` depth 50 with ``num_stages=3``):

* input (N, C_in, T, H, W): one heatmap channel per joint (or limb), T sampled frames;
* stem ``conv1``: Conv3d ``conv1_kernel`` (1, 7, 7), stride ``(1, s, s)`` with
  ``s = conv1_stride[1]`` (1), padding ``(k - 1) // 2``, ``base_channels`` (32) out, BN, ReLU;
  then ``maxpool``: MaxPool3d (1, 3, 3), stride ``(1, p, p)`` with ``p = pool1_stride[1]`` (1),
  padding (0, 1, 1) — applied even with stride 1, as pyskl does (a 3×3 spatial max filter);
* 3 stages of Bottleneck3d blocks (expansion 4, style "pytorch": the stride sits in conv2),
  ``stage_blocks`` (4, 6, 3), stage ``i`` has ``planes = base_channels · 2**i`` and outputs
  ``4 · planes`` channels (128, 256, 512); the first block of each stage has stride
  ``(temporal_strides[i], spatial_strides[i], spatial_strides[i])`` = (1, 2, 2), (1, 2, 2),
  (2, 2, 2) and a 1×1×1 conv + BN ``downsample`` shortcut;
* bottleneck = conv1 (1×1×1, or (3, 1, 1) padding (1, 0, 0) in "inflated" stages: ``inflate``
  (0, 1, 1), inflate style "3x1x1") + BN + ReLU -> conv2 (1, 3, 3) padding (0, 1, 1) + BN + ReLU
  -> conv3 1×1×1 + BN -> + shortcut -> ReLU; all convs without bias;
* init as pyskl: kaiming-normal (fan_out, relu) convs, BN weight 1 / bias 0, and the last BN of
  every block zero-initialised (``zero_init_residual``), so each block starts as its shortcut.

Module names mirror pyskl's (``conv1.conv``, ``conv1.bn``, ``layer1.0.conv2.conv``,
``layer1.0.downsample.bn``, ...), so a pyskl PoseC3D checkpoint's ``backbone.*`` weights load
with the ``backbone.`` prefix stripped. The I3D classification head (global average pool ->
dropout 0.5 -> linear 512 -> K) is split here as: the pool lives in :class:`SlowOnly`, dropout and
linear in ``migalab.models.heads.ClassificationHead``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from migalab.models.encoders.conv3d_common import init_conv3d_bn
from migalab.models.encoders.output import EncoderOutput, grid_index

__all__ = ["Bottleneck3d", "ConvBNAct3d", "SlowOnly"]


class ConvBNAct3d(nn.Module):
    """Conv3d (no bias) + BatchNorm3d [+ ReLU], mmcv's ``ConvModule`` with the same submodule
    names (``conv``, ``bn``): (N, C_in, T, H, W) -> (N, C_out, T', H', W')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm3d(out_channels)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck3d(nn.Module):
    """ResNet3d bottleneck (expansion 4, "3x1x1" inflation, stride in conv2):
    (N, C_in, T, H, W) -> (N, 4·planes, ⌈T / st⌉, ⌈H / ss⌉, ⌈W / ss⌉).

    Args:
        inplanes: C_in.
        planes: bottleneck width; the block outputs ``4 · planes`` channels.
        stride: (temporal, spatial) stride, applied by conv2 (and the downsample shortcut).
        downsample: shortcut module when shapes change (None: identity).
        inflate: conv1 is (3, 1, 1) with temporal padding 1 instead of 1×1×1.
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: tuple[int, int] = (1, 1),
        downsample: nn.Module | None = None,
        inflate: bool = False,
    ) -> None:
        super().__init__()
        st, ss = stride
        self.inflate = inflate
        self.conv1 = ConvBNAct3d(
            inplanes,
            planes,
            (3, 1, 1) if inflate else 1,
            padding=(1, 0, 0) if inflate else 0,
        )
        self.conv2 = ConvBNAct3d(planes, planes, (1, 3, 3), stride=(st, ss, ss), padding=(0, 1, 1))
        self.conv3 = ConvBNAct3d(planes, planes * self.expansion, 1, act=False)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.conv2(self.conv1(x)))
        return self.relu(out + identity)


class SlowOnly(nn.Module):
    """PoseC3D SlowOnly-R50 encoder over heatmap volumes (one stream: joints or limbs).

    Args:
        in_channels: C_in, the number of heatmap channels (#joints, or #limbs for the limb
            stream; 17 for COCO, 41 for the extended iMiGUE skeleton).
        base_channels: stem width (32 for PoseC3D; 8 or 16 give CPU-sized models).
        stage_blocks: bottleneck blocks per stage (4, 6, 3).
        spatial_strides: spatial stride of each stage's first block (2, 2, 2).
        temporal_strides: temporal stride of each stage's first block (1, 1, 2).
        inflate: per stage, 1 = (3, 1, 1) temporal conv1 in its blocks, 0 = 1×1×1 (0, 1, 1).
        conv1_kernel: stem kernel (1, 7, 7).
        conv1_stride: stem (temporal, spatial) stride (1, 1).
        pool1_stride: stem max-pool (temporal, spatial) stride (1, 1).
        dropout: dropout on the pooled features (0: none; PoseC3D's dropout 0.5 lives in the
            classification head).
        with_pool: apply the stem max-pool (True, as pyskl even at stride 1; False skips it).
        init: a checkpoint whose weights initialise this encoder when a fit starts fresh
            (:func:`migalab.models.finetune.load_initial_weights`): a migalab checkpoint, a saved
            state dict, or a released pyskl PoseC3D / SlowOnly checkpoint (its ``backbone.*``
            keys; what does not fit is reported and keeps its initialisation); None: none.

    Attributes:
        out_channels: C_out = ``4 · base_channels · 2**(num_stages - 1)`` (512 by default).
        spatial_positions: None — H'·W' depends on the input size (:meth:`output_shape`).

    Forward:
        x: (N, C_in, T, H, W) float heatmap volumes (pyskl's "NCTHW_Heatmap" format).
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens
        (N, T'·H'·W', C_out) — the last stage's feature map, each stride rounding up
        (48×56×56 -> 24×7×7, 48×64×64 -> 24×8×8), ordered (t', h', w') (time
        ``(t' + 0.5) / T'``, space ``h'·W' + w'``) — and pooled (N, C_out), their global
        average over T', H', W' (the I3D head's pool), after ``dropout``.
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 32,
        stage_blocks: Sequence[int] = (4, 6, 3),
        spatial_strides: Sequence[int] = (2, 2, 2),
        temporal_strides: Sequence[int] = (1, 1, 2),
        inflate: Sequence[int] = (0, 1, 1),
        conv1_kernel: Sequence[int] = (1, 7, 7),
        conv1_stride: Sequence[int] = (1, 1),
        pool1_stride: Sequence[int] = (1, 1),
        dropout: float = 0.0,
        with_pool: bool = True,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self.init_checkpoint = init
        self.spatial_positions: int | None = None
        stage_blocks = tuple(int(b) for b in stage_blocks)
        n = len(stage_blocks)
        if n < 1:
            raise ValueError("SlowOnly needs at least one stage")
        for name, seq in (
            ("spatial_strides", spatial_strides),
            ("temporal_strides", temporal_strides),
            ("inflate", inflate),
        ):
            if len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries, stage_blocks has {n}")
        if any(b < 1 for b in stage_blocks):
            raise ValueError(f"every stage needs at least one block, got {stage_blocks}")
        k = tuple(int(v) for v in conv1_kernel)
        if len(k) != 3 or any(v % 2 != 1 for v in k):
            raise ValueError(f"conv1_kernel must be 3 odd sizes, got {tuple(conv1_kernel)}")
        if in_channels < 1 or base_channels < 1:
            raise ValueError(f"bad in_channels={in_channels} / base_channels={base_channels}")

        self.in_channels = in_channels
        self.base_channels = base_channels
        self.stage_blocks = stage_blocks
        self.spatial_strides = tuple(int(s) for s in spatial_strides)
        self.temporal_strides = tuple(int(s) for s in temporal_strides)
        self.inflate = tuple(int(i) for i in inflate)
        self.conv1_stride = (int(conv1_stride[0]), int(conv1_stride[1]))
        self.pool1_stride = (int(pool1_stride[0]), int(pool1_stride[1]))
        self.with_pool = with_pool

        ct, cs = self.conv1_stride
        self.conv1 = ConvBNAct3d(
            in_channels,
            base_channels,
            k,
            stride=(ct, cs, cs),
            padding=tuple((v - 1) // 2 for v in k),
        )
        pt, ps = self.pool1_stride
        self.maxpool = (
            nn.MaxPool3d((1, 3, 3), stride=(pt, ps, ps), padding=(0, 1, 1))
            if with_pool
            else nn.Identity()
        )

        self.res_layers: list[str] = []
        inplanes = base_channels
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2**i
            layer = self._make_res_layer(
                inplanes,
                planes,
                blocks,
                (self.temporal_strides[i], self.spatial_strides[i]),
                bool(self.inflate[i]),
            )
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.res_layers.append(name)
            inplanes = planes * Bottleneck3d.expansion
        self.out_channels = inplanes
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.init_weights()

    @staticmethod
    def _make_res_layer(
        inplanes: int, planes: int, blocks: int, stride: tuple[int, int], inflate: bool
    ) -> nn.Sequential:
        """One stage: a strided first block (with a 1×1×1 conv + BN shortcut when the shape
        changes), then ``blocks - 1`` stride-1 blocks."""
        st, ss = stride
        out = planes * Bottleneck3d.expansion
        downsample = None
        # pyskl tests only the spatial stride; the temporal one is included so that a temporal-
        # only stride with unchanged width cannot break the identity shortcut.
        if st != 1 or ss != 1 or inplanes != out:
            downsample = ConvBNAct3d(inplanes, out, 1, stride=(st, ss, ss), act=False)
        layers = [Bottleneck3d(inplanes, planes, stride, downsample, inflate)]
        layers += [Bottleneck3d(out, planes, (1, 1), None, inflate) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def init_weights(self) -> None:
        """pyskl init: kaiming-normal (fan_out, relu) convs, BN 1/0, last BN of each block 0."""
        init_conv3d_bn(self)
        for m in self.modules():
            if isinstance(m, Bottleneck3d):
                nn.init.zeros_(m.conv3.bn.weight)

    def output_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the tokens for a (T, H, W) input."""

        def down(size: int, stride: int) -> int:
            return (size - 1) // stride + 1

        kt, kh, kw = self.conv1.conv.kernel_size
        ct, cs = self.conv1_stride
        t = (num_frames + 2 * ((kt - 1) // 2) - kt) // ct + 1
        h = (height + 2 * ((kh - 1) // 2) - kh) // cs + 1
        w = (width + 2 * ((kw - 1) // 2) - kw) // cs + 1
        if self.with_pool:
            pt, ps = self.pool1_stride
            t, h, w = down(t, pt), down(h, ps), down(w, ps)
        for st, ss in zip(self.temporal_strides, self.spatial_strides, strict=True):
            t, h, w = down(t, st), down(h, ss), down(w, ss)
        return t, h, w

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        if x.dim() != 5:
            raise ValueError(
                f"SlowOnly expects heatmap volumes (N, C, T, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            hint = ""
            if x.shape[2] == self.in_channels:
                hint = " (axes look like (N, T, C, H, W): move the heatmap axis to dim 1)"
            raise ValueError(
                f"SlowOnly built for C={self.in_channels} heatmap channels; got input "
                f"(N, C, T, H, W) = {tuple(x.shape)}{hint}"
            )
        x = self.maxpool(self.conv1(x))
        for name in self.res_layers:
            x = getattr(self, name)(x)
        pooled = self.dropout(x.mean(dim=(2, 3, 4)))
        n, c, t, h, w = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(n, t * h * w, c)
        time, space = grid_index(t, h * w, x.device)
        return EncoderOutput(tokens, pooled, time, space)
