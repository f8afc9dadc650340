"""Input checks, the first step of every skeleton pipeline: ``validate_clip`` / ``ValidateClip``.

Bad input
---------
``ValidateClip`` raises ``ValueError`` naming the clip for: zero frames, zero persons or joints,
non-finite (NaN / inf) coordinates or scores, negative scores, inconsistent array shapes. With
``ValidateClip(nan="missing")`` a keypoint whose x, y or score is NaN becomes a missing keypoint
(0, 0, score 0) instead (count in ``meta["nan_keypoints"]``); inf is always an error. A clip whose
keypoints are *all* missing is allowed through by default (``allow_all_missing=True``): real pose
extraction fails on some clips and every test clip needs a prediction, so such a clip yields an
all-zero input (``meta["all_missing"] = True``) instead of crashing a training epoch. Pass
``allow_all_missing=False`` to raise instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.transforms.common import replace_record

__all__ = ["ValidateClip", "validate_clip"]


def validate_clip(record: ClipRecord, allow_all_missing: bool = True) -> None:
    """Raise ``ValueError`` naming the clip if its skeleton is unusable (see the module docstring)."""
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
        return replace_record(record, updates)

    def __repr__(self) -> str:
        return f"ValidateClip(allow_all_missing={self.allow_all_missing}, nan={self.nan!r})"
