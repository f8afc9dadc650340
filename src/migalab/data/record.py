"""The one clip record every reader produces and every transform consumes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Label used for clips whose class is unknown (hidden test labels).
UNKNOWN_LABEL = -1


@dataclass
class ClipRecord:
    """A labelled interval of one video, with its skeleton sequence.

    Attributes:
        name: clip id, ``<vid>_<row>`` for MiGA releases.
        video_id: the source video id (``"0001"``).
        start, end: 0-based inclusive frame interval inside the source video.
        label: 0-based micro-gesture class, ``UNKNOWN_LABEL`` when hidden.
        keypoint: (M, T, V, 2) float32 pixel coordinates (M persons, T frames, V joints).
        keypoint_score: (M, T, V) float32 confidences; 0 means missing.
        img_shape: (height, width) of the source frames in pixels.
        layout: name of the joint layout the V axis follows (``openpose137``, ``imigue22``, ...).
        video_path: optional path to the RGB video this clip was cut from.
        emotion: optional per-video emotion label (0 lose, 1 win).
        meta: free-form extras (split, source file, ...).
    """

    name: str
    video_id: str
    start: int
    end: int
    label: int
    keypoint: np.ndarray
    keypoint_score: np.ndarray
    img_shape: tuple[int, int]
    layout: str = "openpose137"
    video_path: str | None = None
    emotion: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        """T, the number of frames carried in ``keypoint``."""
        return int(self.keypoint.shape[1])

    @property
    def num_joints(self) -> int:
        """V, the number of joints carried in ``keypoint``."""
        return int(self.keypoint.shape[2])

    def replace(self, **changes: Any) -> ClipRecord:
        """A shallow copy with some fields replaced (transforms never mutate their input)."""
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the clip if arrays are inconsistent."""
        kp, sc = self.keypoint, self.keypoint_score
        if kp.ndim != 4 or kp.shape[-1] != 2:
            raise ValueError(f"clip {self.name}: keypoint must be (M, T, V, 2), got {kp.shape}")
        if sc.shape != kp.shape[:3]:
            raise ValueError(
                f"clip {self.name}: keypoint_score {sc.shape} does not match keypoint {kp.shape}"
            )
        if self.end < self.start:
            raise ValueError(f"clip {self.name}: end frame {self.end} < start frame {self.start}")
