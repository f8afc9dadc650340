"""SwinFace face encoder (Qin et al., "SwinFace: A Multi-task Transformer for Face Recognition,
Expression Recognition, Age Estimation and Attribute Estimation", IEEE TCSVT 2023) on timm's Swin
Transformer, as the face stream of the emotion track (System B: SwinFace + MViTv2-S, InterFusion).

Architecture (preset ``"t"`` = the released ``swin_t`` SwinFace model):

* **input** face crops (B, T, 3, 112, 112) or single images (B, 3, 112, 112), RGB, uint8 or
  float in [0, 255]; normalised as SwinFace does, ``(x / 255 - 0.5) / 0.5``;
* **backbone** timm ``SwinTransformer`` (``swin_tiny_patch4_window7_224`` with ``img_size=112``,
  ``patch_size=2``, ``window_size=7``: SwinFace's own ``SwinTransformer(img_size=112,
  patch_size=2)``; at 112² a 4-pixel patch would leave a 3.5² last grid). Stages at 56², 28², 14²,
  7² tokens, widths 96, 192, 384, 768, depths 2, 2, 6, 2, heads 3, 6, 12, 24; 27.5 M parameters;
* **multi-level features** (SwinFace's ``feature="all"``): the outputs of the three patch-merging
  layers (28²×192, 14²×384, 7²×768; timm's ``layers[s].downsample``, SwinFace's
  ``layers[s-1].downsample``) average-pooled to the last grid (7²), concatenated with the last
  stage's output (7²×768) -> (B·T, 2112, 7, 7);
* **Feature Attention Module** (one branch of SwinFace's FAM, ``fam_branch``): a split 3×3 conv
  (one conv per level, output widths proportional to the level widths: 47, 93, 186, 186 = 512),
  CBAM channel attention (a shared MLP C -> C/16 -> C on the average- and max-pooled map, sigmoid
  gate), ReLU, global max pooling and BatchNorm1d -> the 512-d embedding. SwinFace trains 11
  branches (one per task group: gender, age, expression, ...); branch 2 is the expression group,
  the default here;
* alternatively (``embedding="recognition"``) the face-recognition embedding: final LayerNorm,
  average pooling and SwinFace's ``feature`` head (Linear 768->768, BN, Linear 768->512, BN).

Released checkpoint (``checkpoint_step_79999_gpu_0.pt``): a dict of four state dicts,
``state_dict_backbone`` (the Swin backbone in the original Swin layout: patch merging at the end
of a stage; plus ``feature.*`` and an unused ``head.*``), ``state_dict_fam`` (``nets.0`` ...
``nets.10``), ``state_dict_tss`` and ``state_dict_om`` (task-specific subnets and output layers,
not used here). :func:`released_to_encoder_state` maps it onto this module;
:meth:`SwinFaceEncoder.load_released` loads it with a :class:`~migalab.models.finetune.
WeightsReport`. The encoder's ``pretrained`` option does that when a fit starts fresh.

Frozen mode and the embedding cache: with ``finetune="frozen"`` the embeddings of a crop depend
only on the weights and the crop, so :class:`migalab.models.embedding_cache.EmbeddingCache`
stores them on disk (``cache_dir``): :meth:`SwinFaceEncoder.forward` with ``keys`` looks them up
and computes only the misses; a datamodule may also fill the cache offline
(:meth:`SwinFaceEncoder.embed_cached`) and feed the embeddings (B, T, 512) instead of images.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from migalab.models.embedding_cache import EmbeddingCache, module_fingerprint
from migalab.models.encoders.output import EncoderOutput
from migalab.models.finetune import FinetuneMixin, WeightsReport
from migalab.utils.checkpoints import load_checkpoint

log = logging.getLogger(__name__)

__all__ = [
    "RELEASED_KEYS",
    "SWINFACE_PRESETS",
    "ChannelGate",
    "FeatureAttention",
    "SwinFaceEncoder",
    "released_to_encoder_state",
    "split_widths",
]

#: backbone presets: ``t`` = SwinFace's swin_t; ``xs`` = a CPU-sized reduction for tests and
#: quick runs (3 stages at 28², 14², 7², widths 32, 64, 128, 6 blocks; same 7² last grid)
SWINFACE_PRESETS: dict[str, dict[str, Any]] = {
    "t": {
        "patch_size": 2,
        "embed_dim": 96,
        "depths": (2, 2, 6, 2),
        "num_heads": (3, 6, 12, 24),
        "window_size": 7,
    },
    "xs": {
        "patch_size": 4,
        "embed_dim": 32,
        "depths": (2, 2, 2),
        "num_heads": (1, 2, 4),
        "window_size": 7,
    },
}

#: the state dicts of a released SwinFace checkpoint
RELEASED_KEYS = ("state_dict_backbone", "state_dict_fam", "state_dict_tss", "state_dict_om")
EMBEDDINGS = ("fam", "recognition")
POOLINGS = ("max", "avg")
#: buffers of the original Swin implementation that timm derives (not in its state dict)
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def split_widths(in_widths: Sequence[int], total: int) -> list[int]:
    """Output widths of the split conv: ``total`` shared in proportion to ``in_widths``, floors
    plus the remainder given to the largest fractional parts (SwinFace: 192, 384, 768, 768 ->
    47, 93, 186, 186 for 512)."""
    s = sum(in_widths)
    exact = [w * total / s for w in in_widths]
    out = [int(e) for e in exact]
    order = sorted(range(len(exact)), key=lambda i: exact[i] - out[i], reverse=True)
    for i in order[: total - sum(out)]:
        out[i] += 1
    if min(out) < 1:
        raise ValueError(f"embedding width {total} is too small for levels {list(in_widths)}")
    return out


class ChannelGate(nn.Module):
    """CBAM channel attention (Woo et al. 2018), as SwinFace's: a shared MLP
    ``C -> C / reduction -> C`` on the spatially average- and max-pooled map, summed, sigmoid,
    multiplied onto the map. ``mlp`` keeps CBAM's layout (``mlp.1``, ``mlp.3``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(att)[:, :, None, None]


