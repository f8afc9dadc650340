"""Is the "person" of a frame plausible? A per-frame gate on a pose table for online recognition.

A pose estimator run on footage no one curated finds people where there are none (a skeleton
on a bus roof, a few pixels tall) and half-people (a face without shoulders); a classifier reads
a gesture into every one of them. The interviews of iMiGUE show one seated person, upper body and
face in view, so a frame is *plausible* when, with keypoint confidences of at least
``min_confidence`` (OpenPose-137 / BODY_25 indices):

1. the neck (1) and both shoulders (2, 5) are found;
2. the face is: the nose (0) or an eye (15, 16);
3. the body is big enough: the shoulder width is at least ``min_shoulder_width`` of the frame's
   shorter side (a person seen across a street is not the interviewee);
4. the body does not teleport: between two consecutive frames that pass 1-3, the neck moves at
   most ``max_jump`` shoulder widths (the larger of the two), else the later frame fails (a
   detector flickering between people or onto clutter; after a real move the next frame passes
   again).

A run of failing frames shorter than ``min_run`` frames is a keypoint dropout (OpenPose loses a
shoulder for a frame or two; the synthetic release drops keypoints the same way) and passes;
runs of at least ``min_run`` frames that fail are "no person": both tasks treat them as
background. Shapes: table (T, V, 3) with V >= 19 (x, y, confidence in pixels); the gate returns
(T,) bool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE = 0, 1, 2, 5, 15, 16


@dataclass(frozen=True)
class PoseGate:
    """The gate's thresholds (``online.pose_gate``; module docstring)."""

    enabled: bool = True
    min_confidence: float = 0.1
    min_shoulder_width: float = 0.04
    max_jump: float = 1.0
    min_run: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(
                f"pose_gate.min_confidence must be in [0, 1], got {self.min_confidence}"
            )
        if self.min_shoulder_width < 0:
            raise ValueError(
                f"pose_gate.min_shoulder_width must be >= 0, got {self.min_shoulder_width}"
            )
        if not self.max_jump > 0:
            raise ValueError(f"pose_gate.max_jump must be > 0, got {self.max_jump}")
        if isinstance(self.min_run, bool) or not isinstance(self.min_run, int) or self.min_run < 1:
            raise ValueError(f"pose_gate.min_run must be a whole number >= 1, got {self.min_run}")

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> PoseGate:
        """From ``online.pose_gate`` (None: the defaults); unknown keys are refused."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"online.pose_gate takes {', '.join(sorted(known))}; got {unknown}")
        return cls(**options)


def plausible_person(table: np.ndarray, img_shape: tuple[int, int], gate: PoseGate) -> np.ndarray:
    """(T,) bool: the frames of ``table`` (T, V, 3) whose person passes ``gate`` (all True when
    the gate is off); ``img_shape`` (height, width) of the frames in the table's pixels."""
    total = len(table)
    if not gate.enabled:
        return np.ones(total, bool)
    if table.ndim != 3 or table.shape[1] <= L_EYE or table.shape[2] != 3:
        raise ValueError(f"pose gate: expected a (T, V >= 19, 3) table, got {table.shape}")
    conf = table[..., 2] >= gate.min_confidence
    found = conf[:, NECK] & conf[:, R_SHOULDER] & conf[:, L_SHOULDER]
    face = conf[:, NOSE] | conf[:, R_EYE] | conf[:, L_EYE]
    width = np.linalg.norm(table[:, R_SHOULDER, :2] - table[:, L_SHOULDER, :2], axis=-1)
    big = width >= gate.min_shoulder_width * min(img_shape)
    ok = found & face & big
    if total > 1:  # a jump between two consecutive candidate frames: the later one fails
        neck = table[:, NECK, :2]
        step = np.linalg.norm(neck[1:] - neck[:-1], axis=-1)
        jump = ok[1:] & ok[:-1] & (step > gate.max_jump * np.maximum(width[1:], width[:-1]))
        ok[1:] &= ~jump
    if gate.min_run > 1:  # shorter runs of failing frames are keypoint dropouts: they pass
        ok |= ~_runs_at_least(~ok, gate.min_run)
    return ok


def _runs_at_least(mask: np.ndarray, length: int) -> np.ndarray:
    """(T,) bool: the True frames of ``mask`` that lie in runs of at least ``length`` frames."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    out = np.zeros_like(mask, dtype=bool)
    for a, b in zip(starts, ends, strict=True):
        if b - a >= length:
            out[a:b] = True
    return out
