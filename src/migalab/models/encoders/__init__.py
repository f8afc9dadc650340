"""Encoders: plain ``nn.Module``s with an ``out_channels`` attribute whose forward returns an
:class:`~migalab.models.encoders.output.EncoderOutput` (tokens (B, N, C), pooled (B, C), each
token's time and space index, aux logits). Each encoder owns its token layout:

* ``AGCN`` (``migalab.models.encoders.agcn``): skeleton (N, C, T, V, M) ->
  tokens (N, T'·V, C_out) averaged over persons, ordered (t', v); pooled (N, C_out) = mean over
  persons, frames and joints.
* ``SlowOnly`` (``migalab.models.encoders.posec3d``): heatmap volumes (N, C, T, H, W) ->
  tokens (N, T'·H'·W', 512) ordered (t', h', w'); pooled (N, 512) = global average.
* ``MViTEncoder`` (``migalab.models.encoders.mvit``): RGB clips (B, 3, T, H, W) ->
  tokens (B, 1 + T'·H'·W', C) (class token first; C = 768 for MViTv2-S), pooled = class token.
* ``X3D`` (``migalab.models.encoders.x3d``): RGB clips (B, 3, T, H, W) -> tokens
  (B, T·H'·W', 432), the conv5 map of a small depthwise 3D CNN (H' = ⌈H/32⌉, no class token),
  pooled = their mean; the convolutional alternative to MViT for the CPU variants.
* ``ResNet3D`` (``migalab.models.encoders.resnet3d``): RGB clips (B, 3, T, H, W) -> tokens
  (B, T'·H'·W', C), the last stage's map of a dense 3D ResNet on torchvision's video ResNet
  (H' = ⌈H/16⌉; preset "xs": C 128, T' = T, the fast one on CPUs; "r18": torchvision's r3d_18,
  C 512, T' = ⌈T/8⌉, Kinetics weights), pooled = their mean.
* ``SkeletonTransformer`` (``migalab.models.encoders.skeleton_transformer``, MAMP's encoder):
  skeleton (N, C, T, V, M) -> tokens (N, T'·V, dim), one per (t_patch-frame segment, joint),
  averaged over persons, ordered (t', v); pooled = their mean. Pretrained by MAMP
  (``migalab.models.pretrain``).
* ``SwinFaceEncoder`` (``migalab.models.encoders.swinface``): face crops (B, T, 3, 112, 112) or
  images (B, 3, 112, 112) in [0, 255] -> tokens (B, T, 512), one per frame (space -1), pooled
  (B, 512) = mean over visible frames; loads SwinFace's released checkpoint.

A new encoder is one module returning ``EncoderOutput`` plus one yaml in
``conf/model/encoder/`` (``_target_`` and its arguments); an optional ``spatial_positions``
attribute sizes the token fusion's spatial embedding.
"""

from migalab.models.encoders.agcn import AGCN
from migalab.models.encoders.mvit import MViTEncoder
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.encoders.posec3d import SlowOnly
from migalab.models.encoders.resnet3d import ResNet3D
from migalab.models.encoders.skeleton_transformer import SkeletonTransformer
from migalab.models.encoders.swinface import SwinFaceEncoder
from migalab.models.encoders.x3d import X3D

__all__ = [
    "AGCN",
    "EncoderOutput",
    "MViTEncoder",
    "ResNet3D",
    "SkeletonTransformer",
    "SlowOnly",
    "SwinFaceEncoder",
    "X3D",
    "grid_index",
]
