"""Convert a clip-level release (pre-cut skeleton clips: the MiGA 2023 ``<split>_data.npy`` +
``<split>_label.pkl`` pairs, a pyskl annotation pickle) into the skeleton cache.

The clips of one split are stored back to back in one array ``<cache>/<split>/clips.npy``
(M, ΣT, V, 3) (persons padded to the split's largest M with score 0, as pyskl pads them); each
index row is one clip's frame interval of it. ``meta.json`` names the clips' joint layout, which
is the only layout the cache gives (:class:`migalab.data.cache.SkeletonCache`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.cache import FORMAT_VERSION, META_FILE, read_meta, write_index, write_meta
from migalab.data.formats.errors import FormatError
from migalab.data.formats.limits import check_split_size
from migalab.data.prepare.result import PrepareResult, fail, write_report
from migalab.data.record import ClipRecord
from migalab.utils.io import atomic_write

log = logging.getLogger(__name__)

#: ``read(src, split) -> clips`` of one release split
ReadSplit = Callable[[Path, str], list[ClipRecord]]
#: ``files(src, splits) -> the source files read`` (for the fingerprint)
SourceFiles = Callable[[Path, Sequence[str]], list[Path]]


def fingerprint(files: Sequence[Path]) -> str:
    """sha256 over (name, size, mtime_ns) of the existing files among ``files``."""
    h = hashlib.sha256()
    for p in sorted(files):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def is_clip_cache_current(
    src: str | os.PathLike, out_dir: str | os.PathLike, files: SourceFiles
) -> bool:
    """True when ``out_dir`` is a complete cache whose source fingerprint matches ``src`` now."""
    meta = read_meta(out_dir)
    if meta is None or meta.get("format_version") != FORMAT_VERSION:
        return False
    return meta.get("fingerprint") == fingerprint(files(Path(src), meta.get("splits", [])))


def stack_clips(records: Sequence[ClipRecord], dtype: str = "float32") -> tuple[np.ndarray, list]:
    """Clips of one split back to back: (M, ΣT, V, 3) and each clip's (start, end) in it.

    Raises:
        FormatError: the clips disagree on the joint layout or count (naming the first that
            does), or the array would exceed :data:`~migalab.data.formats.limits.MAX_SPLIT_VALUES`.
    """
    first = records[0]
    persons = max(r.keypoint.shape[0] for r in records)
    for r in records:
        if r.layout != first.layout or r.num_joints != first.num_joints:
            raise FormatError(
                r.meta.get("source", r.name),
                f"clip {r.name}: {r.num_joints} joints ({r.layout}) but clip {first.name} has "
                f"{first.num_joints} ({first.layout}); one cache holds one layout",
            )
    total = sum(r.num_frames for r in records)
    check_split_size(
        first.meta.get("source", first.name), "clips", persons, total, first.num_joints
    )
    out = np.zeros((persons, total, first.num_joints, 3), dtype=dtype)
    spans, t = [], 0
    for r in records:
        m, n = r.keypoint.shape[0], r.num_frames
        out[:m, t : t + n, :, :2] = r.keypoint
        out[:m, t : t + n, :, 2] = r.keypoint_score
        spans.append((t, t + n - 1))
        t += n
    return out, spans


def prepare_clip_release(
    src: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    read: ReadSplit,
    files: SourceFiles,
    splits: Sequence[str],
    img_shape: tuple[int, int] | None = None,
    dtype: str = "float32",
    workers: int = 1,
    strict: bool = False,
    progress: bool = True,
) -> PrepareResult:
    """Convert the release at ``src`` (a folder or a file) split by split with ``read``.

    A split whose source is missing is noted in ``missing_splits``; a split that cannot be read
    is skipped and reported (``strict``: PrepareError). ``img_shape`` overrides the records' own
    frame size; ``workers`` is accepted for a uniform signature (reading is one pass per split).
    """
    del workers
    t0 = time.perf_counter()
    src, out_dir = Path(src).resolve(), Path(out_dir)
    if not src.exists():
        raise FileNotFoundError(f"release {src} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META_FILE).unlink(missing_ok=True)  # from here on the cache is incomplete
    result = PrepareResult(out_dir=out_dir)
    rows: list[dict[str, Any]] = []
    layout = None
    for split in splits:
        if not files(src, [split]):
            result.missing_splits.append(split)
            continue
        try:
            records = read(src, split)
            if not records:
                result.warnings.append((str(src), f"split {split!r} holds no clips"))
                continue
            array, spans = stack_clips(records, dtype)
            if layout is not None and records[0].layout != layout:
                raise FormatError(src, f"split {split!r} is {records[0].layout}, not {layout}")
        except FormatError as exc:
            result.skipped.append((exc.path or str(src), str(exc)))
            if strict:
                fail(result, splits, src)
            continue
        layout = records[0].layout
        rel = f"{split}/clips.npy"
        atomic_write(out_dir / rel, lambda f, a=array: np.save(f, a, allow_pickle=False))
        for row, (r, (start, end)) in enumerate(zip(records, spans, strict=True)):
            h, w = img_shape or r.img_shape
            rows.append(
                {
                    "name": r.name,
                    "video_id": r.video_id,
                    "split": split,
                    "row": row,
                    "label": int(r.label),
                    "start": start,
                    "end": end,
                    "video_frames": r.num_frames,
                    "height": int(h),
                    "width": int(w),
                    "emotion": -1 if r.emotion is None else int(r.emotion),
                    "video_path": r.video_path or "",
                    "file": rel,
                }
            )
        result.num_videos += len(records)
        log.info("release split %s: %d clips (%s) from %s", split, len(records), layout, src)
    result.num_clips = len(rows)
    write_index(out_dir, rows)
    result.seconds = time.perf_counter() - t0
    write_report(result, splits, src)
    if rows:
        write_meta(
            out_dir,
            {
                "format_version": FORMAT_VERSION,
                "source_root": str(src),
                "dtype": dtype,
                "layout": layout,
                "array_layout": "(M, sum T, V, 3) per split: x, y, confidence",
                "splits": list(splits),
                "img_shape": list(img_shape) if img_shape else None,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "num_videos": result.num_videos,
                "num_clips": result.num_clips,
                "num_skipped": len(result.skipped),
                "fingerprint": fingerprint(files(src, splits)),
            },
        )
        result.complete = True
    if progress:
        result.print_summary()
    return result
