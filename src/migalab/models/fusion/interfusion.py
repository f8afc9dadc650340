"""InterFusion: the two-stream neck of the emotion track (System B of MiGA 2025: SwinFace face
embeddings + MViTv2-S context tokens, attention across the two streams).

The paper gives no sizes; ours (config values, defaults in brackets):

1. **Encoders** (the recognizer's ``encoders.face`` / ``encoders.context``, not part of the
   neck). ``face`` (e.g. :class:`~migalab.models.encoders.swinface.SwinFaceEncoder`: one token
   per frame) and ``context`` (e.g. :class:`~migalab.models.encoders.mvit.MViTEncoder`: class
   token + T'·H'·W' grid) each map their input to an ``EncoderOutput`` that the neck receives.
   ``pool`` per stream as in the token fusion (``"space"`` averages each frame's spatial tokens:
   MViTv2-S's 1 + 8·7·7 tokens become 1 + 8).
2. **Embedding.** Per stream ``Linear(C -> dim) + LayerNorm`` [dim 256], a learned stream-type
   embedding and a temporal embedding from one table of ``time_bins + 1`` rows shared by both
   streams [16] (:func:`~migalab.models.fusion.token_fusion.time_bin_index`; the last row for
   global tokens), so face frame t and context frame t' at the same instant share a time code.
3. **Masking.** A token is masked when its stream is absent for the sample
   (``present[name]`` False, or the stream missing from the input) or, per token, when
   ``visible[name]`` is False (a frame without a detected face; the recognizer also passes it to
   the encoder as ``visible=``). Masked tokens are zeroed right after the embedding (a NaN placeholder cannot
   leak) and never attended to.
4. **Bidirectional cross-attention** [depth 2, heads 8, mlp_ratio 4]: in every round the face
   tokens attend to the context tokens and the context tokens to the face tokens, both from the
   previous round (pre-norm :class:`~migalab.models.fusion.token_fusion.CrossAttentionBlock`:
   attention + MLP, residual). A stream whose other stream has no valid token in a sample is
   not updated (its tokens keep their embedding), so such a sample gives exactly what the
   stream gives alone.
5. **Pooling + gated merge.** Each stream is mean-pooled over its valid tokens (``f``, ``c``);
   a learned gate ``g = σ(W [f; c] + b)`` (per channel) merges them, ``g·f + (1 - g)·c``. A sample
   with only one valid stream takes it alone (g = 1 or 0), a sample with none gets a learned
   "no evidence" vector; then a final LayerNorm gives ``pooled`` (B, dim), finite in every case.
6. **Auxiliary heads** (``num_classes`` set): per stream ``Linear(dim -> K)`` on its pooled
   feature, returned in ``aux`` (mask them with ``present`` in the loss).

Stream dropout (training only, ``stream_dropout``): each present stream of a sample is hidden
with that probability, one is always kept (the token fusion's
:func:`~migalab.models.fusion.token_fusion.sample_modality_keep`).

Output: ``EncoderOutput`` with tokens (B, N_face + N_context, dim) (face tokens first, masked
tokens 0), their time / space (the encoders'), pooled (B, dim), aux. A stream missing from the
input mapping is not run (its encoder and projection then have no gradient: DDP needs
``find_unused_parameters``; prefer per-sample ``present`` flags with placeholder inputs).
Built from the encoders' sizes (``channels``), as a recognizer builds a neck partial
(:func:`~migalab.models.fusion.streams.build_neck`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from migalab.models.encoders.output import EncoderOutput
from migalab.models.fusion.token_fusion import (
    CrossAttentionBlock,
    init_transformer_weights,
    parse_pools,
    sample_modality_keep,
    time_bin_index,
)

__all__ = ["STREAMS", "InterFusion"]

#: the two streams, in token order
STREAMS = ("face", "context")


class InterFusion(nn.Module):
    """Bidirectional cross-attention between a face stream and a context stream, gated merge.

    Args:
        channels: stream -> token width C of its encoder; exactly ``face`` and ``context`` (a
            recognizer passes its encoders' ``out_channels``).
        spatial_positions: unused (the streams get no spatial embedding); accepted because a
            recognizer passes every neck its encoders' sizes.
        pool: stream -> "none" | "space" (unlisted: "none").
        dim: fusion width (256).
        depth: bidirectional cross-attention rounds (2; 0 = pooled streams merged directly).
        heads: attention heads (8; ``dim`` must be divisible by it).
        mlp_ratio: MLP hidden width = ``dim · mlp_ratio`` (4).
        dropout: dropout on the embedded tokens, in the residual branches and MLPs (0.1).
        attn_dropout: dropout on the attention weights (0).
        time_bins: bins of the shared temporal embedding (16).
        stream_dropout: per-sample probability of hiding a present stream in training (0.1).
        num_classes: K of the per-stream auxiliary heads; None: no aux heads.

    Attributes:
        out_channels: ``dim``.

    Forward:
        outs: ``{"face": EncoderOutput, "context": EncoderOutput}`` (either may be missing or
            None: masked for every sample).
        present: optional stream -> (B,) bool per-sample availability.
        visible: optional stream -> (B, N) bool per-token validity (for SwinFace N = T frames).
        returns :class:`~migalab.models.encoders.output.EncoderOutput`: tokens
        (B, N_face + N_context, dim), pooled (B, dim), time / space (N_face + N_context,),
        aux name -> (B, K).
    """

    def __init__(
        self,
        channels: Mapping[str, int],
        spatial_positions: Mapping[str, int | None] | None = None,
        pool: Mapping[str, str] | None = None,
        dim: int = 256,
        depth: int = 2,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        time_bins: int = 16,
        stream_dropout: float = 0.1,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if depth < 0 or time_bins < 1 or not 0.0 <= stream_dropout <= 1.0:
            raise ValueError(
                f"bad settings: depth={depth}, time_bins={time_bins}, "
                f"stream_dropout={stream_dropout}"
            )
        if set(channels) != set(STREAMS):
            raise ValueError(f"InterFusion needs the streams {STREAMS}, got {sorted(channels)}")
        self.pools, _ = parse_pools(STREAMS, pool, None, "stream")
        self.dim, self.out_channels, self.time_bins = dim, dim, time_bins
        self.stream_dropout = float(stream_dropout)

        self.proj = nn.ModuleDict(
            {n: nn.Sequential(nn.Linear(int(channels[n]), dim), nn.LayerNorm(dim)) for n in STREAMS}
        )
        self.stream_embed = nn.ParameterDict({n: nn.Parameter(torch.zeros(dim)) for n in STREAMS})
        self.time_embed = nn.Parameter(torch.zeros(time_bins + 1, dim))
        self.token_drop = nn.Dropout(dropout)
        self.cross_layers = nn.ModuleList(
            nn.ModuleDict(
                {
                    n: CrossAttentionBlock(dim, heads, mlp_ratio, dropout, attn_dropout)
                    for n in STREAMS
                }
            )
            for _ in range(depth)
        )
        self.gate = nn.Linear(2 * dim, dim)
        self.empty = nn.Parameter(torch.zeros(dim))  # the "no evidence" feature
        self.norm = nn.LayerNorm(dim)
        self.aux_heads = nn.ModuleDict(
            {n: nn.Linear(dim, int(num_classes)) for n in STREAMS} if num_classes else {}
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """trunc_normal(0.02) embeddings and linears (zero bias), LayerNorm 1/0, as the token
        fusion; the gate starts at 0.5 (zero weights and bias); the encoders keep theirs."""
        for p in (self.time_embed, self.empty, *self.stream_embed.values()):
            nn.init.trunc_normal_(p, std=0.02)
        init_transformer_weights(self.proj, self.cross_layers, self.norm, self.aux_heads)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    # ------------------------------------------------------------------ pieces
    def tokens_of(self, name: str, out: EncoderOutput) -> EncoderOutput:
        """Stream ``name``'s encoder output, pooled over space with ``pool="space"``."""
        return out.pool_space() if self.pools[name] == "space" else out

    def embed(self, name: str, out: EncoderOutput) -> torch.Tensor:
        """(B, N, C) -> (B, N, dim): projection + stream and temporal embeddings."""
        pos = self.time_embed[time_bin_index(out.time, self.time_bins)] + self.stream_embed[name]
        return self.proj[name](out.tokens) + pos

    @staticmethod
    def masked_mean(z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, N, dim), valid (B, N) bool -> (B, dim) mean over valid tokens (0 when none)."""
        w = valid.to(z.dtype)[..., None]
        return (z * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)

    def merge(
        self, f: torch.Tensor, c: torch.Tensor, has_f: torch.Tensor, has_c: torch.Tensor
    ) -> torch.Tensor:
        """Gated merge of the pooled streams (B, dim) given which are valid (B,) bool: both ->
        ``g·f + (1 - g)·c``, one -> that one, none -> the learned empty vector."""
        g = torch.sigmoid(self.gate(torch.cat([f, c], dim=-1)))
        one, zero = torch.ones_like(g), torch.zeros_like(g)
        g = torch.where((has_f & ~has_c)[:, None], one, g)
        g = torch.where((~has_f & has_c)[:, None], zero, g)
        merged = g * f + (1.0 - g) * c
        none = (~has_f & ~has_c)[:, None]
        return torch.where(none, self.empty.to(merged.dtype).expand_as(merged), merged)

    # ------------------------------------------------------------------ forward
    def _flags(
        self,
        table: Mapping[str, Any] | None,
        name: str,
        batch: int,
        device: torch.device,
        key: str,
        size: int | None = None,
    ) -> torch.Tensor | None:
        table = table or {}
        bad = set(table) - set(STREAMS)
        if bad:
            raise ValueError(f"{key} names unknown streams {sorted(bad)}; expected {STREAMS}")
        value = table.get(name)
        if value is None:
            return None
        value = torch.as_tensor(value, device=device).bool()
        shape = (batch,) if size is None else (batch, size)
        if tuple(value.shape) != shape:
            raise ValueError(f"{key}[{name!r}] must have shape {shape}, got {tuple(value.shape)}")
        return value

    def forward(
        self,
        outs: Mapping[str, EncoderOutput],
        present: Mapping[str, Any] | None = None,
        visible: Mapping[str, Any] | None = None,
    ) -> EncoderOutput:
        """outs: stream -> EncoderOutput (+ optional present / visible flags) -> EncoderOutput
        (tokens (B, N_face + N_context, dim), pooled (B, dim), aux stream -> (B, K))."""
        unknown = set(outs) - set(STREAMS)
        if unknown:
            raise ValueError(f"unknown InterFusion inputs {sorted(unknown)}; expected {STREAMS}")
        names = [n for n in STREAMS if outs.get(n) is not None]
        if not names:
            raise ValueError(f"InterFusion needs at least one of {STREAMS} in its input")
        outs = {n: self.tokens_of(n, outs[n]) for n in names}
        batch = outs[names[0]].tokens.shape[0]
        device = outs[names[0]].tokens.device
        for n in names:
            if outs[n].tokens.shape[0] != batch:
                raise ValueError(
                    f"stream {n!r} has batch {outs[n].tokens.shape[0]}, expected {batch}"
                )

        available = torch.zeros(batch, len(STREAMS), dtype=torch.bool, device=device)
        for i, n in enumerate(STREAMS):
            if n in outs:
                p = self._flags(present, n, batch, device, "present")
                available[:, i] = True if p is None else p
        keep = available
        if self.training and self.stream_dropout > 0:
            probs = torch.full((len(STREAMS),), self.stream_dropout, device=device)
            keep = sample_modality_keep(available, probs)

        tokens: dict[str, torch.Tensor] = {}
        valid: dict[str, torch.Tensor] = {}
        for i, n in enumerate(STREAMS):
            if n not in outs:
                continue
            z = self.embed(n, outs[n])
            v = keep[:, i : i + 1].expand(batch, z.shape[1])
            vis = self._flags(visible, n, batch, device, "visible", z.shape[1])
            if vis is not None:
                v = v & vis
            z = torch.where(v[..., None], z, torch.zeros((), dtype=z.dtype, device=device))
            tokens[n], valid[n] = self.token_drop(z), v

        if len(tokens) == 2:
            # a stream whose other stream has no valid token in a sample keeps its tokens
            # (no attention nor MLP update): the same as running that stream alone
            has_f = valid["face"].any(dim=1)[:, None, None]
            has_c = valid["context"].any(dim=1)[:, None, None]
            for layer in self.cross_layers:
                f, c = tokens["face"], tokens["context"]
                tokens = {
                    "face": torch.where(has_c, layer["face"](f, c, ~valid["context"]), f),
                    "context": torch.where(has_f, layer["context"](c, f, ~valid["face"]), c),
                }

        pooled: dict[str, torch.Tensor] = {}
        has: dict[str, torch.Tensor] = {}
        for n in STREAMS:
            if n in tokens:
                pooled[n] = self.masked_mean(tokens[n], valid[n])
                has[n] = valid[n].any(dim=1)
            else:
                pooled[n] = torch.zeros(batch, self.dim, device=device)
                has[n] = torch.zeros(batch, dtype=torch.bool, device=device)
        merged = self.merge(pooled["face"], pooled["context"], has["face"], has["context"])
        aux = {n: self.aux_heads[n](pooled[n]) for n in tokens if n in self.aux_heads}

        zero = torch.zeros((), device=device)
        out_tokens = torch.cat(
            [torch.where(valid[n][..., None], tokens[n], zero) for n in tokens], dim=1
        )
        time = torch.cat([outs[n].time for n in tokens])
        space = torch.cat([outs[n].space for n in tokens])
        return EncoderOutput(out_tokens, self.norm(merged), time, space, aux)
