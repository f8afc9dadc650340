"""Skeleton clip transforms: small callables ``ClipRecord -> ClipRecord``.

Every transform returns a NEW record (fresh arrays and a fresh ``meta`` dict; the input record is
never mutated) and is fully vectorised over persons, frames and joints. ``FormatGCNInput`` is the
terminal step: it returns the (C, T, V, M) float32 array a GCN encoder consumes.
``build_skeleton_pipeline`` composes the standard order::

    ValidateClip -> SelectLayout -> [InterpolateMissing] -> UniformSample -> NormalizeSkeleton
        -> [RandomFlip -> RandomAffine]  (train only)
        -> [ToBone] -> [ToMotion]        (per stream)
        -> FormatGCNInput

(``InterpolateMissing`` only with ``interpolate=...``; the validator then turns NaN keypoints
into missing ones instead of raising.) The PoseC3D heatmap pipeline reuses the first steps; see
``migalab.data.skeleton.heatmap_transforms``.

Conventions
-----------
* A joint is *missing* when its score is 0 (OpenPose writes missing keypoints as (0, 0, 0)). Every
  transform keeps missing joints at exactly (0, 0) with score 0.
* ``meta["space"]`` is ``"pixel"`` (absent) or ``"body"`` (set by ``NormalizeSkeleton``); flips and
  affines use the matching geometry (pixel: mirror ``x -> W - 1 - x``, rotate about the image
  centre, shift as a fraction of the frame size; body: mirror ``x -> -x``, rotate about the origin
  (the neck), shift in body units).
* ``meta["frame_inds"]`` (set by ``UniformSample``) holds the sampled frame indices relative to
  the clip's first frame (``record.start``), so the RGB path can decode the same frames.

Randomness: random transforms derive from ``migalab.data.transforms_base.RandomTransform`` (its
docstring gives the seed semantics: ``seed=None`` for training). Bad input: see
``migalab.data.skeleton.transforms.validation``.

Modules (by theme, as pyskl's pipelines)
----------------------------------------
* ``validation``: ``validate_clip``, ``ValidateClip``;
* ``pose_related``: ``SelectLayout``, ``InterpolateMissing``, ``ToBone``, ``ToMotion``;
* ``sampling``: ``uniform_frame_indices``, ``UniformSample``;
* ``normalization``: ``NormalizeSkeleton``;
* ``augmentations``: ``RandomFlip``, ``RandomAffine``, ``DEFAULT_AUGMENT``, ``resolve_augment``;
* ``formatting``: ``FormatGCNInput``;
* ``pipeline``: ``STREAMS``, ``temporal_steps``, ``build_skeleton_pipeline``;
* ``common``: helpers (``as_layout``, ``replace_record``, ``is_body_space``).

Every public name is re-exported here, together with ``Compose``, ``RandomTransform`` and
``SeedLike`` from ``migalab.data.transforms_base``.
"""

from migalab.data.skeleton.transforms.augmentations import (
    DEFAULT_AUGMENT,
    RandomAffine,
    RandomFlip,
    resolve_augment,
)
from migalab.data.skeleton.transforms.builders import (
    STREAMS,
    build_skeleton_pipeline,
    temporal_steps,
)
from migalab.data.skeleton.transforms.formatting import FormatGCNInput
from migalab.data.skeleton.transforms.normalization import NormalizeSkeleton
from migalab.data.skeleton.transforms.pose_related import (
    InterpolateMissing,
    SelectLayout,
    ToBone,
    ToMotion,
)
from migalab.data.skeleton.transforms.sampling import UniformSample, uniform_frame_indices
from migalab.data.skeleton.transforms.validation import ValidateClip, validate_clip
from migalab.data.transforms_base import Compose, RandomTransform, SeedLike

__all__ = [
    "DEFAULT_AUGMENT",
    "STREAMS",
    "Compose",
    "FormatGCNInput",
    "InterpolateMissing",
    "NormalizeSkeleton",
    "RandomAffine",
    "RandomFlip",
    "RandomTransform",
    "SeedLike",
    "SelectLayout",
    "ToBone",
    "ToMotion",
    "UniformSample",
    "ValidateClip",
    "build_skeleton_pipeline",
    "resolve_augment",
    "temporal_steps",
    "uniform_frame_indices",
    "validate_clip",
]
