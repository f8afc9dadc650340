"""Pose-related transforms: joint selection, interpolation of missing keypoints over time,
and the bone / motion streams (pyskl's ``pose_related``).

``SelectLayout`` keeps the joints of a layout, ``InterpolateMissing`` fills missing keypoints
linearly over time, ``ToBone`` and ``ToMotion`` derive the bone and motion streams.
"""

from __future__ import annotations

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import JointLayout, get_layout
from migalab.data.skeleton.transforms.common import as_layout, replace_record

__all__ = ["InterpolateMissing", "SelectLayout", "ToBone", "ToMotion"]


class SelectLayout:
    """Keep the joints of ``layout``: (M, T, V_src, ·) -> (M, T, V, ·).

    The record's layout must contain every joint of the target (``openpose137`` contains all);
    a no-op when the record already has the target layout.
    """

    def __init__(self, layout: str | JointLayout) -> None:
        self.layout = as_layout(layout)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        if record.layout == self.layout.name:
            return replace_record(record)
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
        return replace_record(
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
        return replace_record(
            record,
            {"interpolated": filled},
            keypoint=new_kp.astype(np.float32),
            keypoint_score=new_sc.astype(np.float32),
        )

    def __repr__(self) -> str:
        return f"InterpolateMissing(threshold={self.threshold})"


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
        return replace_record(record, {"stream": "bone"}, keypoint=bone, keypoint_score=sc)

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
        return replace_record(
            record, {"stream": f"{stream}_motion"}, keypoint=motion, keypoint_score=msc
        )

    def __repr__(self) -> str:
        return "ToMotion()"
