"""Random access to clips of a prepared skeleton cache (see :mod:`migalab.data.prepare`).

Each video's (T, 137, 3) array is memory-mapped once per process and clips are slices of it, so
loading a clip costs microseconds plus the copy of its frames.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.prepare import FORMAT_VERSION, INDEX_FILE, META_FILE, read_meta
from migalab.data.record import UNKNOWN_LABEL, ClipRecord
from migalab.data.skeleton.layouts import get_layout

_STR_COLUMNS = ("name", "video_id", "split", "video_path", "file")
_INT_COLUMNS = ("row", "label", "start", "end", "video_frames", "height", "width", "emotion")


class SkeletonCache:
    """A prepared cache: ``index`` (one row per clip) + memory-mapped per-video arrays.

    Args:
        root: the cache folder written by ``migalab-prepare``.
        split: keep only the clips of this split (see also :meth:`subset`).

    Raises:
        FileNotFoundError: no meta.json (cache incomplete: prepare crashed or still running).
        ValueError: the cache was written by another format version.

    Picklable (DataLoader workers): the open memmaps are dropped and reopened lazily.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None):
        import pandas as pd

        self.root = Path(root)
        meta = read_meta(self.root)
        if meta is None:
            raise FileNotFoundError(
                f"{self.root / META_FILE} missing: the cache is incomplete or not prepared "
                f"(run migalab-prepare)"
            )
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.root}: cache format {meta.get('format_version')}, this code reads "
                f"{FORMAT_VERSION}; prepare it again"
            )
        self.meta: dict[str, Any] = meta
        index = pd.read_csv(
            self.root / INDEX_FILE,
            dtype={c: str for c in _STR_COLUMNS} | {c: np.int64 for c in _INT_COLUMNS},
            keep_default_na=False,
        )
        self._mmaps: dict[str, np.ndarray] = {}
        self._set_index(index if split is None else index[index["split"] == split])

    def _set_index(self, index: Any) -> None:
        self.index = index.reset_index(drop=True)
        # plain NumPy columns: DataFrame row access would cost ~100 us per clip
        self._cols = {c: self.index[c].to_numpy() for c in self.index.columns}

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_mmaps"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def splits(self) -> list[str]:
        """Splits present in the index, in order of appearance."""
        return list(dict.fromkeys(self._cols["split"].tolist()))

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 0-based labels (UNKNOWN_LABEL where hidden)."""
        return self._cols["label"].astype(np.int64)

    def subset(self, split: str) -> SkeletonCache:
        """The clips of one split (shares this object's open memmaps)."""
        known = self.splits
        if split not in known and split not in self.meta.get("splits", []):
            raise KeyError(f"no split {split!r} in {self.root} (have {known})")
        new = copy.copy(self)
        new._set_index(self.index[self.index["split"] == split])
        return new

    def video_array(self, file: str) -> np.ndarray:
        """The (T, 137, 3) memmap of one cached video (``file`` as in the index)."""
        arr = self._mmaps.get(file)
        if arr is None:
            arr = np.load(self.root / file, mmap_mode="r", allow_pickle=False)
            self._mmaps[file] = arr
        return arr

    def load_clip(self, i: int, layout: str | None = None) -> ClipRecord:
        """Clip ``i`` of the index as a ClipRecord.

        Args:
            i: 0-based position in ``index``.
            layout: joint layout to select (e.g. ``"imigue22"``); None keeps all 137 joints
                (layout ``openpose137``).

        Returns:
            keypoint (1, T, V, 2) float32 pixels and keypoint_score (1, T, V) float32 for frames
            start..end inclusive; ``emotion`` None when unknown; meta has ``split`` and ``row``.
        """
        c = self._cols
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range for {len(self)} clips")
        start, end = int(c["start"][i]), int(c["end"][i])
        seg = self.video_array(c["file"][i])[start : end + 1]  # (T, 137, 3) view
        if layout is not None and layout != "openpose137":
            seg = seg[:, _layout_indices(layout)]  # (T, V, 3) copy
        else:
            layout = "openpose137"
        kp = np.array(seg[None, :, :, :2], dtype=np.float32)
        score = np.array(seg[None, :, :, 2], dtype=np.float32)
        emotion = int(c["emotion"][i])
        video_path = c["video_path"][i]
        return ClipRecord(
            name=c["name"][i],
            video_id=c["video_id"][i],
            start=start,
            end=end,
            label=int(c["label"][i]),
            keypoint=kp,
            keypoint_score=score,
            img_shape=(int(c["height"][i]), int(c["width"][i])),
            layout=layout,
            video_path=video_path or None,
            emotion=None if emotion < 0 else emotion,
            meta={"split": c["split"][i], "row": int(c["row"][i])},
        )

    __getitem__ = load_clip

    def records(self, layout: str | None = None) -> Iterator[ClipRecord]:
        """Iterate all clips in index order."""
        for i in range(len(self)):
            yield self.load_clip(i, layout)

    def has_labels(self) -> bool:
        """True when every clip has a known label."""
        return bool((self.labels != UNKNOWN_LABEL).all())


_INDICES: dict[str, np.ndarray] = {}


def _layout_indices(name: str) -> np.ndarray:
    idx = _INDICES.get(name)
    if idx is None:
        idx = _INDICES[name] = np.asarray(get_layout(name).indices, dtype=np.intp)
    return idx
