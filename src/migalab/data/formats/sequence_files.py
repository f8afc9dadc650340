"""Where the per-video files of online recognition are, as a user names them: one file, a flat
folder of them, or a release *split folder* (one ``<vid>/`` folder per video, as every release
and the synthetic one unpack: DESIGN.md), so that a whole validation or test split is one
command (``migalab-predict skeleton=<release>/test``, ``migalab-eval online.labels=...``).

A release *root* (the folder holding the splits) is refused with the split folders it holds,
since which split is meant cannot be guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from migalab.data.formats.light35 import LIGHT_TABLE_SUFFIXES
from migalab.data.formats.miga2025 import split_dir, video_files
from migalab.errors import MissingInputError

#: the skeleton tables a folder may hold flat (the per-video release files are found by name)
TABLE_SUFFIXES = (".csv", ".xlsx")
#: the video containers ``video=`` reads from a folder (PyAV / FFmpeg read them all)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
#: the per-video files of the suite's own outputs and of the label tables, never a skeleton table
_NOT_TABLES = ("_label", "_prediction")
SPLITS = ("train", "validate", "test")
#: what a per-video skeleton table's name ends with (MiGA 2025 / migalab-pose, MiGA 2024-2026)
_TABLE_NAMES = ("_openpose.csv", "_openpose.xlsx", *LIGHT_TABLE_SUFFIXES)
#: a release root's own tables, never a skeleton table
_RELEASE_FILES = ("emotion_labels.csv", "subjects.csv", "pseudo_labels.csv")


def table_video_id(table: Path) -> str:
    """The video id of a per-video skeleton table: its name without the table suffix
    (``0101_openpose.xlsx``, ``0101_light_hand.csv`` -> ``0101``; other names: the stem)."""
    for suffix in _TABLE_NAMES:
        if table.name.endswith(suffix):
            return table.name.removesuffix(suffix)
    return table.stem


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _per_video(folder: Path, pick: Callable[[Path], Path | None]) -> list[Path]:
    """``pick(<vid>/)`` of every ``<vid>/`` folder below ``folder`` that has the file."""
    found = (pick(sub) for sub in _visible(folder) if sub.is_dir())
    return [p for p in found if p is not None]


def _refuse(folder: Path, what: str, looked_for: str) -> None:
    """Raise a :class:`MissingInputError` (a FileNotFoundError; one line, exit 2 from a console
    script) saying what was looked for, and which split folders to name
    instead where ``folder`` is a release root."""
    splits = {s: split_dir(folder, s) for s in SPLITS}
    found = {s: d for s, d in splits.items() if d is not None}
    if found:
        raise MissingInputError(
            f"{what}={folder} is a release root (splits: {', '.join(found)}): name one split "
            f"folder, e.g. {what}={next(iter(found.values()))}"
        )
    raise MissingInputError(
        f"{what}={folder}: no {looked_for} in the folder or in its <vid>/ folders"
    )


def skeleton_tables(path: str | Path, what: str = "skeleton") -> list[Path]:
    """The skeleton tables ``path`` names: the file itself; a folder's own per-video tables
    (``*_openpose.csv`` / ``.xlsx``, ``*_light_hand.csv``), in name order; or, in a split
    folder, the table of every ``<vid>/`` folder (``<vid>_openpose.xlsx`` / ``.csv`` or a 35-joint
    ``<vid>_light_hand.csv``, :func:`migalab.data.formats.miga2025.video_files`), by video id;
    failing those, a folder's other ``.csv`` / ``.xlsx`` files (not ``*_label`` /
    ``*_prediction``, not a release's ``emotion_labels.csv``), unless the folder is a release
    root, which is refused naming its split folders."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MissingInputError(f"{what}={path}: no such file or folder")
    files = [
        p
        for p in _visible(path)
        if p.is_file()
        and p.suffix in TABLE_SUFFIXES
        and not p.stem.endswith(_NOT_TABLES)
        and p.name not in _RELEASE_FILES
    ]
    named = [p for p in files if p.name.endswith(_TABLE_NAMES)]
    tables = named or _per_video(path, lambda sub: video_files(sub).table)
    if not tables and not files:
        _refuse(path, what, "skeleton table (.csv / .xlsx)")
    if not tables:  # other .csv / .xlsx files: tables named freely, unless this is a release
        if any(split_dir(path, s) is not None for s in SPLITS):
            _refuse(path, what, "skeleton table (.csv / .xlsx)")
        tables = files
    return tables


def video_paths(path: str | Path, what: str = "video") -> list[Path]:
    """The videos ``path`` names: the file itself, a folder's own videos (``VIDEO_SUFFIXES``)
    in name order, or the ``<vid>/<vid>.mp4`` of every video folder of a split folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise MissingInputError(f"{what}={path}: no such file or folder")
    flat = [p for p in _visible(path) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    videos = flat or _per_video(path, lambda sub: video_files(sub).video)
    if not videos:
        _refuse(path, what, f"video ({' / '.join(VIDEO_SUFFIXES)})")
    return videos


def files_by_video(path: str | Path, suffix: str, what: str) -> dict[str, Path]:
    """video id -> file for files named ``<vid><suffix>`` (e.g. ``_label.csv``): ``path`` itself,
    a flat folder of them, or the ``<vid>/<vid><suffix>`` of every video folder of a split."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = [p for p in _visible(path) if p.is_file() and p.name.endswith(suffix)]
        if not files:
            files = _per_video(path, lambda sub: _named(sub, suffix))
        if not files:
            _refuse(path, what, f"<vid>{suffix} file")
    else:
        raise MissingInputError(f"{what}={path}: no such file or folder")
    return {f.name.removesuffix(suffix): f for f in files}


def _named(folder: Path, suffix: str) -> Path | None:
    candidate = folder / f"{folder.name}{suffix}"
    return candidate if candidate.is_file() else None
