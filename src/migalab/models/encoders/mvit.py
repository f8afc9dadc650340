"""MViTv2 video encoder (Li et al., "MViTv2: Improved Multiscale Vision Transformers for
Classification and Detection", CVPR 2022) on torchvision's implementation
(``torchvision.models.video.mvit``): the same ``MViT`` class, blocks and init; only the
classification head is dropped and the forward returns the token sequence.

Architecture (preset ``"s"`` = torchvision's ``mvit_v2_s``, block setting read from its builder):

* patch embedding ``conv_proj``: Conv3d 3 -> C_0, kernel (3, 7, 7), stride (2, 4, 4), padding
  (1, 3, 3): (B, 3, T, H, W) -> T/2 × H/4 × W/4 tokens; ``pos_encoding`` prepends a learned class
  token (MViTv2 uses decomposed relative position embeddings inside attention, no absolute ones);
* 4 stages of ``MultiscaleBlock`` (depths 1, 2, 11, 2; widths 96, 192, 384, 768; heads 1, 2, 4,
  8 for "s"); the first block of stages 2-4 pools the queries with stride (1, 2, 2) and widens
  the channels (``proj_after_attn``); keys/values are pooled with an adaptive stride (1, 8, 8),
  (1, 4, 4), (1, 2, 2), (1, 1, 1) so their grid stays the same in every stage; all pooling
  kernels are 3×3×3 depthwise convs + LayerNorm; residual pooling; stochastic depth rising
  linearly from 0 (first block) to ``drop_path`` (last);
* the final LayerNorm ``norm``; torchvision's head (dropout + linear on the class token) is not
  built into the encoder.

Module names equal torchvision's (``conv_proj``, ``pos_encoding.class_token``,
``blocks.3.attn.rel_pos_h``, ``norm``), so torchvision's Kinetics-400 checkpoint and any
torchvision-format state dict load directly (its ``head.*`` keys are ignored).

Relative-position tables depend on the configured input size: ``rel_pos_t`` has ``2·T/2 - 1``
rows, ``rel_pos_h``/``rel_pos_w`` ``2·max(q, kv grid side) - 1``. Loading weights trained at
another size (Kinetics: 16×224²) resizes them by 1-D linear interpolation along their length,
as mmaction2 (``resize_decomposed_rel_pos``) and torchvision (``_interpolate``) do at run time.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.video import MViT, MViT_V2_S_Weights, mvit_v2_s
from torchvision.models.video.mvit import MSBlockConfig

from migalab.models.encoders.conv3d_common import clip_size
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.finetune import FinetuneMixin
from migalab.utils.checkpoints import load_checkpoint

__all__ = [
    "MVIT_PRESETS",
    "MViTEncoder",
    "interpolate_rel_pos",
    "stage_block_setting",
    "torchvision_mvit_v2_s_block_setting",
]

#: Per-stage presets: block counts, widths, heads, first kv-pooling stride and default clip size.
MVIT_PRESETS: dict[str, dict[str, Any]] = {
    # torchvision mvit_v2_s (34.5 M parameters with its 400-class head)
    "s": {
        "depths": (1, 2, 11, 2),
        "dims": (96, 192, 384, 768),
        "num_heads": (1, 2, 4, 8),
        "kv_stride": 8,
        "temporal_size": 16,
        "spatial_size": (224, 224),
    },
    # CPU-sized: same four-stage pooling structure and head width (48) per head, 5 blocks;
    # kv stride 4 at 64² keeps a 4×4 key/value grid (7×7 for "s" at 224²)
    "xs": {
        "depths": (1, 1, 2, 1),
        "dims": (48, 96, 192, 384),
        "num_heads": (1, 2, 4, 8),
        "kv_stride": 4,
        "temporal_size": 8,
        "spatial_size": (64, 64),
    },
}

#: torchvision ``mvit_v2_s``'s MViTv2 switches (passed to ``MViT`` for every preset).
MVITV2_FLAGS: dict[str, bool] = {
    "residual_pool": True,
    "residual_with_cls_embed": False,
    "rel_pos_embed": True,
    "proj_after_attn": True,
}

_REL_POS_NAMES = ("rel_pos_h", "rel_pos_w", "rel_pos_t")
_STRIP_PREFIXES = ("module.", "backbone.")
_KINETICS_SIZE = (16, 224, 224)


def torchvision_mvit_v2_s_block_setting() -> list[MSBlockConfig]:
    """The 16 ``MSBlockConfig`` of torchvision's ``mvit_v2_s``, read from its builder.

    ``mvit_v2_s`` forwards ``block=`` to ``MViT``; a recording factory returns ``nn.Identity``
    instead of building each block, so this costs only the stem and head (milliseconds).
    """
    recorded: list[MSBlockConfig] = []

    def record(*, cnf: MSBlockConfig, **_: Any) -> nn.Module:
        recorded.append(copy.deepcopy(cnf))
        return nn.Identity()

    mvit_v2_s(block=record)
    return recorded


def stage_block_setting(
    depths: Sequence[int],
    dims: Sequence[int],
    num_heads: Sequence[int],
    kv_stride: int = 8,
    kernel: int = 3,
) -> list[MSBlockConfig]:
    """MViTv2 block setting from per-stage depths / widths / heads (torchvision's layout).

    The first block of every stage after the first pools the queries with stride (1, 2, 2) and
    maps the previous width to the stage's; the key/value stride starts at
    ``(1, kv_stride, kv_stride)`` and halves (down to 1) at each stage. With depths (1, 2, 11, 2),
    dims (96, 192, 384, 768), heads (1, 2, 4, 8) and ``kv_stride`` 8 this is exactly
    ``mvit_v2_s``'s setting.
    """
    depths, dims, num_heads = list(depths), list(dims), list(num_heads)
    if not (len(depths) == len(dims) == len(num_heads)) or not depths:
        raise ValueError(
            f"depths, dims and num_heads need one entry per stage, got {depths}, {dims}, "
            f"{num_heads}"
        )
    if any(d < 1 for d in depths) or kv_stride < 1 or kernel < 1:
        raise ValueError(
            f"depths, kv_stride and kernel must be >= 1, got {depths}, {kv_stride}, {kernel}"
        )
    for dim, heads in zip(dims, num_heads, strict=True):
        if heads < 1 or dim % heads:
            raise ValueError(f"stage width {dim} is not divisible by its {heads} heads")
    setting: list[MSBlockConfig] = []
    kv = kv_stride
    for s, (depth, dim, heads) in enumerate(zip(depths, dims, num_heads, strict=True)):
        if s > 0:
            kv = max(kv // 2, 1)
        for j in range(depth):
            down = s > 0 and j == 0
            setting.append(
                MSBlockConfig(
                    num_heads=heads,
                    input_channels=dims[s - 1] if down else dim,
                    output_channels=dim,
                    kernel_q=[kernel] * 3,
                    kernel_kv=[kernel] * 3,
                    stride_q=[1, 2, 2] if down else [1, 1, 1],
                    stride_kv=[1, kv, kv],
                )
            )
    return setting


def interpolate_rel_pos(table: torch.Tensor, length: int) -> torch.Tensor:
    """Resize a relative-position table (L, C) -> (length, C) by 1-D linear interpolation
    along L (``align_corners=False``, as mmaction2 and torchvision)."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.t().unsqueeze(0).float(), size=length, mode="linear")
    return resized.squeeze(0).t().to(table.dtype).contiguous()


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def _format_keys(keys: Sequence[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


class MViTEncoder(FinetuneMixin, nn.Module):
    """MViTv2 encoder returning the final-norm token sequence and the class token.

    Args:
        preset: ``"s"`` (torchvision ``mvit_v2_s``) or ``"xs"`` (CPU-sized, see
            :data:`MVIT_PRESETS`).
        temporal_size: input frames T (default: the preset's, 16 / 8); T must be even.
        spatial_size: input (H, W) or one int for square (default: 224² / 64²); H and W must
            be multiples of 4·2^(stages-1) (32 for four stages) so every pooling tiles exactly.
        depths: override the preset's blocks per stage (:func:`stage_block_setting`).
        dims: override the preset's stage widths.
        num_heads: override the preset's heads per stage.
        kv_stride: override the preset's first key/value pooling stride.
        pretrained: None (random init, torchvision's), ``"kinetics400"`` (torchvision
            ``MViT_V2_S_Weights.KINETICS400_V1``, preset "s" only) or the path of a
            torchvision-format state dict (see :meth:`load_pretrained`). Loaded when a fit
            starts fresh (:meth:`load_initial_weights`), not at construction.
        drop_path: stochastic depth rate of the last block (torchvision's
            ``stochastic_depth_prob``; 0.2 as ``mvit_v2_s``), linear from 0 at the first.
        attention_dropout: dropout after the attention projection (0, as torchvision).
        grad_checkpointing: in training, recompute each block in the backward pass
            (``torch.utils.checkpoint``, non-reentrant): less activation memory, ~1/3 more
            compute, same outputs and gradients.
        finetune: ``"full"``, ``"frozen"`` or ``"partial"`` (``migalab.models.finetune``) over
            the blocks ``[stem (conv_proj + pos_encoding), *blocks]``; with ``"partial"`` the
            final ``norm`` always trains. Frozen parts stay in eval mode (no drop path).
        trainable_blocks: with ``"partial"``: how many of the last of those blocks train.
        init: a migalab checkpoint (or saved state dict) whose weights initialise this encoder
            when a fit starts fresh, after ``pretrained``
            (:func:`migalab.models.finetune.load_initial_weights`); None: none.

    Attributes:
        out_channels: C, the last stage width (768 for "s", 384 for "xs").
        temporal_size, spatial_size: the configured input size (T, (H, W)).
        grid: the token grid (T', H', W') of the configured input (8, 7, 7 for "s" at 16×224²).
        num_tokens: ``1 + T'·H'·W'`` (393 for "s" at 16×224²).
        spatial_positions: ``H'·W'`` (the range of the tokens' ``space`` index).
        block_setting: the per-block ``MSBlockConfig`` list.

    Forward:
        x: (B, 3, T, H, W) float, normalised, at the configured size.
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens
        (B, 1 + T'·H'·W', C) after the final LayerNorm, class token first (time and space -1)
        then the grid in (t', h', w') order (time ``(t' + 0.5) / T'``, space ``h'·W' + w'``);
        pooled (B, C) = ``tokens[:, 0]`` (the class token, what torchvision's head classifies).
    """

    def __init__(
        self,
        preset: str = "s",
        temporal_size: int | None = None,
        spatial_size: int | Sequence[int] | None = None,
        depths: Sequence[int] | None = None,
        dims: Sequence[int] | None = None,
        num_heads: Sequence[int] | None = None,
        kv_stride: int | None = None,
        pretrained: str | None = None,
        drop_path: float = 0.2,
        attention_dropout: float = 0.0,
        grad_checkpointing: bool = False,
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
    ) -> None:
        super().__init__()
        self.init_checkpoint = init
        if preset not in MVIT_PRESETS:
            raise ValueError(f"unknown MViT preset {preset!r}; choose one of {list(MVIT_PRESETS)}")
        cfg = MVIT_PRESETS[preset]
        stage_cfg = {
            "depths": tuple(int(v) for v in (cfg["depths"] if depths is None else depths)),
            "dims": tuple(int(v) for v in (cfg["dims"] if dims is None else dims)),
            "num_heads": tuple(
                int(v) for v in (cfg["num_heads"] if num_heads is None else num_heads)
            ),
            "kv_stride": int(cfg["kv_stride"] if kv_stride is None else kv_stride),
        }
        self.preset = preset
        # exactly torchvision's mvit_v2_s (the only architecture with Kinetics weights)
        self.is_torchvision_s = preset == "s" and all(stage_cfg[k] == cfg[k] for k in stage_cfg)
        if self.is_torchvision_s:
            block_setting = torchvision_mvit_v2_s_block_setting()
        else:
            block_setting = stage_block_setting(**stage_cfg)
        t, hw = clip_size(
            temporal_size, spatial_size, cfg["temporal_size"], cfg["spatial_size"], "MViT"
        )
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")

        model = MViT(
            spatial_size=hw,  # type: ignore[arg-type]
            temporal_size=t,
            block_setting=block_setting,
            stochastic_depth_prob=drop_path,
            attention_dropout=attention_dropout,
            **MVITV2_FLAGS,
        )
        # take torchvision's modules (same names as its state dict); drop the head
        self.conv_proj: nn.Conv3d = model.conv_proj
        self.pos_encoding = model.pos_encoding
        self.blocks = model.blocks
        self.norm = model.norm
        del model

        self.block_setting = block_setting
        self.temporal_size, self.spatial_size = t, hw
        self.out_channels = block_setting[-1].output_channels
        self.grad_checkpointing = bool(grad_checkpointing)
        self._check_tiling()
        self.grid = self.token_grid(t, *hw)
        self.num_tokens = 1 + math.prod(self.grid)
        self.spatial_positions = self.grid[1] * self.grid[2]

        if pretrained == "kinetics400" and preset != "s":
            raise ValueError(
                f"pretrained='kinetics400' exists only for preset 's' (MViTv2-S), not {preset!r}"
            )
        #: weights for a fresh fit (:meth:`load_initial_weights`); never read at construction,
        #: so a checkpoint naming them is evaluated or resumed without the file
        self.pretrained = pretrained
        stem = nn.ModuleList([self.conv_proj, self.pos_encoding])  # a group, not registered
        self.configure_finetune(finetune, [stem, *self.blocks], trainable_blocks, [self.norm])

    # ------------------------------------------------------------------ geometry
    def _stage_sizes(self, t: int, h: int, w: int) -> tuple[list[list[int]], list[list[int]]]:
        """Per block input: the real (T, H, W) token grids after the patch embedding and each
        query pooling, and the ``size // stride`` grids torchvision sizes its tables with."""
        conv = self.conv_proj
        real = [
            _conv_out(n, k, s, p)
            for n, k, s, p in zip(
                (t, h, w), conv.kernel_size, conv.stride, conv.padding, strict=True
            )
        ]
        floor = [n // s for n, s in zip((t, h, w), conv.stride, strict=True)]
        reals, floors = [real], [floor]
        for cnf in self.block_setting:
            if math.prod(cnf.kernel_q) > 1 or math.prod(cnf.stride_q) > 1:  # torchvision's pool_q
                real = [
                    _conv_out(n, k, s, k // 2)
                    for n, k, s in zip(real, cnf.kernel_q, cnf.stride_q, strict=True)
                ]
            if cnf.stride_q:
                floor = [n // s for n, s in zip(floor, cnf.stride_q, strict=True)]
            reals.append(real)
            floors.append(floor)
        return reals, floors

    def token_grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """(T', H', W') of the last stage for a (t, h, w) input (patch embedding, then every
        query pooling); (8, 7, 7) for preset "s" at 16×224²."""
        grid = self._stage_sizes(t, h, w)[0][-1]
        return grid[0], grid[1], grid[2]

    def _check_tiling(self) -> None:
        """Require the real token grids to equal torchvision's ``size // stride`` at every
        block (its rel-pos tables are sized from the latter)."""
        t, (h, w) = self.temporal_size, self.spatial_size
        reals, floors = self._stage_sizes(t, h, w)
        if reals != floors or min(min(r) for r in reals) < 1:
            spatial = self.conv_proj.stride[1] * math.prod(
                cnf.stride_q[1] for cnf in self.block_setting if cnf.stride_q
            )
            raise ValueError(
                f"MViT input size T={t}, (H, W)={(h, w)} does not tile: T must be a multiple of "
                f"{self.conv_proj.stride[0]} and H, W multiples of {spatial}"
            )

    # ------------------------------------------------------------------ weights
    def load_initial_weights(self) -> list[str]:
        """Load ``pretrained`` (if any); called by :func:`migalab.models.finetune.
        load_initial_weights` when a fit starts fresh. Returns what was loaded."""
        if self.pretrained is None:
            return []
        self.load_pretrained(self.pretrained)
        return [f"MViT <- {self.pretrained}"]

    def load_pretrained(self, source: str) -> None:
        """Load torchvision-format weights.

        ``source``: ``"kinetics400"`` (torchvision's ``MViT_V2_S_Weights.KINETICS400_V1``,
        fetched through the torch hub cache; preset "s" only) or a file holding a state dict,
        possibly wrapped as ``{"state_dict": ...}`` / ``{"model": ...}`` with ``module.`` /
        ``backbone.`` key prefixes. ``head.*`` keys are ignored; relative-position tables of
        another length are linearly interpolated; every other key must match in name and shape.

        Raises:
            ValueError: Kinetics weights for another architecture, or keys that do not match
                (the message lists missing / unexpected / mis-shaped keys and names the source).
            FileNotFoundError: no such file.
            RuntimeError: the Kinetics download failed (offline machine).
        """
        if source == "kinetics400":
            if not self.is_torchvision_s:
                raise ValueError(
                    f"Kinetics-400 weights exist only for preset 's' with its default depths, "
                    f"dims, heads and kv_stride (this encoder: preset {self.preset!r})"
                )
            weights = MViT_V2_S_Weights.KINETICS400_V1
            try:
                state = weights.get_state_dict(progress=True, check_hash=True)
            except Exception as err:  # no network, proxy, bad hash ...
                fname = os.path.basename(weights.url)
                hub_dir = os.path.join(torch.hub.get_dir(), "checkpoints")
                raise RuntimeError(
                    f"could not fetch the MViTv2-S Kinetics-400 weights from {weights.url} "
                    f"({type(err).__name__}: {err}). Download that file on a machine with "
                    f"network access and either put it at {os.path.join(hub_dir, fname)} or "
                    f"pass its path as pretrained=/path/to/{fname}"
                ) from err
            self._load_torchvision_state(state, f"torchvision {weights}")
            return
        if not os.path.isfile(source):
            raise FileNotFoundError(
                f"MViT pretrained weights: no file {source!r} (expected None, 'kinetics400' or "
                f"the path of a torchvision-format state dict)"
            )
        obj = load_checkpoint(source)  # weights_only: a downloaded file runs no code
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
            if not key.startswith("head."):
                state[key] = value

        own = self.state_dict()
        mismatched = []
        for key, value in state.items():
            if key not in own or own[key].shape == value.shape:
                continue
            target = own[key].shape
            if key.rsplit(".", 1)[-1] in _REL_POS_NAMES and value.shape[1:] == target[1:]:
                state[key] = interpolate_rel_pos(value, target[0])
            else:
                mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target)}")
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
                f"{source} does not match this MViT encoder (preset {self.preset!r}, "
                f"{len(self.blocks)} blocks): " + "; ".join(parts)
            )
        self.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        mask_token: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Encode a clip; ``token_mask`` (B, T/2·H/4·W/4) bool, with ``mask_token`` (C_0,),
        replaces the masked patch embeddings before the class token and the blocks (MaskFeat
        pretraining, :mod:`migalab.models.pretrain.maskfeat`)."""
        expected = (3, self.temporal_size, *self.spatial_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"MViTEncoder built for (B, 3, T, H, W) = (B, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)} (set temporal_size / spatial_size to the clip size)"
            )
        # torchvision MViT.forward without the head
        x = self.conv_proj(x)  # (B, C0, T/2, H/4, W/4)
        x = x.flatten(2).transpose(1, 2)  # (B, T'H'W', C0)
        if token_mask is not None:
            if mask_token is None or token_mask.shape != x.shape[:2]:
                raise ValueError(
                    f"token_mask must be (B, {x.shape[1]}) with a mask_token, got "
                    f"{tuple(token_mask.shape)}"
                )
            x = torch.where(token_mask[..., None], mask_token.to(x.dtype), x)
        x = self.pos_encoding(x)  # (B, 1 + T'H'W', C0)
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        use_ckpt = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if use_ckpt:
                x, thw = checkpoint(block, x, thw, use_reentrant=False)
            else:
                x, thw = block(x, thw)
        tokens = self.norm(x)  # (B, 1 + T'H'W', C)
        t, h, w = self.grid
        time, space = grid_index(t, h * w, tokens.device, num_global=1)
        return EncoderOutput(tokens, tokens[:, 0], time, space)
