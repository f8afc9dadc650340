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
``migalab.data.skeleton.heatmap_pipeline``.

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

Randomness and reproducibility
------------------------------
Random transforms take ``seed: int | np.random.SeedSequence | np.random.Generator | None``.

* ``None`` (use this for training): the transform lazily builds
  ``np.random.default_rng([torch.initial_seed(), crc32(class name)])`` and rebuilds it whenever
  ``torch.initial_seed()`` changes. Inside a DataLoader worker ``torch.initial_seed()`` is
  ``base_seed + worker_id`` (``base_seed`` is drawn from the main process' torch RNG each time an
  iterator is created), so every worker and every epoch gets its own stream, and the whole run is
  reproducible once torch is seeded (``torch.manual_seed`` / Lightning ``seed_everything``). No
  ``worker_init_fn`` is needed.
* An int / SeedSequence / Generator gives one fixed stream (tests, one-off deterministic use).
  NOTE: a fixed stream is copied into every DataLoader worker and re-copied every epoch with
  non-persistent workers, so augmentations would repeat; do not use a fixed seed for training.

Bad input
---------
``ValidateClip`` (the pipeline's first step) raises ``ValueError`` naming the clip for: zero frames,
zero persons or joints, non-finite (NaN / inf) coordinates or scores, negative scores, inconsistent
array shapes. With ``ValidateClip(nan="missing")`` a keypoint whose x, y or score is NaN becomes a
missing keypoint (0, 0, score 0) instead (count in ``meta["nan_keypoints"]``); inf is always an
error. A clip whose keypoints are *all* missing is allowed through by default
(``allow_all_missing=True``): real pose extraction fails on some clips and every test clip needs a
prediction, so such a clip yields an all-zero input (``meta["all_missing"] = True``) instead of
crashing a training epoch. Pass ``allow_all_missing=False`` to raise instead.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import JointLayout, get_layout

__all__ = [
    "STREAMS",
    "Compose",
    "FormatGCNInput",
    "InterpolateMissing",
    "NormalizeSkeleton",
    "RandomAffine",
    "RandomFlip",
    "RandomTransform",
    "SelectLayout",
    "ToBone",
    "ToMotion",
    "UniformSample",
    "ValidateClip",
    "build_skeleton_pipeline",
    "temporal_steps",
    "uniform_frame_indices",
    "validate_clip",
]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None
STREAMS = ("joint", "bone", "joint_motion", "bone_motion")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _as_layout(layout: str | JointLayout) -> JointLayout:
    return get_layout(layout) if isinstance(layout, str) else layout


def _with(
    record: ClipRecord, meta_updates: Mapping[str, Any] | None = None, **changes: Any
) -> ClipRecord:
    """A new record with ``changes`` and a copied ``meta`` updated by ``meta_updates``."""
    meta = dict(record.meta)
    if meta_updates:
        meta.update(meta_updates)
    return record.replace(meta=meta, **changes)


def _is_body_space(record: ClipRecord) -> bool:
    return record.meta.get("space", "pixel") == "body"


def validate_clip(record: ClipRecord, allow_all_missing: bool = True) -> None:
    """Raise ``ValueError`` naming the clip if its skeleton is unusable (see module docstring)."""
    record.validate()
    kp, sc = record.keypoint, record.keypoint_score
    m, t, v = sc.shape
    if t == 0:
        raise ValueError(f"clip {record.name}: has zero frames (keypoint shape {kp.shape})")
    if m == 0:
        raise ValueError(f"clip {record.name}: has zero persons (keypoint shape {kp.shape})")
    if v == 0:
        raise ValueError(f"clip {record.name}: has zero joints (keypoint shape {kp.shape})")
    bad = ~np.isfinite(kp)
    if bad.any():
        frames = np.unique(np.nonzero(bad)[1])
        raise ValueError(
            f"clip {record.name}: {int(bad.sum())} non-finite (NaN/inf) keypoint coordinates "
            f"in frames {frames[:10].tolist()}{' ...' if frames.size > 10 else ''}"
        )
    bad = ~np.isfinite(sc)
    if bad.any():
        raise ValueError(f"clip {record.name}: {int(bad.sum())} non-finite keypoint scores")
    if (sc < 0).any():
        raise ValueError(f"clip {record.name}: negative keypoint scores (min {sc.min():g})")
    if not allow_all_missing and not (sc > 0).any():
        raise ValueError(
            f"clip {record.name}: all keypoints are missing (every score is 0 in {t} frames)"
        )


def _weighted_median(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Lower weighted median of ``x`` over its last axis with weights ``w >= 0``.

    Shapes: x, w (..., N) -> (...); NaN where the total weight is 0.
    """
    w = np.broadcast_to(w, x.shape)
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    cw = np.cumsum(np.take_along_axis(w, order, axis=-1), axis=-1)
    total = cw[..., -1]
    idx = np.argmax(cw >= 0.5 * total[..., None], axis=-1)
    med = np.take_along_axis(xs, idx[..., None], axis=-1)[..., 0]
    return np.where(total > 0, med, np.nan)


# --------------------------------------------------------------------------------------------
# composition and randomness
# --------------------------------------------------------------------------------------------
class Compose:
    """Apply transforms in order. The last one may be terminal (``FormatGCNInput`` -> ndarray)."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, record: ClipRecord) -> Any:
        out: Any = record
        for t in self.transforms:
            out = t(out)
        return out

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Callable[[Any], Any]:
        return self.transforms[i]

    def __repr__(self) -> str:
        inner = "".join(f"\n  {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class RandomTransform:
    """Base class owning the numpy Generator of a random transform (see module docstring)."""

    def __init__(self, seed: SeedLike = None) -> None:
        self._fixed = seed is not None
        self._rng: np.random.Generator | None = (
            None if seed is None else np.random.default_rng(seed)
        )
        self._torch_seed: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        """The generator for the next draw (re-seeded from torch when not fixed)."""
        if self._fixed:
            assert self._rng is not None
            return self._rng
        s = torch.initial_seed()
        if self._rng is None or s != self._torch_seed:
            salt = zlib.crc32(type(self).__name__.encode())
            self._rng = np.random.default_rng([s, salt])
            self._torch_seed = s
        return self._rng

    def rng_state(self) -> dict[str, Any] | None:
        """Where this transform's training stream stands (for mid-epoch checkpoints): the torch
        seed it was built from and the generator state; None for a fixed seed or an unused
        stream."""
        if self._fixed or self._rng is None:
            return None
        return {"seed": self._torch_seed, "state": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`rng_state` (ignored for a fixed seed). The stream
        is rebuilt as usual once ``torch.initial_seed()`` differs from the saved seed."""
        if self._fixed:
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = state["state"]
        self._rng, self._torch_seed = rng, state["seed"]


# --------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------
def _nan_to_missing(record: ClipRecord) -> tuple[ClipRecord, int]:
    """Turn keypoints with a NaN x, y or score into missing ones (0, 0, score 0).

    Returns the (new or same) record and the number of (person, frame, joint) keypoints changed.
    """
    kp, sc = record.keypoint, record.keypoint_score
    if kp.ndim != 4 or sc.shape != kp.shape[:3]:
        return record, 0  # shape errors are reported by validate_clip
    nan = np.isnan(kp).any(axis=-1) | np.isnan(sc)
    n = int(nan.sum())
    if n == 0:
        return record, 0
    kp = np.where(nan[..., None], 0.0, kp).astype(kp.dtype, copy=False)
    sc = np.where(nan, 0.0, sc).astype(sc.dtype, copy=False)
    return record.replace(keypoint=kp, keypoint_score=sc), n


class ValidateClip:
    """Check a record (see ``validate_clip``); returns a new (shallow) record, with
    ``meta["all_missing"]`` set.

    Args:
        allow_all_missing: let clips whose keypoints are all missing through (see module doc).
        nan: ``"error"`` raises on NaN coordinates / scores; ``"missing"`` turns every keypoint
            with a NaN x, y or score into a missing one (0, 0, score 0) and reports the count in
            ``meta["nan_keypoints"]``. Infinite values raise in both modes.
    """

    def __init__(self, allow_all_missing: bool = True, nan: str = "error") -> None:
        if nan not in ("error", "missing"):
            raise ValueError(f"nan must be 'error' or 'missing', got {nan!r}")
        self.allow_all_missing = allow_all_missing
        self.nan = nan

    def __call__(self, record: ClipRecord) -> ClipRecord:
        updates: dict[str, Any] = {}
        if self.nan == "missing":
            record, n = _nan_to_missing(record)
            updates["nan_keypoints"] = n
        validate_clip(record, self.allow_all_missing)
        updates["all_missing"] = not bool((record.keypoint_score > 0).any())
        return _with(record, updates)

    def __repr__(self) -> str:
        return f"ValidateClip(allow_all_missing={self.allow_all_missing}, nan={self.nan!r})"


class SelectLayout:
    """Keep the joints of ``layout``: (M, T, V_src, ·) -> (M, T, V, ·).

    The record's layout must contain every joint of the target (``openpose137`` contains all);
    a no-op when the record already has the target layout.
    """

    def __init__(self, layout: str | JointLayout) -> None:
        self.layout = _as_layout(layout)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if record.layout == self.layout.name:
            return _with(record)
        src = get_layout(record.layout)
        if record.num_joints != src.num_joints:
            raise ValueError(
                f"clip {record.name}: layout {src.name} has {src.num_joints} joints but the "
                f"keypoints have {record.num_joints}"
            )
        lut = np.full(max(max(src.indices), max(self.layout.indices)) + 1, -1, dtype=np.int64)
        lut[np.asarray(src.indices)] = np.arange(src.num_joints)
        pos = lut[np.asarray(self.layout.indices)]
        if (pos < 0).any():
            raise ValueError(
                f"clip {record.name}: layout {src.name} lacks joints of {self.layout.name}"
            )
        return _with(
            record,
            keypoint=np.ascontiguousarray(record.keypoint[:, :, pos]),
            keypoint_score=np.ascontiguousarray(record.keypoint_score[:, :, pos]),
            layout=self.layout.name,
        )

    def __repr__(self) -> str:
        return f"SelectLayout({self.layout.name!r})"


class InterpolateMissing:
    """Fill missing keypoints by linear interpolation over time, per person and joint.

    A keypoint is *missing* when its score is ``<= threshold`` or its x, y or score is NaN.
    For each (person, joint) series over the T frames:

    * a missing frame between two valid frames ``a < t < b`` gets
      ``x_t = x_a + (t - a) / (b - a) * (x_b - x_a)`` (same for y), and the score is
      interpolated the same way between the two valid scores (so it stays ``> threshold``);
    * missing frames before the first / after the last valid frame take the nearest valid
      keypoint and its score (constant extrapolation);
    * a joint never valid in the clip becomes (0, 0) with score 0 everywhere (also dropping any
      detections with ``0 < score <= threshold``).

    Valid keypoints are unchanged. Fully vectorised: forward ``np.maximum.accumulate`` of the
    valid frame indices gives the previous valid frame, a reversed ``np.minimum.accumulate`` the
    next one; then gather and lerp. Shapes unchanged: keypoint (M, T, V, 2), score (M, T, V),
    float32. Sets ``meta["interpolated"]`` = number of keypoints filled.
    """

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = float(threshold)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        kp = np.asarray(record.keypoint, dtype=np.float64)
        sc = np.asarray(record.keypoint_score, dtype=np.float64)
        t = sc.shape[1]
        with np.errstate(invalid="ignore"):
            valid = (sc > self.threshold) & ~np.isnan(sc) & ~np.isnan(kp).any(axis=-1)
        kp = np.where(valid[..., None], kp, 0.0)
        sc = np.where(valid, sc, 0.0)
        frames = np.arange(t).reshape(1, t, 1)
        prev = np.maximum.accumulate(np.where(valid, frames, -1), axis=1)  # (M, T, V)
        nxt = np.minimum.accumulate(np.where(valid, frames, t)[:, ::-1], axis=1)[:, ::-1]
        has_prev, has_next = prev >= 0, nxt < t
        lo = np.where(has_prev, prev, nxt)  # ends: both neighbours are the nearest valid frame
        hi = np.where(has_next, nxt, prev)
        never = ~(has_prev | has_next)
        lo = np.where(never, 0, lo)
        hi = np.where(never, 0, hi)
        span = hi - lo
        w = np.where(span > 0, (frames - lo) / np.maximum(span, 1), 0.0)  # (M, T, V)
        kp_lo = np.take_along_axis(kp, lo[..., None], axis=1)
        kp_hi = np.take_along_axis(kp, hi[..., None], axis=1)
        sc_lo = np.take_along_axis(sc, lo, axis=1)
        sc_hi = np.take_along_axis(sc, hi, axis=1)
        new_kp = kp_lo + w[..., None] * (kp_hi - kp_lo)
        new_sc = sc_lo + w * (sc_hi - sc_lo)
        new_kp = np.where(never[..., None], 0.0, new_kp)
        new_sc = np.where(never, 0.0, new_sc)
        filled = int((~valid & ~never).sum())
        return _with(
            record,
            {"interpolated": filled},
            keypoint=new_kp.astype(np.float32),
            keypoint_score=new_sc.astype(np.float32),
        )

    def __repr__(self) -> str:
        return f"InterpolateMissing(threshold={self.threshold})"


def uniform_frame_indices(
    total: int, num: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """(num,) int64 indices into ``total`` frames, one per equal segment.

    The clip is split into ``num`` equal segments; ``rng`` given (train): a uniformly random frame
    of each segment; ``rng`` None (test): the segment centre, deterministic. For
    ``total >= num`` the segments are the integer bins ``[i*total//num, (i+1)*total//num)`` (no
    frame repeats, as pyskl's ``UniformSampleFrames`` for long clips); for ``total < num`` frame
    ``floor((i + u) * total / num)`` (u ~ U[0,1) or 0.5) so frames repeat evenly over the whole
    clip (pyskl instead loops a random window). Indices are always non-decreasing.
    """
    if total <= 0:
        raise ValueError(f"cannot sample {num} frames from a clip with {total} frames")
    if num <= 0:
        raise ValueError(f"num_frames must be positive, got {num}")
    if total >= num:
        bids = (np.arange(num + 1, dtype=np.int64) * total) // num
        size = np.diff(bids)
        off = size // 2 if rng is None else np.floor(rng.random(num) * size).astype(np.int64)
        inds = bids[:-1] + off
    else:
        u = 0.5 if rng is None else rng.random(num)
        inds = np.floor((np.arange(num) + u) * total / num).astype(np.int64)
    return np.clip(inds, 0, total - 1)


class UniformSample(RandomTransform):
    """Sample ``num_frames`` frames uniformly over the whole clip: (M, T, V, ·) -> (M, F, V, ·).

    See ``uniform_frame_indices``. ``test_mode=True`` is deterministic (segment centres). The
    indices, composed with any earlier sampling, go to ``meta["frame_inds"]``.
    """

    def __init__(self, num_frames: int, test_mode: bool = False, seed: SeedLike = None) -> None:
        super().__init__(seed)
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.num_frames = int(num_frames)
        self.test_mode = test_mode

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if record.num_frames == 0:
            raise ValueError(f"clip {record.name}: has zero frames, cannot sample")
        rng = None if self.test_mode else self.rng
        inds = uniform_frame_indices(record.num_frames, self.num_frames, rng)
        prev = record.meta.get("frame_inds")
        frame_inds = np.asarray(prev)[inds] if prev is not None else inds
        return _with(
            record,
            {"frame_inds": frame_inds},
            keypoint=record.keypoint[:, inds],
            keypoint_score=record.keypoint_score[:, inds],
        )

    def __repr__(self) -> str:
        return f"UniformSample(num_frames={self.num_frames}, test_mode={self.test_mode})"


class NormalizeSkeleton:
    """Translate each person to its neck and scale to body units (confidence aware).

    Per person (shapes: keypoint (M, T, V, 2), centre (M, 2), scale (M,)):

    * centre: the confidence-weighted temporal median (per coordinate) of the ``center`` joint
      over frames where its score > ``min_score``; fallback the median shoulder midpoint
      (frames with both shoulders), then the weighted median of all confident joints, then 0.
      One centre per person for the whole clip, so global body motion is kept.
    * scale (``"shoulder"``): the median shoulder width over frames where both shoulders have
      score > ``min_score``; fallback (shoulders never seen) the median distance between pairs
      of confident joints in the same frame (a rough proxy of shoulder width for upper-body
      layouts), then the image height, then 1. Scales <= ``eps`` count as missing, so this never
      divides by 0. ``scale=None`` only translates.
    * missing joints (score 0) stay exactly (0, 0) with score 0; scores are unchanged.

    Sets ``meta["space"] = "body"``, ``meta["norm_center"]`` (M, 2), ``meta["norm_scale"]`` (M,)
    and ``meta["norm_scale_source"]`` (per person: shoulder / pairwise / image / unit). An
    all-missing person or clip stays all zero.
    """

    #: cap on frames x V x V used for the pairwise-distance fallback (memory bound)
    _PAIRWISE_BUDGET = 2_000_000

    def __init__(
        self,
        center: str | None = "neck",
        scale: str | None = "shoulder",
        min_score: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        if scale not in ("shoulder", None):
            raise ValueError(f"scale must be 'shoulder' or None, got {scale!r}")
        self.center, self.scale, self.min_score, self.eps = center, scale, min_score, eps

    def __call__(self, record: ClipRecord) -> ClipRecord:
        layout = get_layout(record.layout)
        names = layout.names
        kp = record.keypoint.astype(np.float64)  # (M, T, V, 2)
        sc = record.keypoint_score.astype(np.float64)  # (M, T, V)
        m, t, v = sc.shape
        valid = sc > 0
        conf = valid & (sc > self.min_score)
        w = np.where(conf, sc, 0.0)
        shoulders = (
            (names.index("l_shoulder"), names.index("r_shoulder"))
            if {"l_shoulder", "r_shoulder"} <= set(names)
            else None
        )
        both = conf[:, :, shoulders[0]] & conf[:, :, shoulders[1]] if shoulders else None

        # ---- centre (M, 2)
        center = np.zeros((m, 2))
        if self.center is not None:
            if self.center not in names:
                raise ValueError(f"layout {layout.name} has no joint named {self.center!r}")
            j = names.index(self.center)
            c = _weighted_median(kp[:, :, j].transpose(0, 2, 1), w[:, None, :, j])
            if shoulders is not None:
                mid = 0.5 * (kp[:, :, shoulders[0]] + kp[:, :, shoulders[1]])  # (M, T, 2)
                c_mid = _weighted_median(mid.transpose(0, 2, 1), both[:, None, :].astype(float))
                c = np.where(np.isnan(c), c_mid, c)
            c_all = _weighted_median(
                kp.transpose(0, 3, 1, 2).reshape(m, 2, t * v), w.reshape(m, 1, t * v)
            )
            c = np.where(np.isnan(c), c_all, c)
            center = np.nan_to_num(c, nan=0.0)

        # ---- scale (M,)
        scale = np.ones(m)
        source = np.full(m, "unit", dtype=object)
        if self.scale == "shoulder":
            s = np.full(m, np.nan)
            if shoulders is not None:
                width = np.linalg.norm(kp[:, :, shoulders[0]] - kp[:, :, shoulders[1]], axis=-1)
                s = _weighted_median(width, both.astype(float))
                s = np.where(s > self.eps, s, np.nan)
            source = np.where(np.isnan(s), source, "shoulder")
            if np.isnan(s).any():
                s_pair = self._pairwise_scale(kp, conf)
                s_pair = np.where(s_pair > self.eps, s_pair, np.nan)
                source = np.where(np.isnan(s) & ~np.isnan(s_pair), "pairwise", source)
                s = np.where(np.isnan(s), s_pair, s)
            height = float(record.img_shape[0]) if record.img_shape else 0.0
            if height > self.eps:
                source = np.where(np.isnan(s), "image", source)
                s = np.where(np.isnan(s), height, s)
            scale = np.nan_to_num(s, nan=1.0)

        out = (kp - center[:, None, None, :]) / scale[:, None, None, None]
        out = np.where(valid[..., None], out, 0.0).astype(np.float32)
        return _with(
            record,
            {
                "space": "body",
                "norm_center": center.astype(np.float32),
                "norm_scale": scale.astype(np.float32),
                "norm_scale_source": tuple(str(x) for x in source),
            },
            keypoint=out,
            keypoint_score=record.keypoint_score.copy(),
        )

    def _pairwise_scale(self, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """(M,) median distance between confident joint pairs in the same frame (NaN if none)."""
        m, t, v, _ = kp.shape
        n = max(1, min(t, self._PAIRWISE_BUDGET // max(1, v * v)))
        frames = np.unique(np.linspace(0, t - 1, n).round().astype(np.int64))
        k, c = kp[:, frames], conf[:, frames]  # (M, F, V, 2), (M, F, V)
        d = np.linalg.norm(k[:, :, :, None] - k[:, :, None, :], axis=-1)  # (M, F, V, V)
        pair = c[:, :, :, None] & c[:, :, None, :] & np.triu(np.ones((v, v), bool), 1)
        return _weighted_median(d.reshape(m, -1), pair.reshape(m, -1).astype(float))

    def __repr__(self) -> str:
        return (
            f"NormalizeSkeleton(center={self.center!r}, scale={self.scale!r}, "
            f"min_score={self.min_score})"
        )


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
        shift: float | tuple[float, float] | None = 0.1,
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
            if _is_body_space(record):
                origin = np.zeros(2)
            else:
                h, w = record.img_shape
                origin = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
                t = t * np.array([w, h], dtype=float)
            mat = np.concatenate([lin, (origin - lin @ origin + t)[:, None]], axis=1)
        kp = record.keypoint.astype(np.float64) @ mat[:, :2].T + mat[:, 2]
        kp = np.where(record.keypoint_score[..., None] > 0, kp, 0.0).astype(np.float32)
        return _with(
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
            return _with(record)
        flip = get_layout(record.layout).flip_index
        valid = record.keypoint_score > 0
        kp = record.keypoint.copy()
        x = kp[..., 0]
        x = -x if _is_body_space(record) else (record.img_shape[1] - 1) - x
        kp[..., 0] = np.where(valid, x, 0.0)
        return _with(
            record,
            {"flipped": not record.meta.get("flipped", False)},
            keypoint=np.ascontiguousarray(kp[:, :, flip]),
            keypoint_score=np.ascontiguousarray(record.keypoint_score[:, :, flip]),
        )

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class ToBone:
    """Joint -> bone stream: ``bone[v] = joint[v] - joint[parent[v]]`` (layout tree).

    The centre's bone is (0, 0) with the centre's score; a bone's score is the min of its two
    ends' scores, so a bone is missing (score 0, coordinates 0) when either end is missing.
    Shapes unchanged (M, T, V, 2). Sets ``meta["stream"] = "bone"``.
    """

    def __call__(self, record: ClipRecord) -> ClipRecord:
        stream = record.meta.get("stream", "joint")
        if stream != "joint":
            raise ValueError(f"clip {record.name}: ToBone expects a joint stream, got {stream}")
        parents = get_layout(record.layout).parents
        sc = np.minimum(record.keypoint_score, record.keypoint_score[:, :, parents])
        bone = record.keypoint - record.keypoint[:, :, parents]
        bone = np.where(sc[..., None] > 0, bone, 0.0).astype(np.float32)
        return _with(record, {"stream": "bone"}, keypoint=bone, keypoint_score=sc)

    def __repr__(self) -> str:
        return "ToBone()"


class ToMotion:
    """Temporal difference: ``motion[t] = x[t+1] - x[t]``; the last frame is 0 with score 0.

    A motion vector's score is the min of the two frames' scores (missing if either is).
    Shapes unchanged (M, T, V, 2). Sets ``meta["stream"]`` to ``<stream>_motion``.
    """

    def __call__(self, record: ClipRecord) -> ClipRecord:
        stream = record.meta.get("stream", "joint")
        if stream.endswith("motion"):
            raise ValueError(f"clip {record.name}: ToMotion applied twice ({stream})")
        kp, sc = record.keypoint, record.keypoint_score
        motion = np.zeros_like(kp, dtype=np.float32)
        msc = np.zeros_like(sc)
        motion[:, :-1] = kp[:, 1:] - kp[:, :-1]
        msc[:, :-1] = np.minimum(sc[:, 1:], sc[:, :-1])
        motion = np.where(msc[..., None] > 0, motion, 0.0).astype(np.float32)
        return _with(record, {"stream": f"{stream}_motion"}, keypoint=motion, keypoint_score=msc)

    def __repr__(self) -> str:
        return "ToMotion()"


class FormatGCNInput:
    """Terminal step: record -> float32 ndarray (C, T, V, M).

    C = 3 (x, y, score) for ``channels="xyc"`` or 2 (x, y) for ``"xy"``. Persons are padded with
    zeros or cropped to ``num_persons``; when cropping, the persons with the largest summed score
    are kept, in their original order.
    """

    def __init__(self, num_persons: int = 1, channels: str = "xyc") -> None:
        if channels not in ("xyc", "xy"):
            raise ValueError(f"channels must be 'xyc' or 'xy', got {channels!r}")
        if num_persons <= 0:
            raise ValueError(f"num_persons must be positive, got {num_persons}")
        self.num_persons, self.channels = int(num_persons), channels

    def __call__(self, record: ClipRecord) -> np.ndarray:
        kp, sc = record.keypoint, record.keypoint_score
        m = kp.shape[0]
        if m > self.num_persons:
            keep = np.argsort(-sc.sum(axis=(1, 2)), kind="stable")[: self.num_persons]
            keep = np.sort(keep)
            kp, sc = kp[keep], sc[keep]
        feats = [kp, sc[..., None]] if self.channels == "xyc" else [kp]
        x = np.concatenate(feats, axis=-1).astype(np.float32)  # (m, T, V, C)
        if x.shape[0] < self.num_persons:
            pad = np.zeros((self.num_persons - x.shape[0], *x.shape[1:]), np.float32)
            x = np.concatenate([x, pad], axis=0)
        return np.ascontiguousarray(x.transpose(3, 1, 2, 0))

    def __repr__(self) -> str:
        return f"FormatGCNInput(num_persons={self.num_persons}, channels={self.channels!r})"


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------
DEFAULT_AUGMENT: dict[str, dict[str, Any]] = {
    "flip": {"p": 0.5},
    "affine": {"scale": (0.9, 1.1), "rotate_deg": 10.0, "shift": 0.1, "p": 1.0},
}


def _augment_kwargs(augment: Mapping[str, Any] | None) -> dict[str, dict[str, Any] | None]:
    """Resolve ``augment``: None -> defaults; per key: missing/True -> default, None/False ->
    off, mapping -> default updated with it."""
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
    the module docstring: leave None for DataLoader training).

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
        aug = _augment_kwargs(augment)
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
