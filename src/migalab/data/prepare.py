"""Convert a MiGA 2025 release once into a compact skeleton cache.

Parsing the release spreadsheets costs seconds per video (python-calamine; ~10x that with
openpyxl), so training never reads them: ``migalab-prepare SRC OUT`` writes

``<out>/<split>/<vid>.npy``
    the whole per-video OpenPose table as (T, 137, 3) = (x, y, confidence) in pixels, float32
    by default. ``--dtype float16`` halves the size but float16 has an 11-bit mantissa, so
    coordinates in 1024..2048 px are rounded to 1 px steps (0.5 px in 512..1024): ~1 px error
    at 1280-px frames. Keep float32 unless disk space matters more than sub-pixel accuracy.
``<out>/index.csv``
    one row per clip: name, video_id, split, row, label, start, end, video_frames, height, width,
    emotion (-1 unknown), video_path (empty when none), file (the .npy path relative to out).
``<out>/prepare_report.json``
    the videos that were skipped and why.
``<out>/meta.json``
    format version, source root, dtype, splits, creation time, counts and a fingerprint of the
    source files (names, sizes, mtimes) for :func:`is_cache_current`. Written LAST: a cache
    without meta.json is incomplete (a crashed or running prepare) and
    :class:`migalab.data.cache.SkeletonCache` refuses it.

Every file is written atomically (temp file in the same folder + ``os.replace``). Bad videos are
skipped and reported, not fatal, unless ``strict``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.formats.errors import FormatError
from migalab.data.formats.miga2025 import (
    DEFAULT_IMG_SHAPE,
    EMOTION_FILE,
    NUM_KEYPOINTS,
    SPLITS,
    VideoFiles,
    describe_column,
    find_videos,
    read_emotion_labels,
    read_label_csv,
    read_openpose_table,
    split_dir,
    split_dir_candidates,
)
from migalab.data.record import UNKNOWN_LABEL
from migalab.utils.io import atomic_write, atomic_write_text
from migalab.utils.progress import progress_bar

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "meta.json"
INDEX_FILE = "index.csv"
REPORT_FILE = "prepare_report.json"
INDEX_COLUMNS = (
    "name", "video_id", "split", "row", "label", "start", "end", "video_frames",
    "height", "width", "emotion", "video_path", "file",
)  # fmt: skip
DTYPES = ("float32", "float16")


class PrepareError(RuntimeError):
    """A strict prepare met a problem (``problems`` lists (file, message) pairs)."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class PrepareResult:
    """Outcome of :func:`prepare_release`.

    Attributes:
        out_dir: the cache folder.
        num_videos: videos converted.
        num_clips: clips in ``index.csv``.
        skipped: (file, error message) per video (or release file) that was not converted.
        warnings: (file, message) for videos converted with something to say (e.g. an empty
            label file: no clips).
        missing_splits: requested splits without a folder in the release (not an error).
        complete: True when meta.json was written (at least one video converted).
        seconds: wall time.
    """

    out_dir: Path
    num_videos: int = 0
    num_clips: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    missing_splits: list[str] = field(default_factory=list)
    complete: bool = False
    seconds: float = 0.0

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    @property
    def meta_path(self) -> Path:
        return self.out_dir / META_FILE


# --------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------


def _source_files(src_root: Path, splits: Sequence[str]) -> list[Path]:
    files = [src_root / EMOTION_FILE] if (src_root / EMOTION_FILE).is_file() else []
    for split in splits:
        for vf in find_videos(src_root, split):
            files += vf.source_files()
            if vf.table is None or vf.label is None:  # a folder that will be reported
                files.append(vf.folder)
    return files