class FeatureAttention(nn.Module):
    """One branch of SwinFace's Feature Attention Module over multi-level features.

    (N, sum(level_widths), h, w) -> (N, out_channels): split conv (one ``kernel_size`` conv per
    level, no bias, widths :func:`split_widths`), channel gate, ReLU, global ``pooling``,
    BatchNorm1d (eps 2e-5). Module names follow SwinFace's ``FeatureAttentionNet``
    (``conv.convs.<level>``, ``channel_attention``, ``norm``).
    """

    def __init__(
        self,
        level_widths: Sequence[int],
        out_channels: int = 512,
        kernel_size: int = 3,
        reduction: int = 16,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"fam pooling must be one of {POOLINGS}, got {pooling!r}")
        self.level_widths = [int(w) for w in level_widths]
        outs = split_widths(self.level_widths, out_channels)
        self.conv = nn.Module()
        self.conv.convs = nn.ModuleList(
            nn.Conv2d(i, o, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
            for i, o in zip(self.level_widths, outs, strict=True)
        )
        self.channel_attention = ChannelGate(out_channels, reduction)
        self.pool = nn.AdaptiveMaxPool2d(1) if pooling == "max" else nn.AdaptiveAvgPool2d(1)
        self.norm = nn.BatchNorm1d(out_channels, eps=2e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.level_widths, dim=1)
        x = torch.cat([conv(p) for conv, p in zip(self.conv.convs, parts, strict=True)], dim=1)
        x = F.relu(self.channel_attention(x))
        return self.norm(self.pool(x).flatten(1))


def _build_backbone(preset: dict[str, Any], image_size: int, drop_path: float) -> nn.Module:
    return timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        img_size=image_size,
        patch_size=preset["patch_size"],
        embed_dim=preset["embed_dim"],
        depths=tuple(preset["depths"]),
        num_heads=tuple(preset["num_heads"]),
        window_size=preset["window_size"],
        drop_path_rate=drop_path,
        num_classes=0,
    )


