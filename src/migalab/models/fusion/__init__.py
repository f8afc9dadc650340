"""Fusion necks: combine the outputs of several encoders into one
:class:`~migalab.models.encoders.output.EncoderOutput`.

* ``CrossModalTokenFusion`` (``migalab.models.fusion.token_fusion``): a transformer over the
  projected tokens of several encoders (video MViT + skeleton AGCN streams, ...) with shared
  temporal embeddings, optional cross-modal attention, per-sample modality masking / dropout and
  per-modality auxiliary heads; returns the fused tokens, the fusion class token as ``pooled``
  and the auxiliary logits as ``aux``.
* ``InterFusion`` (``migalab.models.fusion.interfusion``): the emotion track's two-stream neck:
  bidirectional cross-attention between face tokens (SwinFace, one per frame) and context tokens
  (MViT), masked pooling and a learned gate merging the two streams; either stream may be absent
  per sample; returns both streams' tokens, the merged feature as ``pooled`` (B, dim) and
  optional per-stream aux logits.
"""

from migalab.models.fusion.interfusion import InterFusion
from migalab.models.fusion.token_fusion import CrossModalTokenFusion

__all__ = ["CrossModalTokenFusion", "InterFusion"]
