"""The prepared skeleton cache: its on-disk format and random access to its clips.

``migalab-prepare`` (:mod:`migalab.data.prepare`) writes, and :class:`SkeletonCache` reads:

``<cache>/<split>/<name>.npy``
    one array per source sequence: a whole per-video table (T, V, 3) of a MiGA release (V = 137
    OpenPose points), or one clip (M, T, V, 3) of a clip-level release (2023 npy, pyskl
    pickles); channels (x, y, confidence) in pixels.
``<cache>/index.csv``
    one row per clip (:data:`INDEX_COLUMNS`); a clip is frames ``start..end`` of its ``file``.
``<cache>/meta.json``
    format version, the joint ``layout`` of the arrays (absent: ``openpose137``), splits, counts
    and a source fingerprint. Written last: a cache without it is incomplete.

Each array is memory-mapped once per process and clips are slices of it, so loading a clip costs
microseconds plus the copy of its frames.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.record import UNKNOWN_LABEL, ClipRecord
from migalab.data.skeleton.layouts import get_layout
from migalab.utils.io import atomic_write_text

FORMAT_VERSION = 1
META_FILE = "meta.json"
INDEX_FILE = "index.csv"
INDEX_COLUMNS = (
    "name",
    "video_id",
    "split",
    "row",
    "label",
    "start",
    "end",
    "video_frames",
    "height",
    "width",
    "emotion",
    "video_path",
    "file",
)
#: joint layout of caches whose meta.json names none (per-video MiGA tables)
TABLE_LAYOUT = "openpose137"
_STR_COLUMNS = ("name", "video_id", "split", "video_path", "file")
_INT_COLUMNS = ("row", "label", "start", "end", "video_frames", "height", "width", "emotion")


def read_meta(cache_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The cache's meta.json as a dict, or None when absent / unreadable (incomplete cache)."""
    try:
        with open(Path(cache_dir) / META_FILE) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def write_meta(cache_dir: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write meta.json atomically (the last file of a prepare: it marks the cache complete)."""
    return atomic_write_text(Path(cache_dir) / META_FILE, json.dumps(meta, indent=2) + "\n")


def write_index(cache_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Write index.csv atomically from rows (dicts with :data:`INDEX_COLUMNS`)."""
    import pandas as pd

    buf = io.StringIO()
    pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).to_csv(buf, index=False)
    return atomic_write_text(Path(cache_dir) / INDEX_FILE, buf.getvalue())


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
        #: joint layout of the cached arrays
        self.layout: str = str(meta.get("layout", TABLE_LAYOUT))
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
        return self.select(self._cols["split"] == split)

    def select(self, keep: np.ndarray) -> SkeletonCache:
        """A view of the index rows where ``keep`` (N,) bool is true (shares the open
        memmaps)."""
        new = copy.copy(self)
        new._set_index(self.index[np.asarray(keep, bool)])
        return new

    def windows(
        self,
        window: int,
        stride: int,
        splits: list[str] | None = None,
        split_name: str = "unlabelled",
    ) -> SkeletonCache:
        """A view of this cache whose clips are sliding windows over every cached sequence,
        labelled or not (self-supervised pretraining: no label is read).

        Args:
            window: frames per window; a sequence shorter than that gives one window of its
                whole length (the pipeline resamples it).
            stride: frames between window starts.
            splits: the splits whose sequences to cover (None: all).
            split_name: the ``split`` of every window (what :class:`SkeletonClipDataset` selects).

        Returns:
            a cache with one index row per window (name ``<video_id>_w<start>``, label and
            emotion unknown) over the same arrays; windows cover each whole per-video table,
            not only its labelled clips.
        """
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window} and {stride}")
        c = self._cols
        keep = np.ones(len(self), bool) if splits is None else np.isin(c["split"], list(splits))
        rows: list[dict[str, Any]] = []
        for i in np.flatnonzero(keep)[np.unique(c["file"][keep], return_index=True)[1]]:
            total = int(self.video_array(c["file"][i]).shape[-3])
            for start in range(0, max(total - window, 0) + 1, stride):
                end = min(start + window, total) - 1
                rows.append(self._window_row(i, start, end, UNKNOWN_LABEL, split_name))
        return self._with_rows(rows, replace=True)

    def with_windows(self, windows: Any, split_name: str, source: str = "windows") -> SkeletonCache:
        """This cache plus labelled windows (pseudo-labels): ``windows`` is a table with
        ``video_id``, ``start``, ``end`` (inclusive frames of the video's cached sequence) and
        ``label`` (0-based); each becomes an index row of split ``split_name`` named
        ``<video_id>_w<start>``. ``source`` names the table in errors (an unknown video, a
        window past the sequence's end)."""
        c = self._cols
        first = {v: i for i, v in reversed(list(enumerate(c["video_id"])))}
        rows: list[dict[str, Any]] = []
        for n, (vid, start, end, label) in enumerate(
            zip(
                windows["video_id"], windows["start"], windows["end"], windows["label"], strict=True
            )
        ):
            vid = str(vid)
            if vid not in first:
                raise ValueError(f"{source}: row {n + 1}: video {vid!r} is not in {self.root}")
            i = first[vid]
            total = int(self.video_array(c["file"][i]).shape[-3])
            if not 0 <= int(start) <= int(end) < total:
                raise ValueError(
                    f"{source}: row {n + 1}: frames {start}..{end} are outside "
                    f"video {vid!r} (0..{total - 1})"
                )
            rows.append(self._window_row(i, int(start), int(end), int(label), split_name))
        return self._with_rows(rows, replace=False)

    def _window_row(self, i: int, start: int, end: int, label: int, split: str) -> dict[str, Any]:
        """An index row for frames start..end of the sequence of index row ``i``."""
        c = self._cols
        return {
            "name": f"{c['video_id'][i]}_w{start}",
            "video_id": c["video_id"][i],
            "split": split,
            "row": -1,
            "label": label,
            "start": start,
            "end": end,
            "video_frames": c["video_frames"][i],
            "height": c["height"][i],
            "width": c["width"][i],
            "emotion": -1,
            "video_path": c["video_path"][i],
            "file": c["file"][i],
        }

    def _with_rows(self, rows: list[dict[str, Any]], replace: bool) -> SkeletonCache:
        """A view sharing the open memmaps whose index is ``rows`` (``replace``) or this
        index followed by ``rows``."""
        import pandas as pd

        added = pd.DataFrame(rows, columns=list(INDEX_COLUMNS)).astype(self.index.dtypes.to_dict())
        new = copy.copy(self)
        new._set_index(added if replace else pd.concat([self.index, added], ignore_index=True))
        return new

    def video_array(self, file: str) -> np.ndarray:
        """The memmap of one cached sequence (``file`` as in the index): (T, V, 3) or
        (M, T, V, 3)."""
        arr = self._mmaps.get(file)
        if arr is None:
            arr = np.load(self.root / file, mmap_mode="r", allow_pickle=False)
            self._mmaps[file] = arr
        return arr

    def load_clip(self, i: int, layout: str | None = None) -> ClipRecord:
        """Clip ``i`` of the index as a ClipRecord.

        Args:
            i: 0-based position in ``index``.
            layout: joint layout to select (e.g. ``"imigue22"``); None keeps the cache's own
                joints (:attr:`layout`). From an ``openpose137`` cache any layout of
                :mod:`migalab.data.skeleton.layouts` can be selected; other caches only give
                their own layout.

        Returns:
            keypoint (M, T, V, 2) float32 pixels and keypoint_score (M, T, V) float32 for frames
            start..end inclusive (M = 1 for per-video tables); ``emotion`` None when unknown;
            meta has ``split`` and ``row``.

        Raises:
            ValueError: ``layout`` cannot be selected from this cache's joints.
        """
        c = self._cols
        if not -len(self) <= i < len(self):
            raise IndexError(f"clip {i} out of range for {len(self)} clips")
        start, end = int(c["start"][i]), int(c["end"][i])
        arr = self.video_array(c["file"][i])
        if arr.ndim == 3:
            arr = arr[None]
        seg = arr[:, start : end + 1]  # (M, T, V, 3) view
        if layout is None or layout == self.layout:
            layout = self.layout
        elif self.layout == TABLE_LAYOUT:
            seg = seg[:, :, _layout_indices(layout)]  # (M, T, V, 3) copy
        else:
            raise ValueError(
                f"{self.root}: the cache holds {self.layout} joints; layout {layout!r} cannot be "
                f"selected from them (use data.layout={self.layout})"
            )
        kp = np.array(seg[..., :2], dtype=np.float32)
        score = np.array(seg[..., 2], dtype=np.float32)
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
