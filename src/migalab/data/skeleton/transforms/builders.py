"""Pipeline builders: ``temporal_steps`` (the head every skeleton pipeline shares) and
``build_skeleton_pipeline`` (the GCN input pipeline; see the package docstring for its order)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import JointLayout
from migalab.data.skeleton.transforms.augmentations import RandomAffine, RandomFlip, resolve_augment
from migalab.data.skeleton.transforms.formatting import FormatGCNInput
from migalab.data.skeleton.transforms.normalization import NormalizeSkeleton
from migalab.data.skeleton.transforms.pose_related import (
    InterpolateMissing,
    SelectLayout,
    ToBone,
    ToMotion,
)
from migalab.data.skeleton.transforms.sampling import UniformSample
from migalab.data.skeleton.transforms.validation import ValidateClip
from migalab.data.transforms_base import Compose, SeedLike

__all__ = ["STREAMS", "build_skeleton_pipeline", "temporal_steps"]

STREAMS = ("joint", "bone", "joint_motion", "bone_motion")


def temporal_steps(
    layout: str | JointLayout,
    interpolate: Mapping[str, Any] | bool = False,
    allow_all_missing: bool = True,
) -> list[Callable[[ClipRecord], ClipRecord]]:
    """The shared head of the skeleton pipelines (before frame sampling):
    ``ValidateClip -> SelectLayout -> [InterpolateMissing]``.

    ``interpolate``: False / None (NaN keypoints raise), True or ``InterpolateMissing`` kwargs
    (NaN keypoints become missing, then missing keypoints are interpolated over the whole clip).
    """
    if interpolate is None or interpolate is False:
        kwargs = None
    elif interpolate is True:
        kwargs = {}
    elif isinstance(interpolate, Mapping):
        kwargs = dict(interpolate)
    else:
        raise ValueError(f"interpolate must be a bool or a mapping, got {interpolate!r}")
    steps: list[Callable[[ClipRecord], ClipRecord]] = [
        ValidateClip(allow_all_missing, nan="error" if kwargs is None else "missing"),
        SelectLayout(layout),
    ]
    if kwargs is not None:
        steps.append(InterpolateMissing(**kwargs))
    return steps


def build_skeleton_pipeline(
    layout: str | JointLayout,
    num_frames: int,
    stream: str = "joint",
    train: bool = False,
    augment: Mapping[str, Any] | None = None,
    *,
    num_persons: int = 1,
    channels: str = "xyc",
    normalize: Mapping[str, Any] | bool = True,
    interpolate: Mapping[str, Any] | bool = False,
    allow_all_missing: bool = True,
    seed: int | None = None,
) -> Compose:
    """The standard skeleton pipeline: ClipRecord -> float32 ndarray (C, T=num_frames, V, M).

    Order: validate -> select ``layout`` -> [interpolate] -> uniform sample (random per segment when ``train``,
    segment centres otherwise) -> normalise (``normalize``: True, False or NormalizeSkeleton
    kwargs) -> [flip -> affine] when ``train`` -> bone and/or motion per ``stream`` (one of
    ``STREAMS``) -> format (``num_persons``, ``channels``).

    ``augment`` (train only): ``{"flip": {"p": 0.5}, "affine": {"scale": (0.9, 1.1),
    "rotate_deg": 10, "shift": 0.1, "p": 1.0}}`` are the defaults used for None or missing keys;
    a key set to None/False disables that augmentation. ``seed`` fixes all random streams (see
    migalab.data.transforms_base: leave None for DataLoader training).

    ``interpolate`` (False, True or ``InterpolateMissing`` kwargs): when on, NaN keypoints become
    missing ones (``ValidateClip(nan="missing")``) and missing keypoints are linearly
    interpolated over the whole clip (``InterpolateMissing``) before sampling.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; known: {list(STREAMS)}")
    seeds: list[SeedLike] = (
        [None, None, None] if seed is None else list(np.random.SeedSequence(seed).spawn(3))
    )
    steps: list[Callable[[Any], Any]] = [
        *temporal_steps(layout, interpolate, allow_all_missing),
        UniformSample(num_frames, test_mode=not train, seed=seeds[0]),
    ]
    if normalize is not False:
        steps.append(NormalizeSkeleton(**({} if normalize is True else dict(normalize))))
    if train:
        aug = resolve_augment(augment)
        if aug["flip"] is not None:
            steps.append(RandomFlip(**aug["flip"], seed=seeds[1]))
        if aug["affine"] is not None:
            steps.append(RandomAffine(**aug["affine"], seed=seeds[2]))
    if stream.startswith("bone"):
        steps.append(ToBone())
    if stream.endswith("motion"):
        steps.append(ToMotion())
    steps.append(FormatGCNInput(num_persons=num_persons, channels=channels))
    return Compose(steps)
