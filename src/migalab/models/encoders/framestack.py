"""Frame-stack RGB encoder: a timm 2D CNN over a clip's frames stacked as channels (the "early
fusion" video network of Karpathy et al., "Large-scale Video Classification with Convolutional
Neural Networks", CVPR 2014), the CPU variants' RGB / context stream.

Why it exists: on the synthetic interviews (``data=synthetic_sight``, 4 × 96² person crops,
25 gesture classes, 1,405 training clips) no from-scratch 3D network learned within a CPU
budget (MViT xs and ResNet3D xs stay at the majority class for 10 epochs; X3D xs is too slow on
CPU), while the same clips with their frames stacked as the channels of a small 2D CNN reach
~0.5 validation top-1 in 5 epochs. The first convolution sees every frame at once, so the
motion of a hand (a difference between frames) is a first-layer feature, and 2D convolutions run
several times faster than 3D ones on CPU. Measured with ``scripts/`` probes in the issue 29 note.

The backbone is any timm model (``backbone``, default ``resnet10t``: 4.9 M parameters), built
with ``in_chans = 3 · T`` and no classifier; its last feature map (B, C, H', W') is the grid.
timm is used instead of a hand-written CNN: its models are maintained, their ImageNet weights
(``pretrained``: a local file or timm's download) are adapted to ``3 · T`` input channels by
timm's own :func:`~timm.models.adapt_input_conv` (the RGB filters repeated over the frames and
rescaled), and any timm CNN can replace the default.

Input (B, 3, T, H, W) with T = ``temporal_size`` (fixed: it sets the first layer's channels).
Output: :class:`~migalab.models.encoders.output.EncoderOutput` with tokens (B, H'·W', C) (one
temporal position: every token covers the whole clip, time 0.5), pooled (B, C) = their mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from migalab.models.encoders.conv3d_common import clip_size
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.finetune import FinetuneMixin
from migalab.utils.checkpoints import load_checkpoint

__all__ = ["FrameStack2D"]

#: ``pretrained`` value that asks timm for its default ImageNet weights (download)
TIMM_DOWNLOAD = "imagenet"


class FrameStack2D(FinetuneMixin, nn.Module):
    """A timm 2D CNN over the T frames of a clip stacked as 3·T input channels.

    Args:
        backbone: timm model name (a CNN with ``forward_features`` returning (B, C, H', W'),
            e.g. ``resnet10t``, ``resnet18``, ``efficientnet_b0``).
        temporal_size: T, frames per clip (fixed by the first convolution).
        spatial_size: (H, W) of the input (for the token grid; default 96²).
        in_channels: channels per frame (3).
        pretrained: None (random init) | ``"imagenet"`` (timm's download, where the machine
            allows) | path to a local timm state dict of the same backbone with 3 input
            channels (``.pth`` / ``.bin``, read by :func:`~migalab.utils.checkpoints.
            load_checkpoint`: weights only; or ``.safetensors``): its first convolution is adapted to 3·T channels and its classifier
            dropped. Loaded by :meth:`load_initial_weights` when a fit starts fresh.
        drop_path: stochastic depth rate of the backbone (where timm supports it).
        finetune: ``full`` | ``frozen`` | ``partial`` (only the last ``trainable_blocks`` of the
            backbone's top-level parameterised children train).
        trainable_blocks: see ``finetune``.
        init: a migalab checkpoint whose encoder initialises this one (after ``pretrained``).
    """

    def __init__(
        self,
        backbone: str = "resnet10t",
        temporal_size: int | None = None,
        spatial_size: int | Sequence[int] | None = None,
        in_channels: int = 3,
        pretrained: str | None = None,
        drop_path: float = 0.0,
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self.init_checkpoint = init
        if in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        t, hw = clip_size(temporal_size, spatial_size, 4, (96, 96), "FrameStack2D")
        self.temporal_size, self.spatial_size = t, hw
        self.in_channels = int(in_channels)
        self.backbone_name = str(backbone)
        self.pretrained = pretrained
        kwargs: dict[str, Any] = {"in_chans": self.in_channels * t, "num_classes": 0}
        if drop_path:
            kwargs["drop_path_rate"] = float(drop_path)
        try:
            self.backbone = timm.create_model(self.backbone_name, pretrained=False, **kwargs)
        except RuntimeError as err:  # timm: "Unknown model (...)"
            raise ValueError(f"FrameStack2D: timm has no model {backbone!r} ({err})") from err
        self.out_channels = int(self.backbone.num_features)
        with torch.no_grad():
            probe = torch.zeros(1, self.in_channels * t, *hw)
            was_training = self.backbone.training
            self.backbone.eval()
            self.grid = tuple(self.backbone.forward_features(probe).shape[-2:])
            self.backbone.train(was_training)
        self.num_tokens = self.grid[0] * self.grid[1]
        self.spatial_positions = self.num_tokens
        blocks = [m for m in self.backbone.children() if any(True for _ in m.parameters())]
        self.configure_finetune(finetune, blocks, trainable_blocks)

    # ------------------------------------------------------------------ weights
    def load_initial_weights(self) -> list[str]:
        """Load ``pretrained`` (if set): timm's download or a local file of the 3-channel
        backbone, its first convolution adapted to 3·T channels. Returns what was loaded."""
        if not self.pretrained:
            return []
        cfg = self.backbone.pretrained_cfg
        if str(self.pretrained) == TIMM_DOWNLOAD:
            ref = timm.create_model(self.backbone_name, pretrained=True, num_classes=0)
            state = ref.state_dict()
        else:
            path = Path(self.pretrained).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"FrameStack2D pretrained weights: no file {path}")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = load_checkpoint(path)  # weights_only: a file runs no code
            state = state.get("state_dict", state) if isinstance(state, dict) else state
        classifier = cfg.get("classifier")
        heads = [classifier] if isinstance(classifier, str) else list(classifier or [])
        state = {k: v for k, v in state.items() if not any(k.startswith(h + ".") for h in heads)}
        first = cfg.get("first_conv")
        for name in [first] if isinstance(first, str) else list(first or []):
            key = f"{name}.weight"
            if key in state and state[key].shape[1] != self.in_channels * self.temporal_size:
                state[key] = adapt_input_conv(self.in_channels * self.temporal_size, state[key])
        try:
            self.backbone.load_state_dict(state, strict=True)
        except RuntimeError as err:  # missing / unexpected keys, shape mismatches
            raise ValueError(
                f"{self.pretrained} does not match timm {self.backbone_name!r}: {err}"
            ) from err
        return [f"{self.backbone_name} weights from {self.pretrained}"]

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> EncoderOutput:
        """(B, C_in, T, H, W) -> EncoderOutput(tokens (B, H'·W', C), pooled (B, C), time (all
        0.5: one temporal position) / space (h'·W' + w'))."""
        expected = (self.in_channels, self.temporal_size)
        if x.dim() != 5 or tuple(x.shape[1:3]) != expected:
            raise ValueError(
                f"FrameStack2D expects (B, {self.in_channels}, {self.temporal_size}, H, W) "
                f"(temporal_size frames), got {tuple(x.shape)}"
            )
        # frame-major channels (t·3 + c): timm's adapt_input_conv repeats the RGB filters in
        # that order, so a still clip gives the 3-channel network's features
        fmap = self.backbone.forward_features(x.transpose(1, 2).flatten(1, 2))  # (B, C, H', W')
        _, _, hh, ww = fmap.shape
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, H'·W', C)
        time, space = grid_index(1, hh * ww, tokens.device)
        return EncoderOutput(tokens, tokens.mean(dim=1), time, space)
