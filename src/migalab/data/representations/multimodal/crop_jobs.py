"""What ``prepare_data`` writes for the multimodal representation: one person-crop clip job per labelled clip (the upper-body box of the clip's keypoints, :func:`clip_person_box`) and one face-crop job per clip (its face track, :func:`clip_face_track`), run in parallel with progress (:func:`_prepare_jobs`)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.representations.multimodal.options import FaceOptions
from migalab.data.skeleton.transforms import (
    Compose,
    temporal_steps,
)
from migalab.data.video.faces import FaceTrack, face_track, keypoints137
from migalab.data.video.prepared_clips import ClipJob
from migalab.data.video.readers import VideoReadError, open_video
from migalab.data.video.transforms import (
    person_box,
    scale_box,
)


@functools.cache
def _box_steps(layout: str) -> Compose:
    """``ValidateClip -> SelectLayout`` (no interpolation, so the load-time box of a raw clip is
    the box its prepared crop was cut with); built once per layout, not per sample."""
    return Compose(temporal_steps(layout))


def clip_person_box(record: ClipRecord, layout: str, margin: float = 0.15) -> np.ndarray:
    """(4,) upper-body box (x0, y0, x1, y1) of the whole clip in keypoint pixels, from the
    valid keypoints of ``layout`` (see :func:`migalab.data.video.transforms.person_box`)."""
    rec = _box_steps(layout)(record)
    return person_box(rec.keypoint, rec.keypoint_score, rec.img_shape, margin=margin)


def build_clip_jobs(
    cache: Any,
    layout: str,
    splits: Sequence[str],
    box_margin: float = 0.15,
    on_error: str = "raise",
) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """Prepare jobs (clip, its video, interval, person box in video pixels) for every clip of
    ``splits`` in a :class:`SkeletonCache`, and the problems found (clip or video, message):
    clips without a video, videos that cannot be opened. ``on_error="raise"`` raises at the
    first problem instead."""

    def person(record: ClipRecord, size: tuple[int, int]) -> ClipJob:
        box = scale_box(clip_person_box(record, layout, box_margin), record.img_shape, size)
        return ClipJob(
            name=record.name,
            video_path=str(record.video_path),
            start=record.start,
            end=record.end,
            box=tuple(float(v) for v in box),
            split=str(record.meta.get("split", "")),
        )

    return _clip_jobs(cache, layout, splits, on_error, person)


def clip_face_track(record: ClipRecord, face: FaceOptions | None = None) -> FaceTrack:
    """The face track of a clip's first person (:func:`migalab.data.video.faces.face_track`
    with ``face``'s options; any layout, its joints placed at their OpenPose indices)."""
    face = face or FaceOptions()
    kp = keypoints137(record.keypoint[0], record.keypoint_score[0], record.layout)
    return face_track(kp, record.img_shape, **face.track_kwargs())


def build_face_jobs(
    cache: Any,
    splits: Sequence[str],
    face: FaceOptions | None = None,
    on_error: str = "raise",
) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """Prepare jobs for the face crops of every clip of ``splits``: per-frame face boxes (the
    clip's face track, :func:`clip_face_track`, from the cache's own joints: all 137 OpenPose
    points where the cache has them) in video pixels, the face-visible flags, and as ``box``
    the bounding box of all of them; problems as :func:`build_clip_jobs`."""
    face = face or FaceOptions()

    def job(record: ClipRecord, size: tuple[int, int]) -> ClipJob:
        track = clip_face_track(record, face)
        boxes = scale_box(track.boxes, record.img_shape, size)
        box = (*boxes[:, :2].min(0), *boxes[:, 2:].max(0))
        return ClipJob(
            name=record.name,
            video_path=str(record.video_path),
            start=record.start,
            end=record.end,
            box=tuple(float(v) for v in box),
            split=str(record.meta.get("split", "")),
            boxes=boxes,
            flags=track.visible,
        )

    return _clip_jobs(cache, None, splits, on_error, job)


def _clip_jobs(
    cache: Any,
    layout: str | None,
    splits: Sequence[str],
    on_error: str,
    make: Callable[[ClipRecord, tuple[int, int]], ClipJob],
) -> tuple[list[ClipJob], list[tuple[str, str]]]:
    """``make(record, (H, W) of its video)`` for every clip of ``splits`` whose video opens."""
    index = cache.index
    rows = np.flatnonzero(index["split"].isin(list(splits)).to_numpy())
    sizes: dict[str, tuple[int, int] | None] = {}
    jobs: list[ClipJob] = []
    problems: list[tuple[str, str]] = []

    def problem(what: str, message: str) -> None:
        if on_error == "raise":
            raise VideoReadError(message)
        problems.append((what, message))

    for i in rows:
        record = cache.load_clip(int(i), layout=layout)
        path = record.video_path
        if path is None:
            problem(record.name, f"clip {record.name}: its video has no <vid>.mp4 in the release")
            continue
        if path not in sizes:
            try:
                with open_video(path, backend="pyav") as reader:
                    sizes[path] = (reader.height, reader.width)
            except (VideoReadError, FileNotFoundError) as err:
                sizes[path] = None
                problem(path, str(err))
        size = sizes[path]
        if size is None:
            continue
        jobs.append(make(record, size))
    return jobs, problems


log = logging.getLogger(__name__)


def _prepare_jobs(
    what: str,
    title: str,
    jobs: list[ClipJob],
    problems: list[tuple[str, str]],
    out_dir: Path,
    size: int,
    gop: int,
    crf: int,
    workers: int,
    on_error: str,
) -> None:
    """Report ``problems``, then :func:`~migalab.data.video.prepared_clips.prepare_clips` unless current."""
    from migalab.data.video.prepared_clips import clips_are_current, prepare_clips

    for where, message in problems:
        log.warning("%s: skipping %s: %s", what, where, message)
    if clips_are_current(out_dir, jobs, size, gop, crf):
        return
    log.info("writing %d %s (%d px, GOP %d) to %s", len(jobs), title, size, gop, out_dir)
    result = prepare_clips(
        jobs, out_dir, size=size, gop=gop, crf=crf, workers=workers, on_error=on_error
    )
    for where, message in result.problems:
        log.warning("%s: skipped %s: %s", what, where, message)
