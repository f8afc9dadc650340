"""Encoders: plain ``nn.Module``s returning ``(tokens, pooled)``; each documents its token shape.

* ``AGCN`` (``migalab.models.encoders.agcn``): skeleton (N, C, T, V, M) ->
  tokens (N, M, C_out, T', V), pooled (N, C_out).
* ``SlowOnly`` (``migalab.models.encoders.posec3d``): heatmap volumes (N, C, T, H, W) ->
  tokens (N, 512, T', H', W'), pooled (N, 512).
* ``MViTEncoder`` (``migalab.models.encoders.mvit``): RGB clips (B, 3, T, H, W) ->
  tokens (B, 1 + T'·H'·W', C) (class token first; C = 768 for MViTv2-S), pooled = class token.
"""

from migalab.models.encoders.agcn import AGCN
from migalab.models.encoders.mvit import MViTEncoder
from migalab.models.encoders.posec3d import SlowOnly

__all__ = ["AGCN", "MViTEncoder", "SlowOnly"]
