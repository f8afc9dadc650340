"""Convert a MiGA release of per-video tables (2025: 137-point xlsx/csv; 2024-26: 35-joint
``_light_hand.csv``) once into the skeleton cache (:mod:`migalab.data.cache`).

Parsing the release spreadsheets costs seconds per video (python-calamine; ~10x that with
openpyxl), so training never reads them. Each video's whole table becomes
``<cache>/<split>/<vid>.npy`` (T, 137, 3) = (x, y, confidence) in pixels, float32 by default.
``dtype="float16"`` halves the size but float16 has an 11-bit mantissa, so coordinates in
1024..2048 px are rounded to 1 px steps (0.5 px in 512..1024): ~1 px error at 1280-px frames.
Keep float32 unless disk space matters more than sub-pixel accuracy.

``meta.json`` holds a fingerprint of the source files (names, sizes, mtimes) for
:func:`is_cache_current`. Every file is written atomically; bad videos are skipped and reported,
not fatal, unless ``strict``.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.cache import FORMAT_VERSION, META_FILE, read_meta, write_index, write_meta
from migalab.data.formats.errors import FormatError
from migalab.data.formats.light35 import is_light_table
from migalab.data.formats.miga2025 import (
    DEFAULT_IMG_SHAPE,
    EMOTION_FILE,
    NUM_KEYPOINTS,
    SPLITS,
    ReleaseRoot,
    VideoFiles,
    describe_column,
    find_videos,
    read_emotion_labels,
    read_label_csv,
    read_openpose_table,
    release_roots,
    split_dir,
    split_dir_candidates,
)
from migalab.data.prepare.result import PrepareResult, fail, write_report
from migalab.data.record import UNKNOWN_LABEL
from migalab.utils.io import atomic_write
from migalab.utils.progress import progress_bar

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16")


# --------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------


def resolve_release(src_root: ReleaseRoot) -> ReleaseRoot:
    """The release with its folders as absolute paths: one root (a Path), several (a list) or a
    mapping split -> folder (a dict); a one-element list is one root."""
    if isinstance(src_root, Mapping):
        return {str(k): Path(v).resolve() for k, v in src_root.items()}
    if isinstance(src_root, Sequence) and not isinstance(src_root, str):
        roots = [Path(r).resolve() for r in src_root]
        return roots[0] if len(roots) == 1 else roots
    return Path(src_root).resolve()


def describe_release(src_root: ReleaseRoot) -> str:
    """The release's folders as one line (``/a`` or ``/a, /b`` or ``train=/a, test=/b``)."""
    if isinstance(src_root, Mapping):
        return ", ".join(f"{k}={v}" for k, v in src_root.items())
    return ", ".join(str(r) for r in release_roots(src_root))


def emotion_file(src_root: ReleaseRoot) -> Path | None:
    """The release's ``emotion_labels.csv`` (the first of its folders that holds one)."""
    for root in release_roots(src_root):
        if (root / EMOTION_FILE).is_file():
            return root / EMOTION_FILE
    return None


def _source_files(src_root: ReleaseRoot, splits: Sequence[str]) -> list[Path]:
    emo = emotion_file(src_root)
    files = [emo] if emo is not None else []
    for split in splits:
        for vf in find_videos(src_root, split):
            files += vf.source_files()
            if vf.table is None or vf.label is None:  # a folder that will be reported
                files.append(vf.folder)
    return files


