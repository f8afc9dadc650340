"""2s-AGCN skeleton encoder (Shi et al., "Two-Stream Adaptive Graph Convolutional Networks for
Skeleton-Based Action Recognition", CVPR 2019), one stream (joint or bone: train two instances
and sum their scores).

Architecture (defaults reproduce the paper):

* input (N, C, T, V, M); a data BatchNorm1d over the M·V·C channels (one statistic per person
  slot, joint and coordinate, as in the reference);
* 10 units with widths ``base_channels × (1, 1, 1, 1, 2, 2, 2, 4, 4, 4)`` = 64..256, temporal
  stride 2 at units 5 and 8 (1-based), temporal kernel 9; persons are folded into the batch;
* each unit = adaptive graph conv -> temporal conv (k×1 conv + BN) -> [dropout] -> + residual
  -> ReLU; the first unit has no unit-level residual;
* adaptive graph conv: ``y = Σ_k W_k x (A_k + B_k + C_k)`` over the 3 spatial subsets of
  ``migalab.data.skeleton.graph.Graph`` (self / inward / outward), with ``A_k`` a fixed buffer,
  ``B_k`` a learned (V, V) parameter initialised to 1e-6, and the data-dependent
  ``C_k = softmax_{dim=-2}((θ_k x)ᵀ (φ_k x) / (C_e·T))`` with embedding width
  ``C_e = out // 4``; then BN (weight initialised to 1e-6, as the reference code) + a 1×1
  conv/BN "down" path when widths differ + ReLU;
* init as the reference: kaiming-normal (fan_out) convs with zero bias, ``conv_branch_init`` for
  the W_k convs (normal std ``sqrt(2 / (out·in·K))``), BatchNorm weight 1 / bias 0 except the
  graph-conv output BN (``gcn_bn_init``, 1e-6).

Layer names follow the paper (``theta``/``phi``/``W``/``B``); the subsets are computed in one
batched einsum instead of the reference's Python loop (same maths, same parameter count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from migalab.data.skeleton.graph import Graph
from migalab.data.skeleton.layouts import JointLayout
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.finetune import FinetuneMixin

__all__ = ["AGCN", "AGCNUnit", "AdaptiveGraphConv", "TemporalConv"]

DEFAULT_CHANNEL_MULTIPLIERS = (1, 1, 1, 1, 2, 2, 2, 4, 4, 4)
DEFAULT_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)


def conv_init(conv: nn.Conv2d) -> None:
    """Kaiming-normal (fan_out) weight, zero bias."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def conv_branch_init(conv: nn.Conv2d, branches: int) -> None:
    """Normal weight with std ``sqrt(2 / (out · in · kh · branches))``, zero bias."""
    w = conv.weight
    nn.init.normal_(w, 0.0, math.sqrt(2.0 / (w.size(0) * w.size(1) * w.size(2) * branches)))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def bn_init(bn: nn.modules.batchnorm._BatchNorm, scale: float) -> None:
    """BatchNorm weight ``scale``, bias 0."""
    nn.init.constant_(bn.weight, scale)
    nn.init.zeros_(bn.bias)


