"""Temporal sampling: ``uniform_frame_indices`` and ``UniformSample`` (pyskl's
``UniformSampleFrames`` over the whole clip, one frame per equal segment)."""

from __future__ import annotations

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.transforms.common import replace_record
from migalab.data.transforms_base import RandomTransform, SeedLike

__all__ = ["UniformSample", "uniform_frame_indices"]


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
        return replace_record(
            record,
            {"frame_inds": frame_inds},
            keypoint=record.keypoint[:, inds],
            keypoint_score=record.keypoint_score[:, inds],
        )

    def __repr__(self) -> str:
        return f"UniformSample(num_frames={self.num_frames}, test_mode={self.test_mode})"
