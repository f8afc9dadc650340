"""Torch datasets over a prepared skeleton cache."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from migalab.data.cache import SkeletonCache
from migalab.data.record import ClipRecord

#: what a sample's ``label`` is: the clip's micro-gesture class, its video's emotion, or
#: whether a gesture happens (1: a labelled clip, 0: a background window, :mod:`~migalab.data.
#: background`)
TARGETS = ("gesture", "emotion", "actionness")


class ClipLoadError(RuntimeError):
    """A clip could not be loaded or transformed; the message names the clip and its file."""


class SkeletonClipDataset(Dataset):
    """Clips of one split of a :class:`SkeletonCache`, each turned into an encoder input.

    ``__getitem__`` returns ``{"x": float32 tensor (e.g. (C, T, V, M)), "label": int64 scalar,
    "index": int64 scalar}``; ``index`` is the position in this dataset, so predictions can be
    matched back to :meth:`clip_name` / the cache index. A pipeline may return a dict instead of
    an array: its entries (``x`` plus extras such as ``views``) become the sample's entries.

    Args:
        cache: the prepared cache (or its directory).
        split: release split name (``train``, ``validate``, ``test``), or several (their clips
            together, e.g. train + validate for a final model).
        pipeline: ClipRecord → np.ndarray (C, T, V, M), e.g. ``build_skeleton_pipeline(...)``, or
            → dict with an ``x`` array and extra entries.
        layout: joint layout selected when loading (cheaper than loading all 137 joints).
        target: ``gesture`` (``label`` = the clip's class) or ``emotion`` (``label`` = its
            video's emotion, 1 win / 0 lose / -1 unknown, and each sample also has ``video``:
            the position of its video in :attr:`video_ids`) or ``actionness`` (1 for a labelled
            clip, 0 for a background window of the cache: index row -1).
        emotion_labels: with ``target="emotion"``, video_id -> 0/1 replacing the cache's
            emotion of the videos it lists (e.g. from :func:`~migalab.data.formats.miga2025.
            read_video_labels`).
    """

    def __init__(
        self,
        cache: SkeletonCache | str,
        split: str | Sequence[str],
        pipeline: Callable[[ClipRecord], Any],
        layout: str | None = None,
        target: str = "gesture",
        emotion_labels: Mapping[str, int] | None = None,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.cache = cache if isinstance(cache, SkeletonCache) else SkeletonCache(cache)
        self.split = split if isinstance(split, str) else "+".join(split)
        self.pipeline = pipeline
        self.layout = layout
        self.target = target
        index = self.cache.index
        names = [split] if isinstance(split, str) else list(split)
        self.rows = np.flatnonzero(np.isin(index["split"].to_numpy(), names))
        videos = index["video_id"].astype(str).to_numpy()[self.rows]
        #: the split's video ids (sorted); ``video`` of a sample indexes this list
        self.video_ids: list[str] = sorted(set(videos.tolist()))
        #: (N,) per clip: the position of its video in :attr:`video_ids`
        self.videos = np.searchsorted(np.asarray(self.video_ids), videos).astype(np.int64)
        if target == "emotion":
            emotion = index["emotion"].to_numpy()[self.rows].astype(np.int64)
            if emotion_labels:
                override = np.array([emotion_labels.get(v, -2) for v in videos], dtype=np.int64)
                emotion = np.where(override >= 0, override, emotion)
            self.labels = emotion
        elif target == "actionness":  # a labelled clip (row >= 0): 1; a background window: 0
            self.labels = (index["row"].to_numpy()[self.rows] >= 0).astype(np.int64)
        else:
            self.labels = index["label"].to_numpy()[self.rows].astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, positions: Sequence[int] | np.ndarray) -> SkeletonClipDataset:
        """A dataset of the clips at ``positions`` (of this one, in that order) with the same
        cache, pipeline and target: ``labels``, ``videos`` / ``video_ids`` (only the subset's
        videos) and :meth:`clip_name` are those of the chosen clips, a sample's ``index`` its
        position in the subset.

        Raises:
            IndexError: a position outside 0..len(self)-1.
        """
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        if len(pos) and (pos.min() < 0 or pos.max() >= len(self)):
            raise IndexError(f"subset positions must lie in 0..{len(self) - 1}, got {pos.tolist()}")
        sub = copy.copy(self)
        sub.rows, sub.labels = self.rows[pos], self.labels[pos]
        videos = [self.video_ids[v] for v in self.videos[pos]]
        sub.video_ids = sorted(set(videos))
        sub.videos = np.searchsorted(np.asarray(sub.video_ids), videos).astype(np.int64)
        return sub

    @property
    def has_labels(self) -> bool:
        """True when every clip of the split has a known class."""
        return len(self.labels) > 0 and bool((self.labels >= 0).all())

    def clip_name(self, i: int) -> str:
        return str(self.cache.index["name"].iloc[self.rows[i]])

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.rows[i])
        try:
            record = self.cache.load_clip(row, layout=self.layout)
            x = self.pipeline(record)
        except Exception as err:  # one clear message naming the clip instead of a worker trace
            entry = self.cache.index.iloc[row]
            raise ClipLoadError(
                f"clip {entry['name']} (split {self.split}, file {entry['file']}, frames "
                f"{entry['start']}-{entry['end']}): {type(err).__name__}: {err}"
            ) from err
        sample = dict(x) if isinstance(x, dict) else {"x": x}
        inputs = sample["x"]
        if isinstance(inputs, dict):  # several modalities: {"rgb": (3, T, H, W), "joint": ...}
            sample["x"] = {
                k: _as_bool_flags(v) if k == "present" else _as_float_tensor(v)
                for k, v in inputs.items()
            }
        else:
            sample["x"] = _as_float_tensor(inputs)
        for key, value in sample.items():
            if key != "x" and not isinstance(value, torch.Tensor):
                sample[key] = torch.as_tensor(value)
        sample["label"] = torch.tensor(self.labels[i], dtype=torch.long)
        sample["index"] = torch.tensor(i, dtype=torch.long)
        if self.target == "emotion":
            sample["video"] = torch.tensor(self.videos[i], dtype=torch.long)
        return sample


def _as_float_tensor(value: Any) -> torch.Tensor:
    """A float32 tensor from an array or tensor (tensors are not copied when already float32);
    uint8 and bool tensors (face crops, per-frame flags) keep their dtype."""
    if isinstance(value, torch.Tensor):
        if value.dtype in (torch.uint8, torch.bool):
            return value.contiguous()
        return value.float().contiguous()
    return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))


def _as_bool_flags(flags: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``{"rgb": True}`` -> ``{"rgb": tensor(True)}`` (collated to (N,) bool masks)."""
    return {k: torch.tensor(bool(v)) for k, v in flags.items()}
