"""Fusion blocks: combine the tokens / pooled features of several encoders.

* ``CrossModalTokenFusion`` (``migalab.models.fusion.token_fusion``): a transformer over the
  projected tokens of several encoders (video MViT + skeleton AGCN streams, ...) with shared
  temporal embeddings, optional cross-modal attention, per-sample modality masking / dropout and
  per-modality auxiliary heads; returns ``FusionOutput(tokens, pooled, aux_logits)``.
"""

from migalab.models.fusion.token_fusion import CrossModalTokenFusion, FusionOutput

__all__ = ["CrossModalTokenFusion", "FusionOutput"]
