"""Encoders -> neck: running one encoder per input stream and handing their outputs to a fusion
neck, written once for the recognizer (:class:`~migalab.tasks.recognizer.Recognizer`, which
holds ``encoders`` and ``neck`` itself) and for standalone use (:class:`FusedEncoders`).

A neck is any ``nn.Module`` built from its encoders' sizes and called on their outputs:

* construction: ``neck(channels={name: C}, spatial_positions={name: P or None})`` -- a Hydra
  partial (``_partial_: true``) completed by :func:`build_neck` with the encoders'
  ``out_channels`` and ``spatial_positions`` attributes, in the encoders' order;
* forward: ``neck(outs, present=None, visible=None)`` with ``outs`` name ->
  :class:`~migalab.models.encoders.output.EncoderOutput` (only the streams in the batch),
  ``present`` name -> (B,) bool, ``visible`` name -> (B, N) bool; returns an ``EncoderOutput``
  whose ``pooled`` (B, C) feeds the head and whose ``aux`` holds per-stream logits.

The fusion necks are :class:`~migalab.models.fusion.token_fusion.CrossModalTokenFusion` and
:class:`~migalab.models.fusion.interfusion.InterFusion`; a toy one is in ``tests/extension``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from migalab.models.encoders.output import EncoderOutput

__all__ = ["RESERVED_KEYS", "FusedEncoders", "build_neck", "encode_streams", "fuse_streams"]

#: keys of a stream mapping that are flags, not streams
RESERVED_KEYS = frozenset({"present", "visible"})


def build_neck(
    neck: nn.Module | Callable[..., nn.Module], encoders: Mapping[str, nn.Module]
) -> nn.Module:
    """``neck`` itself when it is a module, else ``neck(channels=..., spatial_positions=...)``
    with the encoders' ``out_channels`` and ``spatial_positions`` (None where an encoder has
    none), in the encoders' order. A partial that already names ``spatial_positions`` for a
    stream (a config's ``neck.spatial_positions.<stream>``, for an encoder whose grid depends
    on its input size) keeps that size."""
    if isinstance(neck, nn.Module):
        return neck
    missing = [n for n, e in encoders.items() if not hasattr(e, "out_channels")]
    if missing:
        raise ValueError(f"encoders {missing} have no 'out_channels' attribute")
    channels = {n: int(e.out_channels) for n, e in encoders.items()}
    given = dict(getattr(neck, "keywords", {}).get("spatial_positions") or {})
    unknown = sorted(set(given) - set(encoders))
    if unknown:
        raise ValueError(f"neck spatial_positions names unknown streams {unknown}")
    positions = {
        n: given[n] if n in given else getattr(e, "spatial_positions", None)
        for n, e in encoders.items()
    }
    return neck(channels=channels, spatial_positions=positions)


def encode_streams(
    encoders: Mapping[str, nn.Module],
    x: Mapping[str, Any],
    visible: Mapping[str, Any] | None = None,
) -> dict[str, EncoderOutput]:
    """Run each encoder whose stream is in ``x`` (not None), in the encoders' order; a stream
    with ``visible`` flags gets them as ``visible=`` (SwinFace's frames without a face).
    Returns name -> EncoderOutput. A name in ``x`` without an encoder is an error."""
    unknown = sorted(set(x) - set(encoders) - RESERVED_KEYS)
    if unknown:
        raise ValueError(
            f"unknown input streams {unknown}; the encoders are {list(encoders)} (and optionally "
            "'present' / 'visible')"
        )
    outs: dict[str, EncoderOutput] = {}
    for name, encoder in encoders.items():
        if x.get(name) is None:
            continue
        vis = (visible or {}).get(name)
        outs[name] = encoder(x[name]) if vis is None else encoder(x[name], visible=vis)
    if not outs:
        raise ValueError(f"no input stream in the batch; expected some of {list(encoders)}")
    return outs


def fuse_streams(
    encoders: Mapping[str, nn.Module], neck: nn.Module, x: Mapping[str, Any]
) -> EncoderOutput:
    """``x``: name -> encoder input, plus optional ``present`` (name -> (B,) bool) and
    ``visible`` (name -> (B, N) bool) -> the neck's EncoderOutput over the encoders' outputs."""
    present, visible = x.get("present") or None, x.get("visible") or None
    return neck(encode_streams(encoders, x, visible), present=present, visible=visible)


class FusedEncoders(nn.Module):
    """Encoders + a neck as one module (e.g. a feature extractor outside Lightning, or a test):
    ``forward(x)`` = :func:`fuse_streams`. A recognizer keeps the two as its own ``encoders`` and
    ``neck`` instead, so its checkpoints name them at the top level.

    Args:
        encoders: name -> encoder (an ``nn.Module`` with ``out_channels`` returning an
            ``EncoderOutput``), in token order.
        neck: a neck module, or a partial given the encoders' sizes (:func:`build_neck`).
    """

    def __init__(
        self, encoders: Mapping[str, nn.Module], neck: nn.Module | Callable[..., nn.Module]
    ) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(dict(encoders))
        self.neck = build_neck(neck, self.encoders)
        self.out_channels = int(self.neck.out_channels)

    def forward(self, x: Mapping[str, Any]) -> EncoderOutput:
        """x: name -> input (+ present / visible) -> EncoderOutput (pooled (B, C))."""
        return fuse_streams(self.encoders, self.neck, x)
