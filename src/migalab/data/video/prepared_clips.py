"""The prepared clip cache: person-cropped, resized, short-GOP clips, decoded and written once.

Reading 16 frames of a clip straight from a long-GOP (keyframe every ~250 frames) 1280x720
interview video means decoding from the preceding keyframe, about a second per clip on a CPU.
:func:`prepare_clips` instead decodes every source video once, sequentially from the first to
the last frame any of its clips needs (seeking over long gaps between clips), crops each clip's
person box out of every frame (zero padding where the box leaves the frame), resizes it to
``size x size`` and writes ``<out_dir>/<split>/<name>.mp4`` with a short GOP (16 frames), so a
training read decodes at most a handful of small frames — tens of times faster.

Layout of ``out_dir``:

* ``<split>/<name>.mp4``: frame ``k`` of the file is frame ``start + k`` of the source clip.
* ``clips.csv``: name, split, file (relative path), start, end, frames, x0, y0, x1, y1, size;
  plus a ``flags`` column when any job carries per-frame flags (e.g. face crops: whether a face
  is visible): one ``0`` / ``1`` character per frame of the clip.
* ``clips_meta.json``: options, fingerprint of jobs + sources + options, counts and problems;
  written last (and removed first), so an interrupted prepare is never taken as current.

Per-frame boxes: a job may carry ``boxes`` (one box per frame of the clip, e.g. a face track
from :mod:`migalab.data.video.faces`); frame ``start + k`` is then cropped with ``boxes[k]``
instead of ``box`` (which stays the clip's summary box in ``clips.csv``). Jobs without
``boxes`` / ``flags`` write and fingerprint exactly as before.

Crop: the box (x0, y0, x1, y1) in source pixels covers pixel columns ``floor(x0) ..
ceil(x1) - 1`` and rows ``floor(y0) .. ceil(y1) - 1``; pixels outside the frame are black. The
crop is resized to ``size x size`` as is (make boxes square upstream to keep the aspect ratio)
with torchvision's bilinear ``resize(antialias=True)`` on uint8 (the PIL-compatible
antialiased filter).
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing as mp
import os
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.video.readers import (
    ClipRangeError,
    ReaderPool,
    VideoReader,
    VideoReadError,
    open_video,
)
from migalab.data.video.transforms import crop_resize as crop_resize_clip
from migalab.data.video.writer import VideoWriter
from migalab.utils.io import atomic_write, atomic_write_json
from migalab.utils.progress import progress_bar

#: Bumped when the cache layout or the crop/resize changes (part of the fingerprint).
CACHE_VERSION = 1
CSV_NAME = "clips.csv"
META_NAME = "clips_meta.json"
CSV_COLUMNS = ("name", "split", "file", "start", "end", "frames", "x0", "y0", "x1", "y1", "size")


@dataclass
class ClipJob:
    """One clip to prepare.

    Attributes:
        name: clip id (unique; the file is ``<split>/<name>.mp4``).
        video_path: the source video.
        start, end: 0-based inclusive frame interval in the source video.
        box: (x0, y0, x1, y1) person box in the source video's pixel coordinates; may extend
            beyond the frame (padded with black).
        split: subfolder (e.g. "train").
        boxes: optional (end - start + 1, 4) per-frame boxes (source-video pixels); frame
            ``start + k`` is cropped with ``boxes[k]`` (``box`` is then only the summary).
        flags: optional (end - start + 1,) bool per-frame flags stored in ``clips.csv`` (e.g.
            face visible); read back with :meth:`PreparedClips.flags`.
    """

    name: str
    video_path: str
    start: int
    end: int
    box: tuple[float, float, float, float]
    split: str
    boxes: np.ndarray | None = None
    flags: np.ndarray | None = None


@dataclass
class PrepareClipsResult:
    """What :func:`prepare_clips` did: clips ``written`` and ``skipped``, ``problems`` as
    (video_path, message) pairs, wall-clock ``seconds``."""

    out_dir: Path
    written: int
    skipped: int
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


# -- crop / resize -----------------------------------------------------------------------------
def crop_resize(frame: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Crop ``box`` out of an (H, W, 3) uint8 frame (black padding) and resize it to
    (size, size, 3) uint8: :func:`migalab.data.video.transforms.crop_resize` on one frame, so
    prepared clips and clips cropped from the long video at load time cover the same pixels."""
    return crop_resize_clip(frame[None], box, size)[0].permute(1, 2, 0).numpy()


# -- fingerprint -------------------------------------------------------------------------------
def _file_sig(path: str) -> list[int]:
    try:
        st = os.stat(path)
    except OSError:
        return [-1, -1]
    return [int(st.st_size), int(st.st_mtime_ns)]