def source_fingerprint(src_root: ReleaseRoot, splits: Sequence[str] = SPLITS) -> str:
    """sha256 over (name, size, mtime_ns) of every source file prepare reads; names relative to
    the root for a one-folder release, absolute for several folders."""
    src_root = resolve_release(src_root)
    h = hashlib.sha256()
    for p in sorted(_source_files(src_root, splits)):
        st = p.stat()
        rel = p.relative_to(src_root).as_posix() if isinstance(src_root, Path) else p.as_posix()
        h.update(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def is_cache_current(src_root: ReleaseRoot, out_dir: str | os.PathLike) -> bool:
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
    src_root: ReleaseRoot,
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
        src_root: release root with ``<split>/<vid>/`` folders or the official archive
            folders (and optionally ``emotion_labels.csv``); or several roots (each split from
            the first that holds it: train / validate from one archive, test from another); or
            a mapping split -> folder (the split's folder or a root holding it).
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
    src_root, out_dir = resolve_release(src_root), Path(out_dir)
    absent = [r for r in release_roots(src_root) if not r.is_dir()]
    if absent:
        raise FileNotFoundError(f"release folder {absent[0]} is not a folder")
    splits = tuple(splits)
    if workers <= 0:
        workers = os.cpu_count() or 1
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)  # from here on the cache is incomplete
    result = PrepareResult(out_dir=out_dir)
    fingerprint = source_fingerprint(src_root, splits)

    emotions: dict[str, int] = {}
    emo_file = emotion_file(src_root)
    if emo_file is not None:
        try:
            emotions = read_emotion_labels(emo_file)
        except FormatError as exc:
            result.skipped.append((str(emo_file), str(exc)))
            if strict:
                fail(result, splits, describe_release(src_root))

    videos: list[VideoFiles] = []
    for split in splits:
        folder = split_dir(src_root, split)
        if folder is None:
            result.missing_splits.append(split)
            continue
        found = find_videos(src_root, split)
        formats = Counter(_table_format(vf) for vf in found)
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(formats.items()))
        log.info("release split %s: %d video folders (%s) in %s", split, len(found), kinds, folder)
        if progress:
            print(f"{split}: {len(found)} videos ({kinds or 'none'}) in {folder}", flush=True)
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
                        fail(result, splits, describe_release(src_root))
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
                                fail(result, splits, describe_release(src_root))
                        advance(f"{vf.split}/{vf.video_id}")
            except BaseException:
                ex.shutdown(wait=True, cancel_futures=True)
                raise

    order = {s: i for i, s in enumerate(splits)}
    rows.sort(key=lambda r: (order[r["split"]], r["video_id"], r["row"]))
    result.num_clips = len(rows)
    write_index(out_dir, rows)
    result.seconds = time.perf_counter() - t0
    write_report(result, splits, describe_release(src_root))
    if result.num_videos > 0:
        meta = {
            "format_version": FORMAT_VERSION,
            "source_root": describe_release(src_root),
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
        write_meta(out_dir, meta)  # LAST: marks the cache complete
        result.complete = True
    result.seconds = time.perf_counter() - t0
    if progress:
        result.print_summary()
    return result


def no_videos_message(src_root: ReleaseRoot, splits: Sequence[str]) -> str:
    """Why a release gave no video: the split folders looked for and what the folders hold."""
    single = src_root if isinstance(src_root, Path) else None

    def shown(p: Path) -> str:
        return str(p.relative_to(single)) if single is not None else str(p)

    looked = "; ".join(
        f"{split}: " + ", ".join(shown(c) for c in split_dir_candidates(src_root, split))
        for split in splits
    )
    holds = "; ".join(
        f"{root}: "
        + (
            ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:20])
            or "nothing"
        )
        for root in release_roots(src_root)
    )
    return (
        f"no video folders found in the release {describe_release(src_root)} (looked for "
        f"{looked}; each should hold <vid>/ folders with <vid>_openpose.xlsx|csv or "
        f"<vid>_light_hand.csv, and <vid>_label.csv). The folder holds: {holds}"
    )


def _table_format(vf: VideoFiles) -> str:
    """What kind of skeleton table a video folder has (for the found-videos report)."""
    if vf.table is None:
        return "no table"
    if is_light_table(vf.table):
        return "35-joint csv"
    return f"137-point {vf.table.suffix.lstrip('.')}"


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
