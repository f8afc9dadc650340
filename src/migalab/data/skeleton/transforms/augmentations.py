"""Training augmentations: ``RandomFlip`` and ``RandomAffine``, their defaults
(``DEFAULT_AUGMENT``) and ``resolve_augment``, which turns a config's ``augment`` mapping into
their keyword arguments (the GCN and the multimodal pipelines both use it).

Both are ``RandomTransform``s (see ``migalab.data.transforms_base`` for the seed semantics).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import get_layout
from migalab.data.skeleton.transforms.common import is_body_space, replace_record
from migalab.data.transforms_base import RandomTransform, SeedLike

__all__ = ["DEFAULT_AUGMENT", "RandomAffine", "RandomFlip", "resolve_augment"]


class RandomAffine(RandomTransform):
    """One random similarity transform per clip (all persons and frames), confident joints only.

    ``x' = s R(θ) (x - o) + o + t`` with ``s ~ U(scale)``, ``θ ~ U(±rotate_deg)``,
    ``t ~ U(±shift)`` per axis. Body space: ``o = 0`` and ``t`` in body units; pixel space:
    ``o`` = image centre and ``t`` a fraction of (W, H). Applied with probability ``p``; the 2x3
    matrix used goes to ``meta["affine"]`` (identity when skipped). ``None`` disables a part.
    """

    def __init__(
        self,
        scale: tuple[float, float] | None = (0.9, 1.1),
        rotate_deg: float | None = 10.0,
        shift: float | tuple[float, float] | None = 0.05,
        p: float = 1.0,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed)
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        self.rotate_deg = 0.0 if rotate_deg is None else float(rotate_deg)
        sh = 0.0 if shift is None else shift
        self.shift = (float(sh), float(sh)) if np.isscalar(sh) else (float(sh[0]), float(sh[1]))
        self.p = float(p)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        rng = self.rng
        # always draw the same amount so the stream does not depend on p's outcome
        u, s_u, r_u = rng.random(3)
        t_u = rng.random(2)
        mat = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if u < self.p:
            s = 1.0 if self.scale is None else self.scale[0] + s_u * (self.scale[1] - self.scale[0])
            th = math.radians((2 * r_u - 1) * self.rotate_deg)
            t = (2 * t_u - 1) * np.asarray(self.shift)
            lin = s * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
            if is_body_space(record):
                origin = np.zeros(2)
            else:
                h, w = record.img_shape
                origin = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
                t = t * np.array([w, h], dtype=float)
            mat = np.concatenate([lin, (origin - lin @ origin + t)[:, None]], axis=1)
        kp = record.keypoint.astype(np.float64) @ mat[:, :2].T + mat[:, 2]
        kp = np.where(record.keypoint_score[..., None] > 0, kp, 0.0).astype(np.float32)
        return replace_record(
            record,
            {"affine": mat.astype(np.float32)},
            keypoint=kp,
            keypoint_score=record.keypoint_score.copy(),
        )

    def __repr__(self) -> str:
        return (
            f"RandomAffine(scale={self.scale}, rotate_deg={self.rotate_deg}, "
            f"shift={self.shift}, p={self.p})"
        )


class RandomFlip(RandomTransform):
    """Mirror horizontally with probability ``p`` and swap left/right joints.

    x -> -x in body space, x -> W - 1 - x in pixel space (confident joints only), then joints
    (and scores) are permuted by the layout's ``flip_index``. Toggles ``meta["flipped"]``.
    """

    def __init__(self, p: float = 0.5, seed: SeedLike = None) -> None:
        super().__init__(seed)
        self.p = float(p)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if not self.rng.random() < self.p:
            return replace_record(record)
        flip = get_layout(record.layout).flip_index
        valid = record.keypoint_score > 0
        kp = record.keypoint.copy()
        x = kp[..., 0]
        x = -x if is_body_space(record) else (record.img_shape[1] - 1) - x
        kp[..., 0] = np.where(valid, x, 0.0)
        return replace_record(
            record,
            {"flipped": not record.meta.get("flipped", False)},
            keypoint=np.ascontiguousarray(kp[:, :, flip]),
            keypoint_score=np.ascontiguousarray(record.keypoint_score[:, :, flip]),
        )

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


DEFAULT_AUGMENT: dict[str, dict[str, Any]] = {
    "flip": {"p": 0.5},
    "affine": {"scale": (0.9, 1.1), "rotate_deg": 10.0, "shift": 0.05, "p": 1.0},
}


def resolve_augment(augment: Mapping[str, Any] | None) -> dict[str, dict[str, Any] | None]:
    """The keyword arguments of ``RandomFlip`` (``"flip"``) and ``RandomAffine`` (``"affine"``)
    for a config's ``augment`` mapping.

    ``augment`` None gives ``DEFAULT_AUGMENT``; per key: missing or True -> the default, None or
    False -> off (the value is None: leave that augmentation out), a mapping -> the default
    updated with it. Affine ``scale`` / ``shift`` sequences become float tuples.

    Raises:
        ValueError: an unknown key, an unknown option of a key, or a value of another type.
    """
    out: dict[str, dict[str, Any] | None] = {k: dict(v) for k, v in DEFAULT_AUGMENT.items()}
    if augment is None:
        return out
    unknown = set(augment) - set(DEFAULT_AUGMENT)
    if unknown:
        raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(out)}")
    for key, val in augment.items():
        if val is None or val is False:
            out[key] = None
        elif val is True:
            continue
        elif isinstance(val, Mapping):
            bad = set(val) - set(DEFAULT_AUGMENT[key])
            if bad:
                raise ValueError(f"unknown {key} augment options {sorted(bad)}")
            merged = dict(DEFAULT_AUGMENT[key])
            merged.update(dict(val))
            out[key] = merged
        else:
            raise ValueError(f"augment[{key!r}] must be a mapping, bool or None, got {val!r}")
    aff = out["affine"]
    if aff is not None:
        for k in ("scale", "shift"):
            if aff.get(k) is not None and not np.isscalar(aff[k]):
                aff[k] = tuple(float(x) for x in aff[k])
    return out
