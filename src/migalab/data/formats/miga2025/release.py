"""MiGA 2025 release layout: ``<root>/<split>/<vid>/`` with ``<vid>_openpose.xlsx`` (or .csv, or a 35-joint ``light_hand`` table), ``<vid>_label.csv`` and ``<vid>.mp4``; split folders as released (``imigue_skeleton_validate/``) or ours; reading a video folder or a whole split into clip records."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from migalab.data.formats.errors import FormatError
from migalab.data.formats.light35 import LIGHT_TABLE_SUFFIXES
from migalab.data.formats.miga2025.emotion import EMOTION_FILE, read_emotion_labels
from migalab.data.formats.miga2025.labels import read_label_csv
from migalab.data.formats.miga2025.tables import (
    DEFAULT_IMG_SHAPE,
    NUM_KEYPOINTS,
    read_openpose_table,
)
from migalab.data.record import ClipRecord

SPLITS = ("train", "validate", "test")


@dataclass(frozen=True)
class VideoFiles:
    """The files of one video folder of a MiGA 2025 release.

    ``table`` is None when the folder has neither ``<vid>_openpose.xlsx`` nor ``.csv`` (reading
    it then raises a FormatError); ``label`` and ``video`` are None when absent.
    """

    video_id: str
    split: str
    folder: Path
    table: Path | None
    label: Path | None
    video: Path | None

    def source_files(self) -> list[Path]:
        """The files a reader of this video uses (for fingerprints)."""
        return [p for p in (self.table, self.label, self.video) if p is not None]


def _find_table(folder: Path, vid: str) -> Path | None:
    for suffix in (".xlsx", ".csv"):  # xlsx is the release format; csv is the fallback
        exact = folder / f"{vid}_openpose{suffix}"
        if exact.is_file():
            return exact
        found = sorted(p for p in folder.glob(f"*openpose*{suffix}") if not p.name.startswith("."))
        if found:
            return found[0]
    for suffix in LIGHT_TABLE_SUFFIXES:  # the 2024-2026 35-joint tables
        if (folder / f"{vid}{suffix}").is_file():
            return folder / f"{vid}{suffix}"
    return None


def video_files(folder: str | os.PathLike, split: str = "") -> VideoFiles:
    """Locate table, label CSV and mp4 of one ``<vid>/`` folder (the video id is its name)."""
    folder = Path(folder)
    vid = folder.name
    label = folder / f"{vid}_label.csv"
    video = folder / f"{vid}.mp4"
    return VideoFiles(
        video_id=vid,
        split=split,
        folder=folder,
        table=_find_table(folder, vid),
        label=label if label.is_file() else None,
        video=video if video.is_file() else None,
    )


#: a release: one root folder, several (each split is taken from the first that holds it), or a
#: mapping split -> folder (the split's own folder of ``<vid>/`` folders, or a root holding it)
ReleaseRoot = str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]


def release_roots(root: ReleaseRoot) -> list[Path]:
    """Every folder a release names (one for a single root), in order, without repeats."""
    if isinstance(root, Mapping):
        folders = list(root.values())
    elif isinstance(root, Sequence) and not isinstance(root, str):
        folders = list(root)
    else:
        folders = [root]
    return list(dict.fromkeys(Path(f) for f in folders))


def split_dir_candidates(root: ReleaseRoot, split: str) -> list[Path]:
    """Where the folder of ``split`` may be, in the order they are tried.

    Below a root: the suite's own layout (``<root>/<split>/``) and the official MiGA 2025
    archives as they unpack, with one or both archives under ``root``: ``imigue_data_phase1/
    datasets/imigue_skeleton_{train,validate}/`` and ``imigue_data_phase2/imigue_skeleton_test/``
    (also with ``root`` pointing inside an archive: ``datasets/imigue_skeleton_<split>/`` or
    ``imigue_skeleton_<split>/``). Several roots: each root's candidates in turn. A mapping:
    the split's folder below it, then the folder itself.
    """
    if isinstance(root, Mapping):
        if split not in root:
            return []
        folder = Path(root[split])
        return [*split_dir_candidates(folder, split), folder]
    if isinstance(root, Sequence) and not isinstance(root, str | os.PathLike):
        return [c for r in root for c in split_dir_candidates(r, split)]
    root = Path(root)
    official = f"imigue_skeleton_{split}"
    return [
        root / split,
        root / official,
        root / "datasets" / official,
        root / "imigue_data_phase1" / "datasets" / official,
        root / "imigue_data_phase2" / official,
        root / "imigue_data_phase2" / "datasets" / official,
    ]


def split_dir(root: ReleaseRoot, split: str) -> Path | None:
    """The folder holding the ``<vid>/`` folders of ``split`` (:func:`split_dir_candidates`), or
    None when the release has no such split."""
    for candidate in split_dir_candidates(root, split):
        if candidate.is_dir():
            return candidate
    return None


def find_videos(root: ReleaseRoot, split: str) -> list[VideoFiles]:
    """All video folders of one split (``<split folder>/<vid>/``, the split folder found by
    :func:`split_dir`: the suite's ``<root>/<split>/`` or the official archive names), sorted
    by video id.

    Returns an empty list when the split folder does not exist. Hidden folders are ignored.
    """
    folder = split_dir(root, split)
    if folder is None:
        return []
    folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [video_files(p, split) for p in folders]


def read_video_folder(
    folder: str | os.PathLike | VideoFiles,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    engine: str = "calamine",
    split: str | None = None,
    emotion: int | None = None,
    table: np.ndarray | None = None,
) -> list[ClipRecord]:
    """Read all clips of one MiGA 2025 video folder.

    Args:
        folder: the ``<vid>/`` folder (or its :class:`VideoFiles`).
        img_shape: (height, width) of the frames; the release is 720x1280.
        engine: xlsx engine for :func:`read_openpose_table`.
        split: stored in ``meta["split"]``.
        emotion: per-video emotion (1 win, 0 lose) copied into every clip.
        table: an already-read (T, 411) table to reuse instead of reading the file.

    Returns:
        One ClipRecord per label row, named ``<vid>_<row>`` (0-based row of the label CSV), with
        keypoint (1, T_clip, 137, 2) float32 pixels and keypoint_score (1, T_clip, 137) sliced
        from frames start..end inclusive; ``video_path`` is ``<vid>.mp4`` when present.
    """
    vf = folder if isinstance(folder, VideoFiles) else video_files(folder, split or "")
    split = split if split is not None else vf.split
    if table is None:
        if vf.table is None:
            raise FormatError(
                vf.folder,
                f"no {vf.video_id}_openpose.xlsx / .csv or {vf.video_id}_light_hand.csv in the folder",
            )
        table = read_openpose_table(vf.table, engine=engine)
    if vf.label is None:
        raise FormatError(vf.folder / f"{vf.video_id}_label.csv", "no such file")
    labels = read_label_csv(vf.label, num_frames=len(table))
    kps = table.reshape(len(table), NUM_KEYPOINTS, 3)
    records = []
    for row, (label, start, end) in enumerate(labels):
        seg = kps[start : end + 1]
        records.append(
            ClipRecord(
                name=f"{vf.video_id}_{row}",
                video_id=vf.video_id,
                start=start,
                end=end,
                label=label,
                keypoint=np.ascontiguousarray(seg[None, :, :, :2], dtype=np.float32),
                keypoint_score=np.ascontiguousarray(seg[None, :, :, 2], dtype=np.float32),
                img_shape=(int(img_shape[0]), int(img_shape[1])),
                layout="openpose137",
                video_path=str(vf.video) if vf.video is not None else None,
                emotion=emotion,
                meta={"split": split, "row": row, "source": str(vf.table)},
            )
        )
    return records


def read_release(
    root: str | os.PathLike,
    splits: Sequence[str] = SPLITS,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    engine: str = "calamine",
) -> Iterator[ClipRecord]:
    """Iterate the clips of a whole release, split by split and video by video.

    Emotion labels come from ``<root>/emotion_labels.csv`` when that file exists. This reads the
    spreadsheets directly (seconds per video); use ``migalab.data.prepare`` to build a cache once.
    """
    root = Path(root)
    emo_file = root / EMOTION_FILE
    emotions = read_emotion_labels(emo_file) if emo_file.is_file() else {}
    for split in splits:
        for vf in find_videos(root, split):
            yield from read_video_folder(
                vf, img_shape=img_shape, engine=engine, emotion=emotions.get(vf.video_id)
            )
