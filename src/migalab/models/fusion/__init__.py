"""Fusion necks: combine the outputs of several encoders into one
:class:`~migalab.models.encoders.output.EncoderOutput`.

* ``CrossModalTokenFusion`` (``migalab.models.fusion.token_fusion``): a transformer over the
  projected tokens of several encoders (video MViT + skeleton AGCN streams, ...) with shared
  temporal embeddings, optional cross-modal attention, per-sample modality masking / dropout and
  per-modality auxiliary heads; returns the fused tokens, the fusion class token as ``pooled``
  and the auxiliary logits as ``aux``.
"""

from migalab.models.fusion.token_fusion import CrossModalTokenFusion

__all__ = ["CrossModalTokenFusion"]
