"""Pieces shared by the video encoders: the clip size an encoder is built for (X3D, ResNet3D,
MViT, FrameStack2D), and the usual 3D conv / BatchNorm initialisation (X3D, ResNet3D, PoseC3D's
SlowOnly)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def clip_size(
    temporal_size: int | None,
    spatial_size: int | Sequence[int] | None,
    default_t: int,
    default_hw: Sequence[int],
    name: str,
) -> tuple[int, tuple[int, int]]:
    """``(T, (H, W))`` from an encoder's ``temporal_size`` / ``spatial_size`` arguments (None:
    the preset's ``default_t`` / ``default_hw``; an int side means a square); ValueError naming
    the encoder ``name`` when a size is malformed or not positive."""
    t = int(default_t if temporal_size is None else temporal_size)
    if spatial_size is None:
        spatial_size = default_hw
    if isinstance(spatial_size, int):
        hw = (int(spatial_size), int(spatial_size))
    else:
        hw = tuple(int(s) for s in spatial_size)
        if len(hw) != 2:
            raise ValueError(f"spatial_size must be an int or (H, W), got {spatial_size}")
    if t < 1 or min(hw) < 1:
        raise ValueError(f"{name} clip size T={t}, (H, W)={hw} must be positive")
    return t, (hw[0], hw[1])


def init_conv3d_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, relu) weights and zero biases for every ``Conv3d`` of
    ``module``, weight 1 / bias 0 for every ``BatchNorm3d`` (torchvision's VideoResNet and
    pyskl's init; the callers then zero their blocks' last BN)."""
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