class TemporalConv(nn.Module):
    """(k × 1) temporal conv + BN: (N, C_in, T, V) -> (N, C_out, ⌊(T - 1) / stride⌋ + 1, V)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"temporal kernel must be odd, got {kernel_size}")
        pad = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, (kernel_size, 1), padding=(pad, 0), stride=(stride, 1)
        )
        self.bn = nn.BatchNorm2d(out_channels)
        conv_init(self.conv)
        bn_init(self.bn, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class AdaptiveGraphConv(nn.Module):
    """Adaptive graph convolution (2s-AGCN ``unit_gcn``): (N, C_in, T, V) -> (N, C_out, T, V).

    Args:
        A: (K, V, V) fixed adjacency subsets (``Graph.A``), propagated as ``x @ A_k`` over V.
        adaptive: learn ``B_k`` and the data-dependent ``C_k``; False gives a fixed-graph GCN
            (no ``B``, ``theta``, ``phi``).
        coff_embedding: ``C_e = out_channels // coff_embedding`` (4 in the paper).
        bn_init_scale: initial weight of the output BN (1e-6 in the reference code).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A: torch.Tensor,
        adaptive: bool = True,
        coff_embedding: int = 4,
        bn_init_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        A = torch.as_tensor(A, dtype=torch.float32)
        self.num_subsets, num_nodes, _ = A.shape
        self.in_channels, self.out_channels = in_channels, out_channels
        self.inter_channels = max(1, out_channels // coff_embedding)
        self.adaptive = adaptive
        self.register_buffer("A", A.clone())
        k = self.num_subsets
        if adaptive:
            self.B = nn.Parameter(torch.full((k, num_nodes, num_nodes), 1e-6))
            self.theta = nn.ModuleList(
                nn.Conv2d(in_channels, self.inter_channels, 1) for _ in range(k)
            )
            self.phi = nn.ModuleList(
                nn.Conv2d(in_channels, self.inter_channels, 1) for _ in range(k)
            )
        self.W = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1) for _ in range(k))
        if in_channels != out_channels:
            self.down: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels)
            )
        else:
            self.down = nn.Identity()
        self.bn = nn.BatchNorm2d(out_channels)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                conv_init(m)
            elif isinstance(m, nn.BatchNorm2d):
                bn_init(m, 1.0)
        bn_init(self.bn, bn_init_scale)
        for conv in self.W:
            conv_branch_init(conv, k)

    @staticmethod
    def _stacked(convs: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """Apply K 1×1 convs at once: (N, C, T, V) -> (N, K, C', T, V)."""
        w = torch.cat([c.weight for c in convs], dim=0)
        b = torch.cat([c.bias for c in convs], dim=0)
        y = F.conv2d(x, w, b)
        n, _, t, v = y.shape
        return y.view(n, len(convs), -1, t, v)

    def graph(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample adjacency ``A_k + B_k + C_k``: (N, C, T, V) -> (N, K, V, V)
        (or the fixed (1, K, V, V) when not adaptive)."""
        if not self.adaptive:
            return self.A.unsqueeze(0)
        th = self._stacked(self.theta, x)  # (N, K, Ce, T, V)
        ph = self._stacked(self.phi, x)
        n, k, ce, t, v = th.shape
        th = th.reshape(n, k, ce * t, v)
        ph = ph.reshape(n, k, ce * t, v)
        c = torch.softmax(th.transpose(-1, -2) @ ph / (ce * t), dim=-2)  # (N, K, V, V)
        return c + (self.A + self.B).unsqueeze(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, v = x.shape
        adj = self.graph(x)  # (N|1, K, V, V)
        z = x.reshape(n, 1, c * t, v) @ adj  # (N, K, C·T, V)
        z = z.reshape(n, self.num_subsets * c, t, v)
        w = torch.cat([conv.weight for conv in self.W], dim=1)  # (out, K·C, 1, 1)
        b = torch.stack([conv.bias for conv in self.W]).sum(0)
        y = self.bn(F.conv2d(z, w, b))
        return F.relu(y + self.down(x))


class AGCNUnit(nn.Module):
    """Graph conv -> temporal conv -> dropout -> + residual -> ReLU:
    (N, C_in, T, V) -> (N, C_out, ⌊(T - 1) / stride⌋ + 1, V)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A: torch.Tensor,
        stride: int = 1,
        residual: bool = True,
        temporal_kernel: int = 9,
        adaptive: bool = True,
        dropout: float = 0.0,
        coff_embedding: int = 4,
        gcn_bn_init: float = 1e-6,
    ) -> None:
        super().__init__()
        self.gcn = AdaptiveGraphConv(
            in_channels, out_channels, A, adaptive, coff_embedding, gcn_bn_init
        )
        self.tcn = TemporalConv(out_channels, out_channels, temporal_kernel, stride)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.has_residual = residual
        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = TemporalConv(in_channels, out_channels, kernel_size=1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(self.tcn(self.gcn(x)))
        if self.residual is not None:
            y = y + self.residual(x)
        return F.relu(y)


class AGCN(FinetuneMixin, nn.Module):
    """2s-AGCN encoder for one stream.

    Args:
        layout: joint layout name or ``JointLayout`` (V joints; its ``Graph`` gives A).
        in_channels: C, 3 for (x, y, score), 2 for (x, y).
        num_persons: M (the data BN has M·V·C channels).
        base_channels: width of the first units (64 in the paper; 16 is a CPU-sized model).
        temporal_kernel: odd temporal kernel of the TCNs (9).
        adaptive: use the learned ``B_k`` and data-dependent ``C_k`` (False: fixed A only).
        dropout: dropout after each unit's temporal conv, before the residual (0 = paper).
        channel_multipliers: per-unit width = ``base_channels × multiplier``.
        strides: per-unit temporal stride (same length as ``channel_multipliers``).
        num_units: keep only the first ``num_units`` units (None: all).
        coff_embedding: embedding width ``C_e = out // coff_embedding`` (4).
        gcn_bn_init: initial weight of each graph conv's output BN (1e-6 as the reference).
        finetune: ``"full"`` (default), ``"frozen"`` or ``"partial"``
            (``migalab.models.finetune``) over the blocks ``[data_bn, *units]``; frozen parts
            stay in eval mode (the data BN keeps its statistics, dropout is off).
        trainable_blocks: with ``finetune="partial"``, how many of the last blocks train
            (2: the last two units; 11 = every block).
        init: a migalab checkpoint (or saved state dict) whose weights initialise this encoder
            when a fit starts fresh (:func:`migalab.models.finetune.load_initial_weights`);
            None: none.

    Attributes:
        out_channels: C_out, the width of the last unit (256 by default).
        num_nodes: V.
        spatial_positions: V (the range of the tokens' ``space`` index).

    Forward:
        x: (N, C, T, V, M) float.
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens (N, T'·V, C_out)
        — the last unit's features averaged over the M persons, ordered (t', v), with ``T' = T``
        divided by the product of the strides (rounded up at each stride: T=32 -> 16 -> 8);
        ``time`` = (t' + 0.5) / T', ``space`` = joint v; pooled (N, C_out) = the mean of the
        features over M, T' and V (as the paper's global pooling; zero-padded persons are
        included).
    """

    def __init__(
        self,
        layout: str | JointLayout = "imigue22",
        in_channels: int = 3,
        num_persons: int = 1,
        base_channels: int = 64,
        temporal_kernel: int = 9,
        adaptive: bool = True,
        dropout: float = 0.0,
        channel_multipliers: Sequence[int] = DEFAULT_CHANNEL_MULTIPLIERS,
        strides: Sequence[int] = DEFAULT_STRIDES,
        num_units: int | None = None,
        coff_embedding: int = 4,
        gcn_bn_init: float = 1e-6,
        graph_strategy: str = "spatial",
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self.init_checkpoint = init
        mults, strides = list(channel_multipliers), list(strides)
        if len(mults) != len(strides):
            raise ValueError(
                f"channel_multipliers ({len(mults)}) and strides ({len(strides)}) differ in length"
            )
        if num_units is not None:
            if not 1 <= num_units <= len(mults):
                raise ValueError(f"num_units must be in [1, {len(mults)}], got {num_units}")
            mults, strides = mults[:num_units], strides[:num_units]
        if not mults:
            raise ValueError("AGCN needs at least one unit")
        self.graph = Graph(layout, graph_strategy)
        A = torch.from_numpy(self.graph.A)
        self.num_nodes = self.spatial_positions = self.graph.num_nodes
        self.in_channels, self.num_persons = in_channels, num_persons
        self.strides = tuple(int(s) for s in strides)
        widths = [int(base_channels * m) for m in mults]
        self.out_channels = widths[-1]

        self.data_bn = nn.BatchNorm1d(num_persons * self.num_nodes * in_channels)
        bn_init(self.data_bn, 1.0)
        units = []
        c_in = in_channels
        for i, (c_out, s) in enumerate(zip(widths, self.strides, strict=True)):
            units.append(
                AGCNUnit(
                    c_in,
                    c_out,
                    A,
                    stride=s,
                    residual=i > 0,
                    temporal_kernel=temporal_kernel,
                    adaptive=adaptive,
                    dropout=dropout,
                    coff_embedding=coff_embedding,
                    gcn_bn_init=gcn_bn_init,
                )
            )
            c_in = c_out
        self.units = nn.ModuleList(units)
        self.configure_finetune(finetune, [self.data_bn, *self.units], trainable_blocks)

    def output_frames(self, num_frames: int) -> int:
        """T' for an input of T = ``num_frames`` frames."""
        t = num_frames
        for s in self.strides:
            t = (t - 1) // s + 1
        return t

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        if x.dim() != 5:
            raise ValueError(f"AGCN expects (N, C, T, V, M), got shape {tuple(x.shape)}")
        n, c, t, v, m = x.shape
        if (c, v, m) != (self.in_channels, self.num_nodes, self.num_persons):
            raise ValueError(
                f"AGCN built for C={self.in_channels}, V={self.num_nodes}, M={self.num_persons}; "
                f"got input (N, C, T, V, M) = {tuple(x.shape)}"
            )
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)  # (N, M·V·C, T)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for unit in self.units:
            x = unit(x)
        _, c_out, t_out, _ = x.shape
        per_person = x.view(n, m, c_out, t_out, v)
        pooled = per_person.mean(dim=(1, 3, 4))
        tokens = per_person.mean(dim=1).permute(0, 2, 3, 1).reshape(n, t_out * v, c_out)
        time, space = grid_index(t_out, v, x.device)
        return EncoderOutput(tokens, pooled, time, space)
