"""Online recognition: the micro-gestures of a whole sequence, where and what they are.

A clip classifier is slid over the sequence (windows of ``window`` frames every ``stride``; the
last window ends at the last frame), scored in batches through the checkpoint's evaluation
pipeline, and turned into segments:

1. per-frame class probabilities: the mean of the softmax of every window covering the frame
   (:func:`frame_probabilities`, O(T·K) with cumulative sums);
2. a frame is background when its top probability is below ``threshold`` (the classifiers have
   no "no gesture" class; a probability equal to the threshold is foreground), else it takes its
   top class;
   With an actionness model (``data.target=actionness``: gesture vs the background stretches
   of the training videos, :mod:`migalab.data.background`), frames it scores below
   ``actionness_threshold`` are background too (:func:`gate_frames`): "nothing happens";
3. runs of one class become segments (start, end inclusive, class, score = the mean probability
   of that class over the run); runs shorter than ``min_length`` frames are dropped (a run of
   exactly ``min_length`` frames is kept) (:func:`segments_from_frames`).

The settings (threshold, minimum length, actionness threshold) can be fitted on labelled
videos (a validation split) for the best segment F1 (:func:`fit_online_settings`, an
exhaustive search of :data:`FIT_GRID`), then one threshold per class from the global one
(:func:`fit_class_thresholds`).

The measure (MiGA online recognition, :func:`segment_scores`), the greedy matching of temporal
detection (:func:`match_segments`): predictions are taken in order of decreasing score (equal
scores: in the order given); each is matched to the not yet matched ground-truth segment of the
same video and class with the highest temporal IoU, provided that IoU is strictly above the
threshold (0.3 in MiGA; an IoU equal to the threshold is no match); each ground truth is matched
at most once, so a lower-scored prediction cannot take a ground truth from a higher-scored one.
IoU is over inclusive frame intervals (:func:`temporal_iou`: frames 0..9 and 5..14 share 5 of 15
frames). Precision = TP / predicted, recall = TP / ground truth, both pooled over all videos; F1
their harmonic mean.

Files: ``<vid>_prediction.csv`` has no header and rows ``class,start,end`` like the release's
``<vid>_label.csv`` (the same class ids: 1-based, 99 = illustrative; 0-based inclusive frames), so
:func:`~migalab.data.formats.miga2025.read_label_csv` reads both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from migalab.data.formats.miga2025 import class_to_raw, read_label_csv
from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import get_layout
from migalab.errors import UserError
from migalab.scoring.segments import Segment, match_segments, segment_scores, temporal_iou
from migalab.utils.io import atomic_write_text

__all__ = [
    "OnlineSettingsError",
    "Segment",
    "SequenceWindows",
    "fit_class_thresholds",
    "fit_online_settings",
    "frame_probabilities",
    "gate_frames",
    "idle_false_segments",
    "match_segments",
    "read_segments",
    "segment_rows",
    "segment_scores",
    "segments_from_frames",
    "smooth_frames",
    "temporal_iou",
    "window_starts",
    "write_segments",
]


class OnlineSettingsError(UserError, ValueError):
    """An ``online.*`` setting (window, stride, threshold, min_length, ...) out of its range or
    an input that does not fit it (a one-line error, exit 2, from the console scripts)."""


def window_starts(total: int, window: int, stride: int) -> list[int]:
    """Start frames of the windows over a ``total``-frame sequence: every ``stride`` frames,
    plus one ending at the last frame when the stride does not land there; one window (start 0)
    when the sequence is shorter than ``window``."""
    if window < 1 or stride < 1:
        raise OnlineSettingsError(
            f"online.window and online.stride must be >= 1, got {window} and {stride}"
        )
    if total < 1:
        return []
    last = max(total - window, 0)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def frame_probabilities(
    probs: torch.Tensor | np.ndarray, starts: Sequence[int], window: int, total: int
) -> np.ndarray:
    """(T, K) per-frame probabilities: the mean of the (W, K) window ``probs`` over the windows
    covering each frame (window i covers ``starts[i] .. starts[i] + window - 1``, clipped to the
    sequence); frames no window covers are 0."""
    p = np.asarray(probs, dtype=np.float64)
    acc = np.zeros((total + 1, p.shape[1]))
    count = np.zeros(total + 1)
    s = np.asarray(starts, dtype=np.int64)
    e = np.minimum(s + window, total)
    np.add.at(acc, s, p)
    np.add.at(acc, e, -p)
    np.add.at(count, s, 1)
    np.add.at(count, e, -1)
    acc, count = np.cumsum(acc, 0)[:total], np.cumsum(count)[:total]
    return (acc / np.maximum(count, 1)[:, None]).astype(np.float32)


def segments_from_frames(
    frame_probs: np.ndarray, threshold: float | Sequence[float] = 0.5, min_length: int = 1
) -> list[Segment]:
    """Segments of (T, K) per-frame probabilities: frames whose top probability is below
    ``threshold`` (in [0, 1]; or one threshold per class, (K,), applied to the frame's top
    class) are background (equal to it: foreground), runs of one top class are segments, those
    shorter than ``min_length`` (>= 1) frames are dropped."""
    thresholds = np.asarray(threshold, dtype=np.float64)
    if thresholds.ndim > 1 or not ((thresholds >= 0) & (thresholds <= 1)).all():
        raise OnlineSettingsError(f"online.threshold must be in [0, 1], got {threshold}")
    if thresholds.ndim == 1 and len(thresholds) != frame_probs.shape[-1]:
        raise OnlineSettingsError(
            f"{len(thresholds)} class thresholds for {frame_probs.shape[-1]} classes"
        )
    if min_length < 1:
        raise OnlineSettingsError(f"online.min_length must be >= 1, got {min_length}")
    if len(frame_probs) == 0:
        return []
    top = frame_probs.argmax(1)
    conf = frame_probs.max(1)
    labels = np.where(conf >= (thresholds[top] if thresholds.ndim else thresholds), top, -1)
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]])
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        k = int(labels[a])
        if k < 0 or b - a < min_length:
            continue
        out.append(Segment(int(a), int(b - 1), k, float(frame_probs[a:b, k].mean())))
    return out


def smooth_frames(frame_probs: np.ndarray, window: int) -> np.ndarray:
    """(T, K) per-frame probabilities through a centred running median of ``window`` frames
    per class (odd, >= 1; 1: unchanged; the ends repeat the first / last frame): a frame's
    class flicker shorter than half the window is removed before the segments are cut."""
    if isinstance(window, bool) or int(window) != window or window < 1 or window % 2 == 0:
        raise OnlineSettingsError(f"online.smooth must be an odd whole number >= 1, got {window}")
    window = int(window)
    if window == 1 or len(frame_probs) == 0:
        return frame_probs
    half = window // 2
    padded = np.pad(frame_probs, ((half, half), (0, 0)), mode="edge")
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (T, K, window)
    return np.median(views, axis=-1).astype(frame_probs.dtype)


def gate_frames(
    frame_probs: np.ndarray, actionness: np.ndarray | None, threshold: float
) -> np.ndarray:
    """(T, K) ``frame_probs`` with the frames whose actionness (T,: the probability that a
    gesture happens, from an actionness model) is below ``threshold`` set to 0, i.e. background
    (equal to it: kept); ``actionness`` None: unchanged."""
    if actionness is None:
        return frame_probs
    if not 0 <= threshold <= 1:
        raise OnlineSettingsError(f"online.actionness_threshold must be in [0, 1], got {threshold}")
    return np.where((actionness >= threshold)[:, None], frame_probs, 0.0).astype(frame_probs.dtype)


#: the settings :func:`fit_online_settings` tries (every combination)
FIT_GRID: dict[str, tuple[float, ...]] = {
    "threshold": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    "min_length": (1, 4, 8, 12, 16, 24, 32),
    "actionness_threshold": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}


def fit_online_settings(
    videos: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
    truths: Mapping[str, Sequence[Segment]],
    iou: float = 0.3,
    grid: Mapping[str, Sequence[float]] = FIT_GRID,
) -> dict[str, Any]:
    """The ``threshold``, ``min_length`` (and, where every video has an actionness track,
    ``actionness_threshold``) maximising the pooled segment F1 at ``iou`` over ``videos``
    (video id -> ((T, K) frame probabilities, (T,) actionness or None)) against ``truths``, by
    exhaustive search of ``grid``; ties go to the first combination in grid order. Returns the
    settings with their precision, recall and F1 and the number of combinations tried."""
    missing = sorted(set(videos) - set(truths))
    if missing:
        raise OnlineSettingsError(
            f"online.fit needs the labels of every video: none for {missing[:10]}"
        )
    gated = all(a is not None for _, a in videos.values())
    act_grid = grid["actionness_threshold"] if gated else (None,)
    key = f"iou_{iou:g}"
    best: dict[str, Any] | None = None
    tried = 0
    for act in act_grid:
        frames = {
            v: gate_frames(f, a, act) if act is not None else f for v, (f, a) in videos.items()
        }
        for threshold in grid["threshold"]:
            for min_length in grid["min_length"]:
                tried += 1
                preds = {
                    v: segments_from_frames(f, float(threshold), int(min_length))
                    for v, f in frames.items()
                }
                score = segment_scores(preds, truths, [iou])[key]
                if best is None or score["f1"] > best["f1"]:
                    best = {
                        "threshold": float(threshold),
                        "min_length": int(min_length),
                        "actionness_threshold": act,
                        **score,
                    }
    assert best is not None
    return {**best, "iou": iou, "videos": len(videos), "combinations": tried}


def fit_class_thresholds(
    frames: Mapping[str, np.ndarray],
    truths: Mapping[str, Sequence[Segment]],
    threshold: float,
    min_length: int,
    iou: float = 0.3,
    grid: Sequence[float] = FIT_GRID["threshold"],
) -> tuple[list[float], float]:
    """One threshold per class, from the global ``threshold``: one pass of coordinate ascent
    over the classes in order, each taking the value of ``grid`` that raises the pooled segment
    F1 at ``iou`` on ``frames`` (video id -> (T, K), gated already) the most, the others held;
    a class keeps its value unless F1 strictly rises. Returns the thresholds and their F1."""
    num_classes = next(iter(frames.values())).shape[-1]
    current = [float(threshold)] * num_classes
    key = f"iou_{iou:g}"

    def f1(thresholds: list[float]) -> float:
        preds = {v: segments_from_frames(f, thresholds, min_length) for v, f in frames.items()}
        return segment_scores(preds, truths, [iou])[key]["f1"]

    best = f1(current)
    for k in range(num_classes):
        for value in grid:
            if value == current[k]:
                continue
            trial = [*current[:k], float(value), *current[k + 1 :]]
            score = f1(trial)
            if score > best:
                best, current = score, trial
    return current, best


def idle_false_segments(
    preds: Mapping[str, Sequence[Segment]],
    truths: Mapping[str, Sequence[Segment]],
    frames: Mapping[str, int],
    fps: float,
) -> dict[str, float]:
    """False alarms where nothing happens: the predicted segments that share no frame with any
    labelled segment of their video (whatever its class), and their rate per minute of the
    frames no label covers (``frames``: video id -> its number of frames, ``fps`` frames per
    second). Videos are those of ``frames``."""
    if not fps > 0:
        raise OnlineSettingsError(f"online.fps must be > 0, got {fps}")
    count, idle = 0, 0
    for vid, total in frames.items():
        covered = np.zeros(int(total), bool)
        for t in truths.get(vid, []):
            covered[max(t.start, 0) : t.end + 1] = True
        idle += int((~covered).sum())
        count += sum(not covered[max(p.start, 0) : p.end + 1].any() for p in preds.get(vid, []))
    minutes = idle / fps / 60
    return {
        "segments": count,
        "idle_minutes": round(minutes, 3),
        "per_minute": count / minutes if minutes > 0 else 0.0,
    }


def write_segments(path: str | Path, segments: Sequence[Segment]) -> Path:
    """``<vid>_prediction.csv``: rows ``class,start,end`` (release class ids), no header."""
    text = "".join(f"{class_to_raw(s.label)},{s.start},{s.end}\n" for s in segments)
    atomic_write_text(Path(path), text)
    return Path(path)


def read_segments(path: str | Path) -> list[Segment]:
    """Segments of a ``<vid>_prediction.csv`` or ``<vid>_label.csv`` (0-based classes; rows
    without a class are skipped)."""
    return [Segment(s, e, k) for k, s, e in read_label_csv(path) if k >= 0]


class SequenceWindows(Dataset):
    """The sliding windows of one per-video skeleton table as model inputs.

    Args:
        table: (T, V, 3) keypoints (x, y, confidence) of the whole sequence in the 137-point
            OpenPose layout (or ``table_layout``).
        video_id: names the windows (``<video_id>_w<start>``).
        window: see :func:`window_starts`.
        stride: see :func:`window_starts`.
        pipeline: the checkpoint's evaluation pipeline (ClipRecord -> x).
        img_shape: (height, width) of the source frames.
        layout: the joint layout the model reads (selected from the table's).
        table_layout: the table's joint layout.

    ``__getitem__`` gives ``{"x": ..., "index": i, "label": -1}`` as the clip datasets do.
    """

    def __init__(
        self,
        table: np.ndarray,
        video_id: str,
        window: int,
        stride: int,
        pipeline: Callable[[ClipRecord], Any],
        img_shape: tuple[int, int],
        layout: str | None = None,
        table_layout: str = "openpose137",
    ) -> None:
        if table.ndim != 3 or table.shape[-1] != 3:
            raise ValueError(f"{video_id}: expected a (T, V, 3) keypoint table, got {table.shape}")
        self.table, self.video_id, self.window = table, video_id, int(window)
        self.starts = window_starts(len(table), int(window), int(stride))
        self.pipeline, self.img_shape = pipeline, (int(img_shape[0]), int(img_shape[1]))
        self.layout = layout or table_layout
        self.joints: list[int] | None = None
        if self.layout != table_layout:
            if table_layout != "openpose137":
                raise ValueError(f"{video_id}: a {table_layout} table has no {self.layout} joints")
            self.joints = list(get_layout(self.layout).indices)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        start = self.starts[i]
        seg = self.table[start : start + self.window]
        if self.joints is not None:
            seg = seg[:, self.joints]
        record = ClipRecord(
            name=f"{self.video_id}_w{start}",
            video_id=self.video_id,
            start=start,
            end=start + len(seg) - 1,
            label=-1,
            keypoint=np.ascontiguousarray(seg[None, ..., :2], dtype=np.float32),
            keypoint_score=np.ascontiguousarray(seg[None, ..., 2], dtype=np.float32),
            img_shape=self.img_shape,
            layout=self.layout,
        )
        x = self.pipeline(record)
        sample = dict(x) if isinstance(x, dict) else {"x": x}
        sample["x"] = torch.as_tensor(np.asarray(sample["x"]), dtype=torch.float32)
        sample["index"] = torch.tensor(i)
        sample["label"] = torch.tensor(-1)
        return sample


def segment_rows(segments: Sequence[Segment], class_names: Sequence[str] | None) -> list[dict]:
    """JSON rows of segments (class names added when known)."""
    rows = []
    for s in segments:
        row = asdict(s)
        row["score"] = round(row["score"], 5) if math.isfinite(row["score"]) else None
        if class_names:
            row["class_name"] = class_names[s.label]
        rows.append(row)
    return rows
