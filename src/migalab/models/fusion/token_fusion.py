"""Cross-modal token fusion: a small transformer over the tokens of several encoders (System B of
MiGA 2025: MViTv2-S video tokens + 2s-AGCN joint and bone skeleton tokens).

Pipeline, for the modalities present in the input mapping (configuration order):

1. **Encoders** (not part of the neck: the recognizer's ``encoders.<name>``, run by
   :func:`~migalab.models.fusion.streams.encode_streams`). Each modality's encoder maps its
   input to an :class:`~migalab.models.encoders.output.EncoderOutput`: tokens (B, N_m, C_m), pooled
   (B, C_m) and each token's ``time`` (``τ = (t' + 0.5) / T'``, -1 for global tokens such as
   MViT's class token) and ``space`` (joint v or ``h'·W' + w'``, -1 for none). The encoder
   owns its layout (AGCN: T'·V tokens averaged over persons, ordered (t', v); MViT: class token
   + T'·H'·W' grid; SlowOnly: T'·H'·W' grid); the fusion only reads the index.

   ``pool="space"`` averages the spatial positions of each frame
   (:meth:`EncoderOutput.pool_space`), leaving T' tokens (+ the global tokens); such tokens get
   no spatial embedding.

2. **Embedding.** Per modality ``Linear(C_m -> dim) + LayerNorm``, plus a learned
   modality-type embedding, a temporal embedding from a table of ``time_bins + 1`` rows
   **shared by all modalities** (row ``⌊τ·time_bins⌋``; the last row is the "global" time of
   class tokens), and a per-modality spatial embedding when its size is known at construction
   (the entry's ``spatial_positions``, else the encoder's ``spatial_positions`` attribute). The
   temporal table is shared because the data loaders sample video and skeleton frames at the
   same instants, so equal τ is the same moment in every modality.

3. **Masking.** A token is masked (``key_padding_mask`` True) when its modality is absent for that
   sample (the ``present`` flags) or dropped by modality dropout. Masked tokens are replaced by zeros
   right after the embedding (so even NaN placeholder features cannot leak through a zero
   attention weight), are never attended to, and are zero in the returned ``tokens``.

4. **Cross-attention** (optional, ``cross_attention=True``): ``cross_depth`` rounds in which, for
   every modality at once (bidirectional, all updated from the previous round's tokens), its
   tokens attend to the concatenated tokens of the *other* modalities in the input: pre-norm
   ``nn.MultiheadAttention`` + pre-norm MLP, both residual, one block per modality and round. A
   sample for which no other modality has an unmasked token gets no attention update.

5. **Fusion transformer.** A learned fusion class token is prepended; ``depth`` pre-norm
   ``nn.TransformerEncoderLayer`` (batch_first, norm_first, GELU) with the key padding mask, a final
   LayerNorm; ``pooled`` = the class token's output.

6. **Auxiliary heads** (``aux_heads=True``): per modality ``[Dropout] + Linear(C_m -> K)`` on the
   encoder's own pooled feature (unaffected by masking and modality dropout; the training loss
   should mask them with ``present``), returned in ``EncoderOutput.aux``.

The fusion is a neck: it takes the encoders' outputs (name -> ``EncoderOutput``) and returns
again an ``EncoderOutput`` (fused tokens, the fusion class token as ``pooled``, the per-modality
aux logits). It holds no encoder and loads no weights; it is built from the encoders' sizes
(``channels``, ``spatial_positions``: what a recognizer passes to a neck partial, see
:func:`~migalab.models.fusion.streams.build_neck`).

All-masked samples: the fusion class token is always unmasked, so a sample whose modalities are
all absent still has one valid key and its output is finite — ``pooled`` is then a learned
"no evidence" vector that depends only on the parameters (the same for every such sample). No
error is raised; callers that must not predict such samples should filter them with ``present``.

Modality dropout (training only): for each sample, every modality present in it is dropped
independently with its probability (its tokens are masked); if that drops all the sample's
present modalities, one of them, chosen uniformly, is re-enabled. So the effective drop rate of
a modality is slightly below the configured one, and no sample loses all its evidence. In eval
mode nothing is dropped.

DDP: a modality missing from a batch's input mapping leaves its encoder (in the recognizer),
projection and embeddings without gradient; train with ``find_unused_parameters=True`` when batches can miss
modalities (per-sample ``present`` masking keeps every parameter in the graph).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from migalab.models.encoders.output import EncoderOutput

__all__ = [
    "CrossAttentionBlock",
    "CrossModalTokenFusion",
    "init_transformer_weights",
    "parse_pools",
    "sample_modality_keep",
    "time_bin_index",
]

POOLS = ("none", "space")
RESERVED_KEYS = frozenset({"present"})


def init_transformer_weights(*modules: nn.Module) -> None:
    """ViT-style initialisation of every ``nn.Linear`` (trunc_normal 0.02, zero bias),
    ``nn.LayerNorm`` (1 / 0) and ``nn.MultiheadAttention`` input projection below ``modules``,
    in module order (the fusion necks' blocks; encoders keep their own initialisation)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.MultiheadAttention):
                if m.in_proj_weight is not None:
                    nn.init.trunc_normal_(m.in_proj_weight, std=0.02)
                if m.in_proj_bias is not None:
                    nn.init.zeros_(m.in_proj_bias)


def time_bin_index(time: torch.Tensor, time_bins: int) -> torch.Tensor:
    """(N,) long rows of a temporal table of ``time_bins + 1`` rows for token times
    ``τ = (t' + 0.5) / T'``: ``⌊τ·time_bins⌋`` (computed exactly in integers from t' and T'),
    ``time_bins`` for global tokens (τ < 0)."""
    grid = time >= 0
    frames = max(int(torch.unique(time[grid]).numel()), 1)  # T'
    t = torch.round(time * frames - 0.5).long()  # t'
    bins = ((2 * t + 1) * time_bins) // (2 * frames)
    return torch.where(grid, bins, torch.full_like(bins, time_bins))


def sample_modality_keep(present: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Draw modality dropout: present (B, M) bool, probs (M,) drop probabilities ->
    keep (B, M) bool ⊆ present, with at least one kept modality in every sample that has a
    present one (a uniformly chosen present modality is re-enabled when all were dropped)."""
    drop = torch.rand(present.shape, device=present.device) < probs.to(present.device)
    keep = present & ~drop
    need = present.any(dim=1) & ~keep.any(dim=1)  # (B,)
    scores = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
    pick = torch.zeros_like(present).scatter_(1, scores.argmax(dim=1, keepdim=True), True)
    return keep | (pick & need[:, None])


def parse_pools(
    names: tuple[str, ...],
    pool: Mapping[str, str] | None,
    spatial_positions: Mapping[str, int | None] | None,
    kind: str,
) -> tuple[dict[str, str], dict[str, int]]:
    """(name -> pooling, name -> spatial table size) of a neck's inputs, validated: ``pool``
    names only known inputs and is one of :data:`POOLS` ("none" when unlisted); a size is kept
    for an input with pool "none" and a known size >= 1 (``kind`` names the inputs in errors)."""
    pool = dict(pool or {})
    unknown = set(pool) - set(names)
    if unknown:
        raise ValueError(f"pool names unknown {kind}s {sorted(unknown)}; expected {list(names)}")
    pools = {n: str(pool.get(n) or "none") for n in names}
    for n, p in pools.items():
        if p not in POOLS:
            raise ValueError(f"{kind} {n!r}: pool must be one of {POOLS}, got {p!r}")
    sizes: dict[str, int] = {}
    for n, size in (spatial_positions or {}).items():
        if n not in pools or size is None or pools[n] == "space":
            continue
        if int(size) < 1:
            raise ValueError(f"{kind} {n!r}: spatial_positions must be >= 1, got {size}")
        sizes[n] = int(size)
    return pools, sizes


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention + MLP, both residual:
    query (B, Nq, dim), context (B, Nk, dim) -> (B, Nq, dim).

    Context tokens with ``key_padding_mask`` True are ignored; rows whose context is entirely
    masked get no attention update (instead of the NaN of a softmax over nothing).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
            nn.Dropout(dropout),
        )

    def forward(
        self,
        query: torch.Tensor,
        context: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """query (B, Nq, dim), context (B, Nk, dim), key_padding_mask (B, Nk) bool (True =
        ignore) -> (B, Nq, dim)."""
        kv = self.norm_kv(context)
        gate = None
        if key_padding_mask is not None:
            has_key = ~key_padding_mask.all(dim=1)  # (B,)
            # Unmask fully-masked rows so the softmax is defined, then zero their update.
            key_padding_mask = key_padding_mask & has_key[:, None]
            gate = has_key.to(query.dtype)[:, None, None]
        attn, _ = self.attn(
            self.norm_q(query), kv, kv, key_padding_mask=key_padding_mask, need_weights=False
        )
        attn = self.drop(attn)
        if gate is not None:
            attn = attn * gate
        x = query + attn
        return x + self.mlp(self.norm_mlp(x))


class CrossModalTokenFusion(nn.Module):
    """Fuse the tokens of several encoders with a transformer (see the module docstring).

    Args:
        channels: name -> C_m, the token width of each modality's encoder, in the order the
            tokens are concatenated (a recognizer passes its encoders' ``out_channels``).
        num_classes: K, classes of the auxiliary heads.
        spatial_positions: name -> size of that modality's spatial embedding table (the
            encoder's ``spatial_positions`` attribute, e.g. V for AGCN, H'·W' for MViT); a
            missing or None entry (or ``pool="space"``) means no spatial embedding. The size is
            fixed at construction (no lazy parameters, as DDP needs); a larger ``space`` index at
            run time raises ValueError.
        pool: name -> "none" | "space" (unlisted modalities: "none").
        dim: fusion width (256).
        depth: fusion transformer layers (2).
        heads: attention heads (8; ``dim`` must be divisible by it).
        mlp_ratio: MLP hidden width = ``dim · mlp_ratio``.
        dropout: dropout on the embedded tokens, in the residual branches and MLPs.
        attn_dropout: dropout on the attention weights.
        time_bins: temporal bins of the shared temporal embedding (16, the T' of MViTv2-S on 32
            frames and of AGCN on 64 frames; one extra row is the global time).
        cross_attention: run ``cross_depth`` cross-modal attention rounds before the fusion
            transformer (needs at least two modalities).
        cross_depth: cross-attention rounds.
        modality_dropout: per-sample drop probability in training, one for all modalities or a
            name -> probability mapping (unlisted modalities: 0).
        aux_heads: build per-modality auxiliary classifiers on the encoders' pooled features.
        aux_dropout: dropout before the auxiliary classifiers.

    Attributes:
        out_channels: ``dim``.
        pools: name -> pooling.
        modality_names: the modalities, in token order.

    Forward:
        outs: name -> that modality's ``EncoderOutput``, for the modalities present in the batch
            (missing names are skipped).
        present: optional name -> (B,) bool per-sample availability (absent samples' tokens are
            masked; their placeholder input should still be finite for BatchNorm statistics).
        visible: must be None (this neck masks whole modalities, not single tokens).
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens (B, 1 + N, dim)
        (the fusion class token first, then each input modality's tokens in configuration
        order; masked tokens are 0), pooled (B, dim) = the fusion class token, the tokens'
        time / space (the modalities' own, -1 for the class token), aux = modality -> (B, K)
        logits of the auxiliary heads (empty when ``aux_heads=False``).
    """

    def __init__(
        self,
        channels: Mapping[str, int],
        num_classes: int,
        spatial_positions: Mapping[str, int | None] | None = None,
        pool: Mapping[str, str] | None = None,
        dim: int = 256,
        depth: int = 2,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        time_bins: int = 16,
        cross_attention: bool = False,
        cross_depth: int = 1,
        modality_dropout: float | Mapping[str, float] = 0.1,
        aux_heads: bool = True,
        aux_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not channels:
            raise ValueError("CrossModalTokenFusion needs at least one modality")
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if time_bins < 1 or depth < 0 or cross_depth < 1 or num_classes < 1:
            raise ValueError(
                f"bad sizes: time_bins={time_bins}, depth={depth}, cross_depth={cross_depth}, "
                f"num_classes={num_classes}"
            )
        self.dim, self.out_channels, self.num_classes = dim, dim, num_classes
        self.time_bins = time_bins

        names = [str(n) for n in channels]
        for name in names:
            if name in RESERVED_KEYS or "." in name or not name:
                raise ValueError(f"invalid modality name {name!r}")
        self.modality_names: tuple[str, ...] = tuple(names)
        self.pools, spatial_sizes = parse_pools(
            self.modality_names, pool, spatial_positions, "modality"
        )

        if cross_attention and len(self.modality_names) < 2:
            raise ValueError("cross_attention needs at least two modalities")
        probs = self._parse_dropout(modality_dropout)
        self.modality_dropout: dict[str, float] = probs

        channels = {n: int(c) for n, c in zip(names, channels.values(), strict=True)}
        self.proj = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(c, dim), nn.LayerNorm(dim)) for n, c in channels.items()}
        )
        self.modality_embed = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(dim)) for n in self.modality_names}
        )
        self.time_embed = nn.Parameter(torch.zeros(time_bins + 1, dim))
        self.spatial_embed = nn.ParameterDict(
            {n: nn.Parameter(torch.zeros(s, dim)) for n, s in spatial_sizes.items()}
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.token_drop = nn.Dropout(dropout)

        self.cross_attention = cross_attention
        self.cross_layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    n: CrossAttentionBlock(dim, heads, mlp_ratio, dropout, attn_dropout)
                    for n in self.modality_names
                }
            )
            for _ in range(cross_depth if cross_attention else 0)
        )
        layers = []
        for _ in range(depth):
            layer = nn.TransformerEncoderLayer(
                dim,
                heads,
                dim_feedforward=int(dim * mlp_ratio),
                dropout=dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            layer.self_attn.dropout = attn_dropout  # attention-weight dropout (float attribute)
            layers.append(layer)
        self.layers = nn.ModuleList(layers)
        self.norm = nn.LayerNorm(dim)

        self.aux_heads = nn.ModuleDict(
            {
                n: nn.Sequential(
                    nn.Dropout(aux_dropout) if aux_dropout > 0 else nn.Identity(),
                    nn.Linear(c, num_classes),
                )
                for n, c in channels.items()
            }
            if aux_heads
            else {}
        )
        self._init_weights()

    # ------------------------------------------------------------------ construction helpers

    def _parse_dropout(self, modality_dropout: float | Mapping[str, float]) -> dict[str, float]:
        """name -> drop probability, validated."""
        if isinstance(modality_dropout, Mapping):
            unknown = set(modality_dropout) - set(self.modality_names)
            if unknown:
                raise ValueError(
                    f"modality_dropout names unknown modalities {sorted(unknown)}; "
                    f"expected some of {list(self.modality_names)}"
                )
            probs = {n: float(modality_dropout.get(n, 0.0)) for n in self.modality_names}
        else:
            probs = dict.fromkeys(self.modality_names, float(modality_dropout))
        for n, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"modality_dropout[{n!r}] must be in [0, 1], got {p}")
        return probs

    def _init_weights(self) -> None:
        """trunc_normal(0.02) embeddings and fusion linears (zero bias), LayerNorm 1/0; the
        encoders keep their own initialisation."""
        for p in (self.time_embed, self.cls_token, *self.modality_embed.values()):
            nn.init.trunc_normal_(p, std=0.02)
        for p in self.spatial_embed.values():
            nn.init.trunc_normal_(p, std=0.02)
        init_transformer_weights(
            self.proj, self.cross_layers, self.layers, self.norm, self.aux_heads
        )

    # ------------------------------------------------------------------------ token extraction

    def time_index(self, time: torch.Tensor) -> torch.Tensor:
        """:func:`time_bin_index` with this fusion's ``time_bins``."""
        return time_bin_index(time, self.time_bins)

    def tokens_of(self, name: str, out: EncoderOutput) -> EncoderOutput:
        """Modality ``name``'s encoder output as the fusion reads it: pooled over space with
        ``pool="space"``, its spatial index checked against the embedding table's size."""
        if self.pools[name] == "space":
            return out.pool_space()
        if name in self.spatial_embed and out.space.numel():
            positions = int(out.space.max()) + 1
            if positions > self.spatial_embed[name].shape[0]:
                raise ValueError(
                    f"modality {name!r}: {positions} spatial positions but the spatial "
                    f"embedding was sized {self.spatial_embed[name].shape[0]} (the encoder's "
                    "spatial_positions)"
                )
        return out

    def embed(self, name: str, out: EncoderOutput) -> torch.Tensor:
        """Project and embed one modality's tokens: -> (B, N_m, dim)."""
        z = self.proj[name](out.tokens)
        pos = self.time_embed[self.time_index(out.time)] + self.modality_embed[name]  # (N_m, dim)
        if name in self.spatial_embed:
            has = out.space >= 0
            table = self.spatial_embed[name]
            sp = table[out.space.clamp(min=0)] * has[:, None].to(table.dtype)
            pos = pos + sp
        return z + pos

    # --------------------------------------------------------------------- modality dropout

    def sample_modality_keep(self, present: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """:func:`sample_modality_keep` (modality dropout)."""
        return sample_modality_keep(present, probs)

    # ------------------------------------------------------------------------------- forward

    def _parse_inputs(
        self, outs: Mapping[str, EncoderOutput], present: Mapping[str, Any] | None
    ) -> tuple[list[str], dict[str, torch.Tensor | None]]:
        """(names present in ``outs`` in config order, name -> (B,) bool present or None)."""
        unknown = set(outs) - set(self.modality_names)
        if unknown:
            raise ValueError(
                f"unknown modality keys {sorted(unknown)}; expected some of "
                f"{list(self.modality_names)}"
            )
        names = [n for n in self.modality_names if outs.get(n) is not None]
        if not names:
            raise ValueError(
                f"no modality in the input; expected at least one of {list(self.modality_names)}"
            )
        present_in = present or {}
        bad = set(present_in) - set(self.modality_names)
        if bad:
            raise ValueError(f"present names unknown modalities {sorted(bad)}")
        return names, {n: present_in.get(n) for n in names}

    def forward(
        self,
        outs: Mapping[str, EncoderOutput],
        present: Mapping[str, Any] | None = None,
        visible: Mapping[str, Any] | None = None,
    ) -> EncoderOutput:
        """outs: name -> EncoderOutput (+ optional present: name -> (B,) bool) ->
        EncoderOutput(tokens (B, 1 + N, dim), pooled (B, dim), time / space (1 + N,),
        aux name -> (B, K))."""
        if visible:
            raise ValueError(
                "CrossModalTokenFusion masks whole modalities (present), not single tokens: "
                f"got visible flags for {sorted(visible)}"
            )
        names, present_in = self._parse_inputs(outs, present)

        embedded: list[torch.Tensor] = []
        times: list[torch.Tensor] = []
        spaces: list[torch.Tensor] = []
        aux: dict[str, torch.Tensor] = {}
        batch: int | None = None
        for name in names:
            out = self.tokens_of(name, outs[name])
            if batch is None:
                batch = out.tokens.shape[0]
            elif out.tokens.shape[0] != batch:
                raise ValueError(
                    f"modality {name!r} has batch size {out.tokens.shape[0]}, expected {batch}"
                )
            embedded.append(self.embed(name, out))
            times.append(out.time)
            spaces.append(out.space)
            if name in self.aux_heads:
                aux[name] = self.aux_heads[name](out.pooled)
        assert batch is not None
        device = embedded[0].device

        present = torch.ones(batch, len(names), dtype=torch.bool, device=device)
        for i, name in enumerate(names):
            p = present_in[name]
            if p is not None:
                p = torch.as_tensor(p, device=device)
                if p.shape != (batch,):
                    raise ValueError(
                        f"present[{name!r}] must have shape ({batch},), got {tuple(p.shape)}"
                    )
                present[:, i] = p.bool()
        keep = present
        if self.training:
            probs = torch.tensor([self.modality_dropout[n] for n in names], device=device)
            if bool((probs > 0).any()):
                keep = self.sample_modality_keep(present, probs)

        # Zero masked tokens (torch.where also removes NaN/inf of placeholder inputs).
        masks = []
        for i, z in enumerate(embedded):
            m = (~keep[:, i])[:, None].expand(batch, z.shape[1])  # (B, N_m), True = masked
            embedded[i] = torch.where(
                m[..., None], torch.zeros((), dtype=z.dtype, device=device), z
            )
            masks.append(m)
        embedded = [self.token_drop(z) for z in embedded]

        if self.cross_attention and len(names) > 1:
            for layer in self.cross_layers:
                updated = []
                for i, name in enumerate(names):
                    ctx = torch.cat([z for j, z in enumerate(embedded) if j != i], dim=1)
                    ctx_mask = torch.cat([m for j, m in enumerate(masks) if j != i], dim=1)
                    updated.append(layer[name](embedded[i], ctx, ctx_mask))
                embedded = updated

        cls = self.cls_token.expand(batch, -1, -1)
        tokens = torch.cat([cls, *embedded], dim=1)  # (B, 1 + N, dim)
        cls_mask = torch.zeros(batch, 1, dtype=torch.bool, device=device)
        padding_mask = torch.cat([cls_mask, *masks], dim=1)  # (B, 1 + N)
        for layer in self.layers:
            tokens = layer(tokens, src_key_padding_mask=padding_mask)
        tokens = self.norm(tokens)
        tokens = tokens.masked_fill(padding_mask[..., None], 0.0)
        time = torch.cat([torch.full((1,), -1.0, device=device), *times])
        space = torch.cat([torch.full((1,), -1, dtype=torch.long, device=device), *spaces])
        return EncoderOutput(tokens, tokens[:, 0], time, space, aux)