def source_fingerprint(src_root: str | os.PathLike, splits: Sequence[str] = SPLITS) -> str:
    """sha256 over (relative name, size, mtime_ns) of every source file prepare reads."""
    src_root = Path(src_root)
    h = hashlib.sha256()
    for p in sorted(_source_files(src_root, splits)):
        st = p.stat()
        rel = p.relative_to(src_root).as_posix()
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_meta(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The cache's meta.json as a dict, or None when absent / unreadable (incomplete cache)."""
    try:
        with open(Path(out_dir) / META_FILE) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def is_cache_current(src_root: str | os.PathLike, out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds a complete cache of this format version whose source
    fingerprint (over the splits it was built from) matches ``src_root`` now."""
    meta = read_meta(out_dir)
    if meta is None or meta.get("format_version") != FORMAT_VERSION:
        return False
    try:
        return meta.get("fingerprint") == source_fingerprint(src_root, meta.get("splits", SPLITS))
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# conversion of one video (runs in worker processes)
# --------------------------------------------------------------------------------------------


def convert_video(
    vf: VideoFiles,
    out_dir: str | os.PathLike,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    dtype: str = "float32",
    emotion: int | None = None,
) -> list[dict[str, Any]]:
    """Read one video folder, write ``<out>/<split>/<vid>.npy`` (T, 137, 3) atomically, and
    return its index rows (dicts with :data:`INDEX_COLUMNS`). Raises FormatError on bad input."""
    if vf.table is None:
        raise FormatError(
            vf.folder,
            f"no {vf.video_id}_openpose.xlsx / .csv or {vf.video_id}_light_hand.csv in the folder",
        )
    if vf.label is None:
        raise FormatError(vf.folder / f"{vf.video_id}_label.csv", "no such file")
    table = read_openpose_table(vf.table)
    check_coordinates(vf.table, table, img_shape)
    labels = read_label_csv(vf.label, num_frames=len(table))
    if vf.split in LABELLED_SPLITS:
        unlabelled = [i for i, (label, _, _) in enumerate(labels) if label == UNKNOWN_LABEL]
        if unlabelled:
            names = ", ".join(f"{vf.video_id}_{i}" for i in unlabelled[:5])
            more = f" (+{len(unlabelled) - 5} more)" if len(unlabelled) > 5 else ""
            raise FormatError(
                vf.label,
                f"{len(unlabelled)} interval(s) without a class ({names}{more}) in the labelled "
                f"split {vf.split!r}: every training / validation clip needs its class id",
            )
    arr = table.reshape(len(table), NUM_KEYPOINTS, 3).astype(dtype, copy=False)
    rel = f"{vf.split}/{vf.video_id}.npy"
    atomic_write(Path(out_dir) / rel, lambda f: np.save(f, arr, allow_pickle=False))
    return [
        {
            "name": f"{vf.video_id}_{row}",
            "video_id": vf.video_id,
            "split": vf.split,
            "row": row,
            "label": label,
            "start": start,
            "end": end,
            "video_frames": len(table),
            "height": int(img_shape[0]),
            "width": int(img_shape[1]),
            "emotion": -1 if emotion is None else int(emotion),
            "video_path": str(vf.video.resolve()) if vf.video is not None else "",
            "file": rel,
        }
        for row, (label, start, end) in enumerate(labels)
    ]


#: release splits whose label files must give every interval a class (test labels are hidden)
LABELLED_SPLITS = ("train", "validate")
#: how far outside the stated frame a keypoint may lie, as a fraction of the frame size (pose
#: estimators place occluded joints slightly outside; a 1920x1080 release read as 1280x720 fits)
COORD_TOLERANCE = 0.5


def check_coordinates(
    path: str | os.PathLike, table: np.ndarray, img_shape: tuple[int, int]
) -> None:
    """Raise a FormatError naming the first row and column of ``table`` (T, 411) whose x or y
    cannot be a pixel of an ``img_shape`` (height, width) frame, within :data:`COORD_TOLERANCE`
    (e.g. 1e30, which a float16 cache would also turn into inf)."""
    h, w = (float(v) for v in img_shape)
    for axis, (size, offset) in enumerate(((w, 0), (h, 1))):
        values = table[:, offset::3]
        lo, hi = -COORD_TOLERANCE * size, (1 + COORD_TOLERANCE) * size
        bad = (values < lo) | (values > hi)
        if bad.any():
            r, j = (int(v) for v in np.argwhere(bad)[0])
            name = "xy"[axis]
            raise FormatError(
                path,
                f"{describe_column(3 * j + offset)}: {name}={values[r, j]:.6g} is not a pixel of a "
                f"{int(w)}x{int(h)} frame (allowed {lo:g}..{hi:g}; {int(bad.sum())} such values "
                f"in the table; give the release's frame size if it differs)",
                row=r + 1,
            )


def _problem(vf: VideoFiles, exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, FormatError):
        return (exc.path or str(vf.folder), str(exc))
    return (str(vf.table or vf.folder), f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# the release
# --------------------------------------------------------------------------------------------


def prepare_release(
    src_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: Sequence[str] = SPLITS,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    dtype: str = "float32",
    workers: int = 1,
    strict: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Convert the MiGA 2025 release at ``src_root`` into a cache at ``out_dir``.

    Args:
        src_root: release root with ``<split>/<vid>/`` folders (and optionally
            ``emotion_labels.csv``).
        out_dir: cache folder (created; an existing cache there is invalidated first by removing
            its meta.json and rewritten).
        splits: splits to convert; a split without a folder is noted, not an error.
        img_shape: (height, width) of the release frames.
        dtype: ``"float32"`` or ``"float16"`` (see the module doc: float16 loses ~1 px).
        workers: processes parsing spreadsheets in parallel (0 = all CPUs).
        strict: raise :class:`PrepareError` at the first bad video instead of skipping it.
        progress: show a Rich progress bar and print the summary tables (stderr / stdout).

    Returns:
        A :class:`PrepareResult`; ``complete`` is False (and no meta.json is written) when no
        video could be converted.
    """
    t0 = time.perf_counter()
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not in {DTYPES}")
    src_root, out_dir = Path(src_root).resolve(), Path(out_dir)
    if not src_root.is_dir():
        raise FileNotFoundError(f"release root {src_root} is not a folder")
    splits = tuple(splits)
    if workers <= 0:
        workers = os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)  # from here on the cache is incomplete
    result = PrepareResult(out_dir=out_dir)
    fingerprint = source_fingerprint(src_root, splits)

    emotions: dict[str, int] = {}
    emo_file = src_root / EMOTION_FILE
    if emo_file.is_file():
        try:
            emotions = read_emotion_labels(emo_file)
        except FormatError as exc:
            result.skipped.append((str(emo_file), str(exc)))
            if strict:
                _fail(result, splits, src_root)

    videos: list[VideoFiles] = []
    for split in splits:
        folder = split_dir(src_root, split)
        if folder is None:
            result.missing_splits.append(split)
            continue
        found = find_videos(src_root, split)
        log.info("release split %s: %d video folders in %s", split, len(found), folder)
        videos += found
    if not videos:
        raise FileNotFoundError(no_videos_message(src_root, splits))

    rows: list[dict[str, Any]] = []
    args = (str(out_dir), tuple(img_shape), dtype)
    if workers == 1 or len(videos) <= 1:
        with progress_bar("prepare", len(videos), progress) as advance:
            for vf in videos:
                try:
                    video_rows = convert_video(vf, *args, emotion=emotions.get(vf.video_id))
                    _note_empty(result, vf, video_rows)
                    rows += video_rows
                    result.num_videos += 1
                except Exception as exc:
                    result.skipped.append(_problem(vf, exc))
                    if strict:
                        _fail(result, splits, src_root)
                advance(f"{vf.split}/{vf.video_id}")
    else:
        # fork is ~20x cheaper to start than forkserver/spawn and works from notebooks and
        # stdin; all workers are forked at the first submit, before the progress bar's thread.
        ctx = multiprocessing.get_context(_start_method())
        with ProcessPoolExecutor(max_workers=min(workers, len(videos)), mp_context=ctx) as ex:
            futures: dict[Future, VideoFiles] = {
                ex.submit(convert_video, vf, *args, emotion=emotions.get(vf.video_id)): vf
                for vf in videos
            }
            try:
                with progress_bar("prepare", len(videos), progress) as advance:
                    for fut in as_completed(futures):
                        vf = futures[fut]
                        exc = fut.exception()
                        if exc is None:
                            video_rows = fut.result()
                            _note_empty(result, vf, video_rows)
                            rows += video_rows
                            result.num_videos += 1
                        else:
                            result.skipped.append(_problem(vf, exc))
                            if strict:
                                _fail(result, splits, src_root)
                        advance(f"{vf.split}/{vf.video_id}")
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise

    order = {s: i for i, s in enumerate(splits)}
    rows.sort(key=lambda r: (order[r["split"]], r["video_id"], r["row"]))
    result.num_clips = len(rows)
    _write_index(out_dir / INDEX_FILE, rows)
    result.seconds = time.perf_counter() - t0
    _write_report(result, splits, src_root)
    if result.num_videos > 0:
        meta = {
            "format_version": FORMAT_VERSION,
            "source_root": str(src_root),
            "dtype": dtype,
            "array_layout": "(T, 137, 3): x, y, confidence in pixels; OpenPose-137 joints",
            "splits": list(splits),
            "img_shape": [int(img_shape[0]), int(img_shape[1])],
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "num_videos": result.num_videos,
            "num_clips": result.num_clips,
            "num_skipped": len(result.skipped),
            "fingerprint": fingerprint,
        }
        _write_meta(out_dir / META_FILE, meta)  # LAST: marks the cache complete
        result.complete = True
    result.seconds = time.perf_counter() - t0
    if progress:
        print_summary(result)
    return result


def no_videos_message(src_root: Path, splits: Sequence[str]) -> str:
    """Why a release gave no video: the split folders looked for and what the root holds."""
    looked = "; ".join(
        f"{split}: "
        + ", ".join(str(c.relative_to(src_root)) for c in split_dir_candidates(src_root, split))
        for split in splits
    )
    holds = sorted(p.name + ("/" if p.is_dir() else "") for p in src_root.iterdir())[:20]
    return (
        f"no video folders found in the release {src_root} (looked for {looked}; each should hold "
        f"<vid>/ folders with <vid>_openpose.xlsx|csv or <vid>_light_hand.csv, and <vid>_label.csv). "
        f"The folder holds: "
        f"{', '.join(holds) or 'nothing'}"
    )


def _note_empty(result: PrepareResult, vf: VideoFiles, rows: list[dict[str, Any]]) -> None:
    """A video whose label file lists no interval gives no clips: say so (never silently)."""
    if rows:
        return
    labelled = vf.split in LABELLED_SPLITS
    message = f"{vf.label}: no intervals in the label file; video {vf.video_id} gives no clips" + (
        f" (split {vf.split!r} is labelled: is the file complete?)" if labelled else ""
    )
    result.warnings.append((str(vf.label), message))
    if labelled:
        log.warning(message)


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in methods else methods[0]


def _write_index(path: Path, rows: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def _write_report(result: PrepareResult, splits: Sequence[str], src_root: Path) -> None:
    report = {
        "source_root": str(src_root),
        "splits": list(splits),
        "missing_splits": result.missing_splits,
        "num_videos": result.num_videos,
        "num_clips": result.num_clips,
        "num_skipped": len(result.skipped),
        "seconds": round(result.seconds, 3),
        "skipped": [{"file": f, "error": m} for f, m in result.skipped],
        "warnings": [{"file": f, "warning": m} for f, m in result.warnings],
    }
    atomic_write_text(result.report_path, json.dumps(report, indent=2) + "\n")


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def _fail(result: PrepareResult, splits: Sequence[str], src_root: Path) -> None:
    _write_report(result, splits, src_root)
    file, message = result.skipped[-1]
    raise PrepareError(f"strict prepare stopped: {message}", result.skipped)


def print_summary(result: PrepareResult, console: Any = None) -> None:
    """Print the counts and, when any, a table of skipped files with their errors (Rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summary = Table(title="prepare summary", show_header=False)
    summary.add_row("cache", str(result.out_dir))
    summary.add_row("videos converted", str(result.num_videos))
    summary.add_row("clips", str(result.num_clips))
    summary.add_row("skipped", str(len(result.skipped)))
    if result.warnings:
        summary.add_row("warnings", str(len(result.warnings)))
    if result.missing_splits:
        summary.add_row("splits not in the release", ", ".join(result.missing_splits))
    summary.add_row("complete", "yes" if result.complete else "NO (no meta.json)")
    summary.add_row("seconds", f"{result.seconds:.1f}")
    console.print(summary)
    if result.skipped:
        problems = Table(title=f"skipped ({len(result.skipped)}), see {result.report_path}")
        problems.add_column("file", overflow="fold")
        problems.add_column("problem", overflow="fold")
        for file, message in result.skipped:
            prefix = f"{file}: "
            problems.add_row(
                file, message[len(prefix) :] if message.startswith(prefix) else message
            )
        console.print(problems)
    if result.warnings:
        notes = Table(title=f"warnings ({len(result.warnings)}), see {result.report_path}")
        notes.add_column("file", overflow="fold")
        notes.add_column("warning", overflow="fold")
        for file, message in result.warnings:
            notes.add_row(file, message.removeprefix(f"{file}: "))
        console.print(notes)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="migalab-prepare",
        description="Convert a MiGA 2025 release (xlsx/csv per video) into a fast .npy cache.",
    )
    p.add_argument("src", type=Path, help="release root with train/ validate/ test/ folders")
    p.add_argument("out", type=Path, help="cache folder to write")
    p.add_argument(
        "--splits",
        nargs="+",
        default=list(SPLITS),
        help="splits to convert (space or comma separated; default: train validate test)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel processes (0 = all CPUs)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="float16 loses ~1 px")
    p.add_argument("--strict", action="store_true", help="any bad video is fatal")
    p.add_argument("--height", type=int, default=DEFAULT_IMG_SHAPE[0], help="frame height (px)")
    p.add_argument("--width", type=int, default=DEFAULT_IMG_SHAPE[1], help="frame width (px)")
    p.add_argument("--force", action="store_true", help="rebuild even when the cache is current")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``migalab-prepare``: exit 0 when at least one video was converted, 1 otherwise (or on a
    strict failure)."""
    args = build_parser().parse_args(argv)
    splits = [s for item in args.splits for s in item.split(",") if s]
    img_shape = (args.height, args.width)
    meta = read_meta(args.out)
    if (
        not args.force
        and meta is not None
        and meta.get("splits") == splits
        and meta.get("dtype") == args.dtype
        and meta.get("img_shape") == list(img_shape)
        and is_cache_current(args.src, args.out)
    ):
        if not args.quiet:
            print(f"cache {args.out} is current ({meta.get('num_clips')} clips); --force rebuilds")
        return 0
    try:
        result = prepare_release(
            args.src,
            args.out,
            splits=splits,
            img_shape=img_shape,
            dtype=args.dtype,
            workers=args.workers,
            strict=args.strict,
            progress=not args.quiet,
        )
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.num_videos == 0:
        print("error: no video could be converted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
