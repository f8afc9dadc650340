"""Encoders: plain ``nn.Module``s returning ``(tokens, pooled)``; each documents its token shape.

* ``AGCN`` (``migalab.models.encoders.agcn``): skeleton (N, C, T, V, M) ->
  tokens (N, M, C_out, T', V), pooled (N, C_out).
"""

from migalab.models.encoders.agcn import AGCN

__all__ = ["AGCN"]