def clips_fingerprint(jobs: Sequence[ClipJob], size: int, gop: int, crf: int) -> str:
    """sha256 over the jobs (name, split, video path, the video's file size and mtime, start,
    end, box rounded to 0.01 px; for jobs with per-frame ``boxes`` / ``flags`` also digests of
    those, boxes rounded to 0.01 px) in name order and the options (size, gop, crf, cache
    version)."""
    sigs: dict[str, list[int]] = {}
    rows = []
    for j in sorted(jobs, key=lambda j: j.name):
        path = os.fspath(j.video_path)
        if path not in sigs:
            sigs[path] = _file_sig(path)
        box = [round(float(v), 2) for v in j.box]
        row = [j.name, j.split, path, *sigs[path], int(j.start), int(j.end), *box]
        if j.boxes is not None:
            boxes = np.round(np.asarray(j.boxes, dtype=np.float64), 2) + 0.0  # no -0.0
            row.append("boxes:" + hashlib.sha256(boxes.tobytes()).hexdigest())
        if j.flags is not None:
            row.append("flags:" + _flag_string(j.flags))
        rows.append(row)
    payload = {"version": CACHE_VERSION, "size": size, "gop": gop, "crf": crf, "jobs": rows}
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def clips_are_current(
    out_dir: str | os.PathLike, jobs: Sequence[ClipJob], size: int, gop: int, crf: int
) -> bool:
    """Whether ``out_dir`` holds a finished prepare of exactly these jobs and options (same
    fingerprint) whose listed clip files all exist."""
    out = Path(out_dir)
    try:
        meta = json.loads((out / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if meta.get("fingerprint") != clips_fingerprint(jobs, size, gop, crf):
        return False
    try:
        rows = _read_csv(out / CSV_NAME)
    except (OSError, ValueError, KeyError):
        return False
    return all((out / r["file"]).is_file() for r in rows)


def _flag_string(flags: np.ndarray) -> str:
    return "".join("1" if f else "0" for f in np.asarray(flags, dtype=bool).reshape(-1))


# -- preparation -------------------------------------------------------------------------------
def _clip_file(job: ClipJob) -> str:
    return f"{job.split}/{job.name}.mp4"


def _validate(jobs: Sequence[ClipJob], size: int, gop: int, on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if size < 2 or size % 2:
        raise ValueError(f"size must be even and >= 2 (yuv420p), got {size}")
    if gop < 1:
        raise ValueError(f"gop must be >= 1, got {gop}")
    seen: set[str] = set()
    for j in jobs:
        for what, value in (("name", j.name), ("split", j.split)):
            if not value or "/" in value or "\\" in value or value in (".", ".."):
                raise ValueError(f"clip {j.name!r}: invalid {what} {value!r}")
        if j.name in seen:
            raise ValueError(f"duplicate clip name {j.name!r}")
        seen.add(j.name)
        if len(j.box) != 4:
            raise ValueError(f"clip {j.name}: box must be (x0, y0, x1, y1), got {j.box!r}")
        n = j.end - j.start + 1
        if j.boxes is not None and np.shape(j.boxes) != (n, 4):
            raise ValueError(f"clip {j.name}: boxes must be ({n}, 4), got {np.shape(j.boxes)}")
        if j.flags is not None and np.shape(j.flags) != (n,):
            raise ValueError(f"clip {j.name}: flags must be ({n},), got {np.shape(j.flags)}")


@dataclass
class _VideoOutcome:
    video_path: str
    written: list[str]
    problems: list[str]


def _prepare_video(
    video_path: str,
    jobs: list[ClipJob],
    out_dir: str,
    size: int,
    gop: int,
    crf: int,
    backend: str,
    threads: int,
    on_error: str,
    in_worker: bool = False,
) -> _VideoOutcome:
    """Prepare every clip of one source video in one sequential decode pass (module level so a
    spawned process pool can run it). Raises on the first problem when ``on_error="raise"``."""
    if in_worker:
        import torch

        torch.set_num_threads(1)
    written: list[str] = []
    problems: list[str] = []

    def problem(exc: Exception) -> None:
        if on_error == "raise":
            raise exc
        problems.append(str(exc))

    try:
        reader: VideoReader = open_video(video_path, backend=backend, threads=threads)
    except (VideoReadError, FileNotFoundError) as e:
        problem(e)
        return _VideoOutcome(video_path, written, problems)
    with reader:
        valid = []
        for j in jobs:
            if j.start < 0 or j.end >= reader.num_frames or j.end < j.start:
                problem(
                    ClipRangeError(
                        f"clip {j.name} frames {j.start}-{j.end}: {video_path} has "
                        f"{reader.num_frames} frames"
                    )
                )
            else:
                valid.append(j)
        if not valid:
            return _VideoOutcome(video_path, written, problems)
        valid.sort(key=lambda j: (j.start, j.end))
        needed = np.unique(np.concatenate([np.arange(j.start, j.end + 1) for j in valid]))
        out = Path(out_dir)
        active: dict[str, tuple[ClipJob, VideoWriter]] = {}
        nxt = 0  # next clip (in start order) to open
        try:
            for idx, frame in reader.iter_frames(needed):
                while nxt < len(valid) and valid[nxt].start <= idx:
                    j = valid[nxt]
                    writer = VideoWriter(
                        out / _clip_file(j), (size, size), fps=reader.fps, gop=gop, crf=crf
                    )
                    active[j.name] = (j, writer.__enter__())
                    nxt += 1
                for name in list(active):
                    j, writer = active[name]
                    box = j.box if j.boxes is None else j.boxes[idx - j.start]
                    writer.write(crop_resize(frame, box, size))
                    if idx >= j.end:
                        del active[name]
                        writer.__exit__(None, None, None)  # flush and publish
                        written.append(name)
        except VideoReadError as e:
            lost = len(valid) - len(written)
            msg = f"{e} ({lost} of {len(valid)} clips of this video not written)"
            for _, writer in active.values():  # drop the half-written clips
                writer.__exit__(VideoReadError, None, None)
            active.clear()
            problem(type(e)(msg) if on_error == "skip" else e)
        finally:
            for _, writer in active.values():
                writer.__exit__(RuntimeError, None, None)
    return _VideoOutcome(video_path, written, problems)


def prepare_clips(
    jobs: Sequence[ClipJob],
    out_dir: str | os.PathLike,
    size: int = 128,
    gop: int = 16,
    crf: int = 20,
    backend: str = "pyav",
    workers: int = 1,
    progress: bool = True,
    on_error: str = "raise",
    threads: int = 1,
) -> PrepareClipsResult:
    """Write the clip cache for ``jobs`` under ``out_dir`` (see the module docstring).

    Jobs are grouped by video; each video is decoded once (``backend``, ``threads`` decoder
    threads) from its first to its last needed frame and every clip covering a frame gets its
    cropped, resized (size x size) frame; clips may overlap. ``workers > 1`` prepares videos in
    a spawned process pool. A video that can't be read, is too short for a clip or breaks off
    while decoding raises :class:`VideoReadError` naming the file (``on_error="raise"``), or
    (``"skip"``) is reported in ``problems`` and the affected clips are skipped (clips of that
    video completed before a decode error are kept). ``clips.csv`` lists the written clips and
    ``clips_meta.json`` is written last.
    """
    t0 = time.perf_counter()
    _validate(jobs, size, gop, on_error)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / META_NAME).unlink(missing_ok=True)  # not current until this prepare finishes
    fingerprint = clips_fingerprint(jobs, size, gop, crf)

    by_video: dict[str, list[ClipJob]] = defaultdict(list)
    for j in jobs:
        by_video[os.fspath(j.video_path)].append(j)
    args = dict(out_dir=str(out), size=size, gop=gop, crf=crf, backend=backend, threads=threads)
    args["on_error"] = on_error
    outcomes: list[_VideoOutcome] = []
    with progress_bar("clips", len(by_video), enabled=progress) as advance:
        if workers <= 1 or len(by_video) <= 1:
            for path, vjobs in by_video.items():
                outcomes.append(_prepare_video(path, vjobs, **args))
                advance(Path(path).name)
        else:
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(max_workers=min(workers, len(by_video)), mp_context=ctx) as ex:
                pending: set[Future[_VideoOutcome]] = {
                    ex.submit(_prepare_video, path, vjobs, in_worker=True, **args)
                    for path, vjobs in by_video.items()
                }
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        if fut.exception() is not None:
                            for other in pending:
                                other.cancel()
                            raise fut.exception()
                        res = fut.result()
                        outcomes.append(res)
                        advance(Path(res.video_path).name)

    done_names = {n for o in outcomes for n in o.written}
    problems = [(o.video_path, msg) for o in outcomes for msg in o.problems]
    written = [j for j in jobs if j.name in done_names]

    with_flags = any(j.flags is not None for j in jobs)

    def dump_csv(f: Any) -> None:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS + (("flags",) if with_flags else ()))
        for j in written:
            box = [f"{float(v):.2f}" for v in j.box]
            row = [j.name, j.split, _clip_file(j), j.start, j.end, j.end - j.start + 1, *box, size]
            if with_flags:
                row.append(_flag_string(j.flags) if j.flags is not None else "")
            w.writerow(row)

    atomic_write(out / CSV_NAME, dump_csv, mode="w")
    seconds = time.perf_counter() - t0
    meta = {
        "version": CACHE_VERSION,
        "size": size,
        "gop": gop,
        "crf": crf,
        "backend": backend,
        "fingerprint": fingerprint,
        "counts": {
            "jobs": len(jobs),
            "videos": len(by_video),
            "written": len(written),
            "skipped": len(jobs) - len(written),
        },
        "problems": [list(p) for p in problems],
        "seconds": round(seconds, 3),
    }
    atomic_write_json(out / META_NAME, meta)
    return PrepareClipsResult(out, len(written), len(jobs) - len(written), problems, seconds)


# -- reading -----------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows[:1]:
        missing = [c for c in CSV_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
    return rows


@dataclass(frozen=True)
class _Clip:
    file: str
    start: int
    end: int
    frames: int
    box: tuple[float, float, float, float]
    size: int
    flags: str = ""


class PreparedClips:
    """Read access to a prepared clip cache (``clips.csv`` under ``out_dir``).

    Picklable (plain data only), so a Dataset holding one can go to DataLoader workers; pass a
    per-process :class:`ReaderPool` to :meth:`read` to keep recently used clip files open.
    """

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.out_dir = Path(out_dir)
        csv_path = self.out_dir / CSV_NAME
        if not csv_path.is_file():
            raise FileNotFoundError(f"no prepared clips: {csv_path} not found")
        self._clips: dict[str, _Clip] = {}
        for r in _read_csv(csv_path):
            box = (float(r["x0"]), float(r["y0"]), float(r["x1"]), float(r["y1"]))
            self._clips[r["name"]] = _Clip(
                r["file"],
                int(r["start"]),
                int(r["end"]),
                int(r["frames"]),
                box,
                int(r["size"]),
                r.get("flags") or "",
            )

    def __len__(self) -> int:
        return len(self._clips)

    def __contains__(self, name: object) -> bool:
        return name in self._clips

    @property
    def names(self) -> list[str]:
        """Clip names in ``clips.csv`` order."""
        return list(self._clips)

    def has(self, name: str) -> bool:
        """Whether clip ``name`` was prepared."""
        return name in self._clips

    def _get(self, name: str) -> _Clip:
        try:
            return self._clips[name]
        except KeyError:
            raise KeyError(f"clip {name!r} not in prepared clips {self.out_dir}") from None

    def path(self, name: str) -> Path:
        """The clip's mp4 file."""
        return self.out_dir / self._get(name).file

    def box(self, name: str) -> tuple[float, float, float, float]:
        """The (x0, y0, x1, y1) source-video box the clip was cropped with."""
        return self._get(name).box

    def flags(self, name: str) -> np.ndarray | None:
        """The clip's per-frame flags, (frames,) bool (e.g. face visible), or None when it was
        prepared without them."""
        flags = self._get(name).flags
        if not flags:
            return None
        return np.frombuffer(flags.encode("ascii"), dtype=np.uint8) == ord("1")

    def num_frames(self, name: str) -> int:
        """Frames in the clip (end - start + 1)."""
        return self._get(name).frames

    def read(
        self,
        name: str,
        offsets: np.ndarray | Sequence[int],
        backend: str = "pyav",
        pool: ReaderPool | None = None,
    ) -> np.ndarray:
        """Frames ``offsets`` (relative to the clip start) of clip ``name`` as uint8
        (len(offsets), size, size, 3) RGB.

        Raises:
            ClipRangeError: an offset outside [0, frames - 1] (names the clip and file).
            VideoReadError: the clip file is unreadable.
        """
        clip = self._get(name)
        path = self.out_dir / clip.file
        off = np.asarray(offsets, dtype=np.int64).reshape(-1)
        if off.size and (off.min() < 0 or off.max() >= clip.frames):
            raise ClipRangeError(
                f"clip {name} offsets {off.tolist()[:8]} outside 0..{clip.frames - 1}: "
                f"{path} has {clip.frames} frames"
            )
        if pool is not None:
            return pool.get(path, backend=backend).read_clip(0, clip.frames - 1, off, name=name)
        with open_video(path, backend=backend) as reader:
            return reader.read_clip(0, clip.frames - 1, off, name=name)
