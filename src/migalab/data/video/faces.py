"""Face tracks from the skeleton: one square face box per frame, smoothed, with a visibility flag.

The emotion stream (SwinFace, System B) looks at the face, and the face is small in an interview
frame (~60-120 px of 1280x720), so it is cropped per frame from the skeleton's face keypoints:

1. per frame, the face extent from the OpenPose face landmarks (keypoints 25-94) whose confidence
   exceeds ``threshold``: the centre of their bounding box and its larger side;
2. when fewer than ``min_points`` landmarks are valid, a fallback from the head points of
   BODY_25 (0 nose, 15/16 eyes, 17/18 ears): the centre is their mean, the side
   ``ear_scale`` x the ear-to-ear distance, else ``eye_scale`` x the eye-to-eye distance
   (a frame with only a nose / one eye keeps its centre and takes its side from neighbouring
   frames);
3. a frame with neither is NOT visible (``visible[t] = False``);
4. centre and side are smoothed over time by a centred moving average of ``smooth`` frames that
   ignores frames without a value, then filled over the gaps by linear interpolation (held
   constant before the first and after the last known frame). A clip with no visible face at all
   gets a centred box of ``default_side`` x the frame's shorter side: boxes are never zeros and
   never NaN, ``visible`` says which frames really show a face;
5. the box is the square of side ``side x (1 + 2 margin)`` around the centre, in pixel edges (a
   keypoint at pixel centre ``x`` sits at edge ``x + 0.5``; see
   :mod:`migalab.data.video.transforms`). It may leave the frame (crops pad with black).

Shapes: keypoints (T, 137, 3) = (x, y, confidence) in pixels, missing = (0, 0, 0);
boxes (T, 4) float64 ``(x0, y0, x1, y1)``; visible (T,) bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from migalab.data.skeleton.layouts import FACE_OFFSET, NUM_OPENPOSE, get_layout

__all__ = ["FaceTrack", "face_track", "keypoints137", "smooth_missing"]

#: OpenPose face landmarks (68 iBUG points + 2 pupils).
FACE_POINTS = np.arange(FACE_OFFSET, FACE_OFFSET + 70)
NOSE, R_EYE, L_EYE, R_EAR, L_EAR = 0, 15, 16, 17, 18
SOURCE_NONE, SOURCE_FACE, SOURCE_HEAD = 0, 1, 2


@dataclass(frozen=True)
class FaceTrack:
    """Per-frame face boxes of one clip.

    Attributes:
        boxes: (T, 4) float64 ``(x0, y0, x1, y1)`` square boxes in pixel edges; finite everywhere
            (interpolated / held where no face is visible).
        visible: (T,) bool, a face (landmarks or head points) was detected in the frame.
        source: (T,) int8, 1 = face landmarks, 2 = head-point fallback, 0 = none.
    """

    boxes: np.ndarray
    visible: np.ndarray
    source: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def smooth_missing(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over frames ignoring NaNs, then linear interpolation over the
    remaining NaNs (held before the first / after the last value).

    Args:
        values: (T,) or (T, C) float; NaN = unknown.
        window: odd frame count of the average (1 = no smoothing; an even value is rounded up).

    Returns:
        Same shape, float64; all NaN columns stay NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    squeeze = v.ndim == 1
    v = v.reshape(v.shape[0], -1)
    t = v.shape[0]
    known = np.isfinite(v)
    out = v.copy()
    half = max(0, int(window) // 2)
    if half and t:
        # windowed sums of the known values and their counts by cumulative sums (O(T))
        csum = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(np.where(known, v, 0.0), 0)])
        ccnt = np.concatenate([np.zeros((1, v.shape[1])), np.cumsum(known, 0)])
        lo = np.clip(np.arange(t) - half, 0, t)
        hi = np.clip(np.arange(t) + half + 1, 0, t)
        cnt = ccnt[hi] - ccnt[lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            avg = (csum[hi] - csum[lo]) / cnt
        out = np.where(known, avg, np.nan)  # smooth only where the frame had a value
    idx = np.arange(t)
    for c in range(out.shape[1]):
        ok = np.isfinite(out[:, c])
        if ok.any() and not ok.all():
            out[:, c] = np.interp(idx, idx[ok], out[ok, c])
    return out[:, 0] if squeeze else out


def keypoints137(keypoint: np.ndarray, score: np.ndarray, layout: str) -> np.ndarray:
    """One person's keypoints as (T, 137, 3) OpenPose-137 (x, y, confidence): a layout's joints
    scattered to their OpenPose indices, the others missing (0, 0, 0).

    Args:
        keypoint: (T, V, 2) pixels of ``layout``'s V joints.
        score: (T, V) confidences.
        layout: the joint layout (``openpose137``, ``imigue22``, ...).
    """
    kp = np.asarray(keypoint, dtype=np.float64)
    sc = np.asarray(score, dtype=np.float64)
    if layout == "openpose137":
        return np.concatenate([kp, sc[..., None]], -1)
    out = np.zeros((kp.shape[0], NUM_OPENPOSE, 3))
    idx = np.asarray(get_layout(layout).indices, dtype=np.intp)
    out[:, idx, :2] = kp
    out[:, idx, 2] = sc
    return out


def face_track(
    keypoints: np.ndarray,
    img_shape: Sequence[int],
    threshold: float = 0.3,
    min_points: int = 10,
    margin: float = 0.25,
    smooth: int = 5,
    ear_scale: float = 1.1,
    eye_scale: float = 2.4,
    default_side: float = 0.15,
) -> FaceTrack:
    """The face track of one person's keypoints (module docstring).

    Args:
        keypoints: (T, 137, 3) OpenPose-137 (x, y, confidence) in pixels; missing = (0, 0, 0)
            (use :func:`keypoints137` for other layouts).
        img_shape: (H, W) of the keypoint frame.
        threshold: a keypoint counts when its confidence is above this.
        min_points: face landmarks needed to use them (else the head-point fallback).
        margin: the square's side is the face extent x ``(1 + 2 margin)``.
        smooth: centred moving-average window in frames (1 = none).
        ear_scale, eye_scale: face extent per ear-to-ear / eye-to-eye distance (fallback).
        default_side: side of the extent (fraction of min(H, W)) when no frame gives one.

    Returns:
        :class:`FaceTrack`: boxes (T, 4), visible (T,) bool, source (T,) int8.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1] != NUM_OPENPOSE or kp.shape[2] != 3:
        raise ValueError(f"face_track: keypoints must be (T, 137, 3), got {kp.shape}")
    if margin < 0 or min_points < 1:
        raise ValueError(
            f"face_track: need margin >= 0 and min_points >= 1, got {margin}, {min_points}"
        )
    h_img, w_img = (float(v) for v in img_shape[:2])
    t = kp.shape[0]
    xy, conf = kp[..., :2], kp[..., 2]
    ok = (conf > threshold) & np.isfinite(xy).all(-1) & np.isfinite(conf)

    # 1. face landmarks: bounding-box centre and larger side
    f_ok = ok[:, FACE_POINTS]
    f_xy = xy[:, FACE_POINTS]
    n_face = f_ok.sum(1)
    use_face = n_face >= min_points
    lo = np.where(f_ok[..., None], f_xy, np.inf).min(1)  # (T, 2)
    hi = np.where(f_ok[..., None], f_xy, -np.inf).max(1)
    centre = np.full((t, 2), np.nan)
    side = np.full(t, np.nan)
    centre[use_face] = (lo[use_face] + hi[use_face]) / 2.0
    side[use_face] = (hi[use_face] - lo[use_face]).max(1)

    # 2. head-point fallback
    head = [NOSE, R_EYE, L_EYE, R_EAR, L_EAR]
    h_ok = ok[:, head]
    use_head = ~use_face & h_ok.any(1)
    if use_head.any():
        h_xy = xy[:, head]
        cnt = np.maximum(h_ok.sum(1, keepdims=True), 1)
        mean = np.where(h_ok[..., None], h_xy, 0.0).sum(1) / cnt
        centre[use_head] = mean[use_head]
        ears = h_ok[:, 3] & h_ok[:, 4]
        eyes = h_ok[:, 1] & h_ok[:, 2]
        d_ears = np.linalg.norm(h_xy[:, 3] - h_xy[:, 4], axis=-1) * ear_scale
        d_eyes = np.linalg.norm(h_xy[:, 1] - h_xy[:, 2], axis=-1) * eye_scale
        fb_side = np.where(ears, d_ears, np.where(eyes, d_eyes, np.nan))
        fb_side[fb_side <= 0] = np.nan
        side[use_head] = fb_side[use_head]
    visible = use_face | use_head
    source = np.where(use_face, SOURCE_FACE, np.where(use_head, SOURCE_HEAD, SOURCE_NONE))

    # 3-4. smooth over time, fill the gaps; defaults when nothing is known
    centre = smooth_missing(centre, smooth)
    side = smooth_missing(side, smooth)
    if not np.isfinite(centre).all():
        centre[:] = (w_img / 2.0 - 0.5, h_img / 2.0 - 0.5)
    if not np.isfinite(side).all():
        side[:] = default_side * min(h_img, w_img)
    side = np.maximum(side, 1.0) * (1.0 + 2.0 * margin)
    c = centre + 0.5  # pixel centres -> edges
    boxes = np.stack(
        [c[:, 0] - side / 2, c[:, 1] - side / 2, c[:, 0] + side / 2, c[:, 1] + side / 2], -1
    )
    return FaceTrack(boxes=boxes, visible=visible, source=source.astype(np.int8))
