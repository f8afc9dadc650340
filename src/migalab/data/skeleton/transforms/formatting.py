"""Formatting, the terminal step of the GCN pipeline: ``FormatGCNInput`` (record -> float32
(C, T, V, M) array)."""

from __future__ import annotations

import numpy as np

from migalab.data.record import ClipRecord

__all__ = ["FormatGCNInput"]


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