class SwinFaceEncoder(FinetuneMixin, nn.Module):
    """SwinFace per-frame face embeddings as a token sequence (one token per frame).

    Args:
        preset: ``"t"`` (SwinFace swin_t, the released model) or ``"xs"`` (CPU-sized), see
            :data:`SWINFACE_PRESETS`.
        image_size: crop side (112, SwinFace's); the last stage must be a whole grid.
        embedding_size: width of the embedding (512, SwinFace's; ``out_channels``).
        embedding: ``"fam"`` (the Feature Attention Module branch ``fam_branch`` over the
            multi-level features; default) or ``"recognition"`` (SwinFace's face-recognition
            embedding).
        fam_branch: which of the released FAM's 11 branches ``state_dict_fam`` initialises the
            FAM from (2: the expression / smiling task group; 0 gender, 1 age, ...).
        fam_kernel_size: the FAM's conv kernel (3).
        fam_reduction: the FAM's channel-gate reduction (16, CBAM's).
        fam_pooling: the FAM's pooling (``"max"``, SwinFace's).
        drop_path: stochastic depth of the last Swin block (0.1, SwinFace's default).
        pretrained: path of a released SwinFace checkpoint (``state_dict_backbone``,
            ``state_dict_fam``, ...), loaded when a fit starts fresh
            (:meth:`load_initial_weights`), not at construction; None: random init.
        finetune: ``"full"``, ``"frozen"`` or ``"partial"`` (``migalab.models.finetune``) over
            the blocks ``[patch_embed, *stages]``; with ``"partial"`` the embedding head (FAM or
            recognition head, and the final norm) always trains.
        trainable_blocks: with ``"partial"``: how many of the last stages train.
        init: a migalab checkpoint whose encoder initialises this one when a fit starts fresh,
            after ``pretrained`` (:func:`migalab.models.finetune.load_initial_weights`).
        cache_dir: a folder for the per-frame embedding cache
            (:class:`~migalab.models.embedding_cache.EmbeddingCache`); used by ``forward`` when
            ``keys`` are given and the encoder is frozen (no gradient can flow through a cached
            embedding). None: no cache.
        cache_dtype: ``"float16"`` (half the disk) or ``"float32"`` for the cached embeddings.

    Attributes:
        out_channels: ``embedding_size``.
        level_widths: widths of the multi-level features (192, 384, 768, 768 for "t").
        feature_grid: the last stage's grid side (7).

    Forward:
        x: (B, T, 3, H, W) face crops or (B, 3, H, W) single images (uint8 or float in
            [0, 255]); or precomputed embeddings (B, T, C) / (B, C) (e.g. from the cache; used
            as they are).
        visible: optional (B, T) bool, False where a frame has no face: such frames are not
            encoded, their tokens are 0 and they are left out of ``pooled``.
        keys: optional crop identities for the cache, B·T strings in (b, t) order, or B
            sequences of T strings (see :meth:`embed_cached`).
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens (B, T, C), one
        per frame (time ``(t + 0.5) / T``, space -1); pooled (B, C) = mean over visible frames
        (0 when none is visible); single images count as T = 1.
    """

    def __init__(
        self,
        preset: str = "t",
        image_size: int = 112,
        embedding_size: int = 512,
        embedding: str = "fam",
        fam_branch: int = 2,
        fam_kernel_size: int = 3,
        fam_reduction: int = 16,
        fam_pooling: str = "max",
        drop_path: float = 0.1,
        pretrained: str | None = None,
        finetune: str = "full",
        trainable_blocks: int = 0,
        init: str | None = None,
        cache_dir: str | None = None,
        cache_dtype: str = "float16",
    ) -> None:
        super().__init__()
        if preset not in SWINFACE_PRESETS:
            raise ValueError(
                f"unknown SwinFace preset {preset!r}; choose one of {list(SWINFACE_PRESETS)}"
            )
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
        cfg = SWINFACE_PRESETS[preset]
        stages = len(cfg["depths"])
        grid = image_size / cfg["patch_size"] / 2 ** (stages - 1)
        if grid != int(grid) or grid < 1:
            raise ValueError(
                f"image_size {image_size} does not tile preset {preset!r}: it must be a multiple "
                f"of {cfg['patch_size'] * 2 ** (stages - 1)}"
            )
        self.preset, self.image_size, self.embedding = preset, int(image_size), embedding
        self.fam_branch = int(fam_branch)
        self.feature_grid = int(grid)
        self.out_channels = int(embedding_size)
        self.init_checkpoint = init
        self.pretrained = pretrained

        self.backbone = _build_backbone(cfg, self.image_size, drop_path)
        dims = [int(cfg["embed_dim"] * 2**s) for s in range(stages)]
        self.level_widths = [*dims[1:], dims[-1]]
        if embedding == "fam":
            self.fam: nn.Module | None = FeatureAttention(
                self.level_widths, self.out_channels, fam_kernel_size, fam_reduction, fam_pooling
            )
            self.feature: nn.Module | None = None
            # the final norm feeds only the recognition head: no unused parameters (DDP)
            self.backbone.norm = nn.Identity()
        else:
            self.fam = None
            c = dims[-1]
            self.feature = nn.Sequential(
                nn.Linear(c, c, bias=False),
                nn.BatchNorm1d(c, eps=2e-5),
                nn.Linear(c, self.out_channels, bias=False),
                nn.BatchNorm1d(self.out_channels, eps=2e-5),
            )
        self._init_head()

        self.cache_dir = cache_dir
        self.cache_dtype = cache_dtype
        self._cache: EmbeddingCache | None = None

        head = [m for m in (self.fam, self.feature) if m is not None]
        if embedding == "recognition":
            head.append(self.backbone.norm)
        stem = self.backbone.patch_embed
        self.configure_finetune(finetune, [stem, *self.backbone.layers], trainable_blocks, head)

    def _init_head(self) -> None:
        """trunc_normal(0.02) linears with zero bias (SwinFace's ``_init_weights``); convs keep
        PyTorch's default init, BatchNorm 1/0."""
        for m in (self.fam, self.feature):
            if m is None:
                continue
            for sub in m.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.trunc_normal_(sub.weight, std=0.02)
                    if sub.bias is not None:
                        nn.init.zeros_(sub.bias)

    # ------------------------------------------------------------------ features
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 255] RGB (uint8 or float) -> SwinFace's input, ``(x / 255 - 0.5) / 0.5``."""
        return (x.float() / 255.0 - 0.5) / 0.5

    def multilevel_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (N, 3, H, W) -> (multi-level map (N, sum(level_widths), g, g),
        last stage tokens (N, g, g, C)). The patch-merging outputs are average-pooled to the
        last grid g, as SwinFace's ``forward_features``."""
        z = self.backbone.patch_embed(x)  # (N, H', W', C0) channels last
        levels = []
        for stage in self.backbone.layers:
            z = stage.downsample(z)
            if not isinstance(stage.downsample, nn.Identity):
                levels.append(z)
            z = stage.blocks(z)
        levels.append(z)
        g = self.feature_grid
        maps = []
        for lvl in levels:
            m = lvl.permute(0, 3, 1, 2)
            if m.shape[-1] != g:
                m = F.avg_pool2d(m, kernel_size=m.shape[-1] // g)
            maps.append(m)
        return torch.cat(maps, dim=1), z

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) crops in [0, 255] -> (N, C) embeddings."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(
                f"SwinFaceEncoder expects (N, 3, {self.image_size}, {self.image_size}) crops, "
                f"got {tuple(images.shape)}"
            )
        feats, last = self.multilevel_features(self.normalize(images))
        if self.fam is not None:
            return self.fam(feats)
        assert self.feature is not None
        pooled = self.backbone.norm(last).mean(dim=(1, 2))  # norm -> average over tokens
        return self.feature(pooled)

    # ------------------------------------------------------------------ cache
    def fingerprint(self) -> str:
        """Hex digest of this encoder's weights, buffers and configuration (re-hashed only when
        a tensor changed: see :func:`~migalab.models.embedding_cache.module_fingerprint`)."""
        extra = f"swinface:{self.preset}:{self.image_size}:{self.embedding}:{self.out_channels}"
        return module_fingerprint(self, extra)

    @property
    def cache(self) -> EmbeddingCache | None:
        """The embedding cache of the current weights (None without ``cache_dir``); a new
        fingerprint (weights changed) opens another folder."""
        if self.cache_dir is None:
            return None
        fp = self.fingerprint()
        if self._cache is None or self._cache.fingerprint != fp:
            self._cache = EmbeddingCache(
                self.cache_dir, fp, dim=self.out_channels, dtype=self.cache_dtype
            )
        return self._cache

    @torch.no_grad()
    def embed_cached(
        self, images: torch.Tensor, keys: Sequence[str], cache: EmbeddingCache | None = None
    ) -> torch.Tensor:
        """Embeddings (N, C) of crops (N, 3, H, W) named by ``keys`` (N strings, one crop
        identity each, e.g. ``"<video>:<frame>:<box>"``): hits are read from ``cache`` (default:
        :attr:`cache`), misses computed in one batch and stored. Runs without gradient in eval
        mode semantics (call on a frozen encoder)."""
        cache = cache if cache is not None else self.cache
        if cache is None:
            raise ValueError("embed_cached needs a cache (set cache_dir or pass one)")
        was = self.training
        self.eval()
        try:
            return cache.get_or_compute(
                keys, lambda idx: self.embed_images(images[idx]), device=images.device
            )
        finally:
            self.train(was)

    # ------------------------------------------------------------------ weights
    def load_initial_weights(self) -> list[str]:
        """Load ``pretrained`` (a released SwinFace checkpoint) if set; called by
        :func:`migalab.models.finetune.load_initial_weights` when a fit starts fresh."""
        if self.pretrained is None:
            return []
        report = self.load_released(self.pretrained)
        return [f"SwinFace <- {self.pretrained} ({report.loaded} tensors)"]

    def load_released(self, path: str | Path, strict: bool = True) -> WeightsReport:
        """Load a released SwinFace checkpoint (``state_dict_backbone``, ``state_dict_fam``,
        ``state_dict_tss``, ``state_dict_om``) read with :func:`load_checkpoint`.

        The backbone and the used head (FAM branch ``fam_branch`` or the recognition head) must
        be complete; tensors this encoder has no place for (other FAM branches, ``tss``, ``om``,
        the backbone's unused ``head``) are reported as unused, the original Swin's derived
        buffers (``relative_position_index``, ``attn_mask``) are dropped.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a SwinFace checkpoint (no ``state_dict_backbone``), or (``strict``)
                missing / unexpected / mis-shaped keys, named in the message.
        """
        ckpt = load_checkpoint(path)
        if not isinstance(ckpt, Mapping) or "state_dict_backbone" not in ckpt:
            keys = list(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
            raise ValueError(
                f"{path} is not a released SwinFace checkpoint: expected the keys "
                f"{list(RELEASED_KEYS)}, found {keys}"
            )
        state, unused = released_to_encoder_state(ckpt, self.fam_branch, self.embedding)
        return self._load_mapped(state, unused, str(path), strict)

    def _load_mapped(
        self, state: dict[str, torch.Tensor], unused: list[str], source: str, strict: bool
    ) -> WeightsReport:
        own = self.state_dict()
        report = WeightsReport(
            prefix="",
            loaded=0,
            missing=sorted(set(own) - set(state)),
            unexpected=sorted(set(state) - set(own)),
            mismatched=sorted(
                f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
                for k, v in state.items()
                if k in own and tuple(v.shape) != tuple(own[k].shape)
            ),
            unused=sorted(unused),
        )
        fits = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
        report.loaded = len(fits)
        if strict and (report.missing or report.unexpected or report.mismatched):
            raise ValueError(
                f"{source} does not fit this SwinFace encoder (preset {self.preset!r}, embedding "
                f"{self.embedding!r}): {report.describe()}"
            )
        self.load_state_dict(fits, strict=False)
        log.info("SwinFace <- %s: %s", source, report.describe())
        return report

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        visible: torch.Tensor | None = None,
        keys: Sequence[str] | Sequence[Sequence[str]] | None = None,
    ) -> EncoderOutput:
        if x.dim() == 4 and x.shape[1] == 3 and x.shape[-1] == self.image_size:
            x = x[:, None]  # single images: T = 1
        elif x.dim() == 2:
            x = x[:, None]  # one precomputed embedding per sample
        b, t = x.shape[:2]
        if visible is None:
            vis = torch.ones(b, t, dtype=torch.bool, device=x.device)
        else:
            vis = torch.as_tensor(visible, device=x.device).bool()
            if vis.dim() == 1 and t == 1:
                vis = vis[:, None]
            if tuple(vis.shape) != (b, t):
                raise ValueError(f"visible must be (B, T) = ({b}, {t}), got {tuple(vis.shape)}")
        if x.dim() == 3:  # precomputed embeddings (B, T, C)
            if x.shape[-1] != self.out_channels:
                raise ValueError(
                    f"precomputed embeddings must be (B, T, {self.out_channels}), got "
                    f"{tuple(x.shape)}"
                )
            emb = x.float()
        elif x.dim() == 5:
            emb = self._embed_frames(x, vis, keys)
        else:
            raise ValueError(
                "SwinFaceEncoder expects (B, T, 3, H, W) crops, (B, 3, H, W) images or "
                f"(B, T, C) embeddings, got {tuple(x.shape)}"
            )
        mask = vis[..., None].to(emb.dtype)
        # hidden frames are exactly 0 (torch.where also drops NaN of placeholder embeddings)
        zero = torch.zeros((), dtype=emb.dtype, device=x.device)
        tokens = torch.where(vis[..., None], emb, zero)
        pooled = tokens.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        time = (torch.arange(t, device=x.device, dtype=torch.float32) + 0.5) / t
        space = torch.full((t,), -1, dtype=torch.long, device=x.device)
        return EncoderOutput(tokens, pooled, time, space)

    def _embed_frames(
        self,
        x: torch.Tensor,
        vis: torch.Tensor,
        keys: Sequence[str] | Sequence[Sequence[str]] | None,
    ) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, T, C): only visible frames are encoded (through the cache
        when ``keys`` are given, the encoder is frozen and a cache is configured)."""
        b, t = x.shape[:2]
        flat = x.reshape(b * t, *x.shape[2:])
        idx = vis.reshape(-1).nonzero().squeeze(1)
        if self.training and idx.numel() == 1 and b * t > 1:
            # BatchNorm in training needs two samples: encode every frame (hidden ones are
            # masked out of the output anyway)
            idx = torch.arange(b * t, device=x.device)
        out = torch.zeros(b * t, self.out_channels, device=x.device)
        if idx.numel() == 0:
            return out.reshape(b, t, -1)
        use_cache = keys is not None and self.cache_dir is not None
        if use_cache and self.finetune_mode != "frozen":
            raise ValueError(
                "the embedding cache needs finetune='frozen' (cached embeddings carry no gradient)"
            )
        if use_cache:
            flat_keys = _flatten_keys(keys, b, t)
            picked = [flat_keys[i] for i in idx.tolist()]
            emb = self.embed_cached(flat[idx], picked)
        else:
            emb = self.embed_images(flat[idx])
        out = out.to(emb.dtype).index_copy(0, idx, emb)
        return out.reshape(b, t, -1)


def _flatten_keys(keys: Sequence[str] | Sequence[Sequence[str]], b: int, t: int) -> list[str]:
    """B·T crop keys in (b, t) order from B·T strings or B sequences of T strings."""
    if len(keys) == b and all(not isinstance(k, str) for k in keys):
        flat = [str(k) for row in keys for k in row]  # type: ignore[union-attr]
    else:
        flat = [str(k) for k in keys]
    if len(flat) != b * t:
        raise ValueError(f"keys must name the B·T = {b * t} frames, got {len(flat)}")
    return flat


def released_to_encoder_state(
    ckpt: Mapping[str, Any], fam_branch: int = 2, embedding: str = "fam"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a released SwinFace checkpoint onto :class:`SwinFaceEncoder`'s state dict keys.

    * ``state_dict_backbone``: ``X`` -> ``backbone.X``, except the original Swin's patch merging
      at the end of stage s, ``layers.<s>.downsample.*`` -> ``backbone.layers.<s+1>.downsample.*``
      (timm merges at the start of the next stage; same weights and concatenation order), the
      derived buffers dropped, ``feature.*`` -> ``feature.*`` (the recognition head), ``head.*``
      unused;
    * ``state_dict_fam``: ``nets.<fam_branch>.X`` -> ``fam.X``; the other branches unused;
    * ``state_dict_tss``, ``state_dict_om`` and any other entry: unused.

    With ``embedding="fam"`` the recognition head (``feature.*``) and the final ``norm`` are not
    part of the encoder (reported unused); with ``"recognition"`` the FAM is not.

    Returns: (state dict for ``load_state_dict``, names of the unused released tensors as
    ``<entry>/<key>``).
    """
    state: dict[str, torch.Tensor] = {}
    unused: list[str] = []
    for entry, sub in ckpt.items():
        if not isinstance(sub, Mapping):
            unused.append(str(entry))
            continue
        for key, value in sub.items():
            key = str(key)
            while key.startswith("module."):
                key = key[len("module.") :]
            if not isinstance(value, torch.Tensor):
                unused.append(f"{entry}/{key}")
                continue
            target = _map_released_key(entry, key, fam_branch, embedding)
            if target is None:
                if key.rsplit(".", 1)[-1] not in _DERIVED_BUFFERS:
                    unused.append(f"{entry}/{key}")
                continue
            state[target] = value
    return state, unused


def _map_released_key(entry: str, key: str, fam_branch: int, embedding: str) -> str | None:
    if entry == "state_dict_backbone":
        if key.rsplit(".", 1)[-1] in _DERIVED_BUFFERS or key.startswith("head."):
            return None
        if key.startswith("feature."):
            return key if embedding == "recognition" else None
        if key.startswith("norm."):  # the final norm, before the recognition head
            return f"backbone.{key}" if embedding == "recognition" else None
        parts = key.split(".")
        if len(parts) > 3 and parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) + 1)
            return "backbone." + ".".join(parts)
        return f"backbone.{key}"
    if entry == "state_dict_fam":
        prefix = f"nets.{fam_branch}."
        if embedding == "fam" and key.startswith(prefix):
            # same names: conv.convs.<i>, channel_attention, norm
            return "fam." + key[len(prefix) :]
        return None
    return None


def encoder_to_released_state(
    encoder: SwinFaceEncoder, branches: int = 11
) -> dict[str, dict[str, torch.Tensor]]:
    """The inverse of :func:`released_to_encoder_state` (tests, exporting): this encoder's
    weights in the released checkpoint format; the FAM is written to ``nets.<fam_branch>`` and
    copies of it fill the other ``branches`` (``state_dict_tss`` / ``state_dict_om`` empty)."""
    backbone: dict[str, torch.Tensor] = {}
    fam: dict[str, torch.Tensor] = {}
    for key, value in encoder.state_dict().items():
        if key.startswith("backbone."):
            k = key[len("backbone.") :]
            parts = k.split(".")
            if len(parts) > 3 and parts[0] == "layers" and parts[2] == "downsample":
                parts[1] = str(int(parts[1]) - 1)
                k = ".".join(parts)
            backbone[k] = value.clone()
        elif key.startswith("feature."):
            backbone[key] = value.clone()
        elif key.startswith("fam."):
            for j in range(branches):
                fam[f"nets.{j}.{key[len('fam.') :]}"] = value.clone()
    return {
        "state_dict_backbone": backbone,
        "state_dict_fam": fam,
        "state_dict_tss": {},
        "state_dict_om": {},
    }
