"""Multimodal clip samples (System B): skeleton streams and RGB frames of the same instants.

One :class:`MultiModalPipeline` call turns a :class:`ClipRecord` into
``{"x": {"rgb": (3, T_v, S, S), "joint": (3, T, V, M), "bone": ..., "present": {"rgb": bool}}}``:

1. ``ValidateClip -> SelectLayout -> [InterpolateMissing]`` (the skeleton pipelines' head);
2. the upper-body person box of the whole clip (:func:`clip_person_box`, keypoint pixels);
3. ``UniformSample``: T frame indices over the clip, random per segment in training; the
   skeleton keeps them all and the video decodes every k-th (``k = T / T_v``), so RGB frame i
   is skeleton frame ``i * k``: the same instant (``k = 1`` gives frame i = frame i);
4. skeleton: ``NormalizeSkeleton -> [RandomFlip -> RandomAffine] -> [ToBone] -> [ToMotion] ->
   FormatGCNInput`` per stream, from one sampled, augmented record (the streams share frames and
   augmentation);
5. RGB: frames from a :class:`VideoSource` (the prepared person-cropped clip, or the long
   ``<vid>.mp4``: crop the box scaled to the video's size) -> :class:`VideoClipTransform`
   (random-resized crop inside the box + flip exactly when the skeleton was flipped, in
   training; Kinetics normalisation).

A clip whose video could not be prepared (``video.on_error=skip``) gets an all-zero RGB input
and ``present["rgb"] = False``; fusion blocks mask it (see
:class:`migalab.models.fusion.CrossModalTokenFusion`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from migalab.data.pipelines.base import ClipOptions, Representation, options_from
from migalab.data.record import ClipRecord
from migalab.data.skeleton.transforms import (
    STREAMS,
    Compose,
    FormatGCNInput,
    NormalizeSkeleton,
    RandomAffine,
    RandomFlip,
    ToBone,
    ToMotion,
    UniformSample,
    resolve_augment,
    temporal_steps,
)
from migalab.data.video.clips import ClipJob, PreparedClips
from migalab.data.video.readers import ReaderPool, VideoReadError, open_video
from migalab.data.video.transforms import VideoClipTransform, person_box, scale_box

#: Modality names: ``rgb`` plus the skeleton streams.
MODALITIES = ("rgb", *STREAMS)
VIDEO_SOURCES = ("prepared", "raw")


@dataclass(frozen=True)
class VideoOptions:
    """RGB options (``data.video``; defaults here and in ``conf/data``).

    Attributes:
        source: ``prepared`` (person-cropped, resized, short-GOP clips written once by
            :meth:`MultiModalRepresentation.prepare`; fast) or ``raw`` (decode the long
            ``<vid>.mp4`` for every sample; no preparation, ~1 clip/s on long GOPs).
        backend: ``decord`` | ``pyav`` | ``auto`` (decord when installed).
        num_frames: T_v; ``data.num_frames`` must be a multiple of it.
        size: side of the encoder's input crop.
        area_range: training random-resized crop, fraction of the person box.
        box_margin: person box margin (fraction of its size, each side).
        prepared_size: side of the stored person crops (>= size).
        prepared_gop: keyframe interval of the stored clips.
        prepared_crf: x264 quality of the stored clips.
        prepared_dir: where they go (default ``<cache_dir>/video_clips_<prepared_size>``).
        prepare_workers: processes writing them.
        on_error: ``raise`` | ``skip`` (report; the clip's RGB is marked missing).
    """

    source: str = "prepared"
    backend: str = "auto"
    num_frames: int = 16
    size: int = 224
    area_range: tuple[float, float] = (0.4, 1.0)
    box_margin: float = 0.15
    prepared_size: int = 256
    prepared_gop: int = 16
    prepared_crf: int = 20
    prepared_dir: str | None = None
    prepare_workers: int = 1
    on_error: str = "raise"

    def __post_init__(self) -> None:
        if self.source not in VIDEO_SOURCES:
            raise ValueError(f"video.source must be one of {VIDEO_SOURCES}, got {self.source!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"video.on_error must be 'raise' or 'skip', got {self.on_error!r}")
        object.__setattr__(self, "area_range", tuple(float(v) for v in self.area_range))


def video_options(video: Mapping[str, Any] | VideoOptions | None) -> VideoOptions:
    """:class:`VideoOptions` updated with ``video``; unknown keys and bad values raise."""
    return options_from(VideoOptions, video, "video")


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


class VideoSource:
    """Where a clip's RGB frames come from.

    ``prepared``: the clip's person crop in ``prepared_dir`` (written by
    :func:`migalab.data.video.clips.prepare_clips`), the box is None (the frames are the box);
    ``raw``: the clip's frames of the long video ``record.video_path`` and the person box scaled
    to the video's size. Open readers are pooled per process (a video is opened once, not per
    clip); the pool is not pickled, so each DataLoader worker opens its own.
    """

    def __init__(
        self,
        source: str = "prepared",
        backend: str = "auto",
        prepared_dir: str | Path | None = None,
        layout: str = "imigue22",
        box_margin: float = 0.15,
        max_open: int = 4,
    ) -> None:
        if source not in VIDEO_SOURCES:
            raise ValueError(f"video source must be one of {VIDEO_SOURCES}, got {source!r}")
        if source == "prepared" and prepared_dir is None:
            raise ValueError("video source 'prepared' needs prepared_dir")
        self.source, self.backend, self.layout, self.box_margin = (
            source,
            backend,
            layout,
            box_margin,
        )
        self.prepared_dir = Path(prepared_dir) if prepared_dir is not None else None
        self.pool = ReaderPool(backend=backend, max_open=max_open)
        self._clips: PreparedClips | None = None

    @property
    def clips(self) -> PreparedClips:
        if self._clips is None:
            self._clips = PreparedClips(self.prepared_dir)
        return self._clips

    def has_video(self, record: ClipRecord) -> bool:
        """False when the clip's video is unavailable (prepare skipped it, or no mp4)."""
        if self.source == "prepared":
            return self.clips.has(record.name)
        return record.video_path is not None

    def read(self, record: ClipRecord, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Frames uint8 (len(offsets), H, W, 3) at ``record.start + offsets`` and the person box
        in those frames' pixels (None: the frames are already the person crop)."""
        if self.source == "prepared":
            # one small file per clip: open, read, close (pooling them measured ~3x slower)
            frames = self.clips.read(record.name, offsets, backend=self.backend)
            return frames, None
        if record.video_path is None:
            raise VideoReadError(f"clip {record.name}: no video file (no <vid>.mp4 in the release)")
        reader = self.pool.get(record.video_path)
        frames = reader.read_clip(record.start, record.end, offsets, name=record.name)
        box = clip_person_box(record, self.layout, self.box_margin)
        return frames, scale_box(box, record.img_shape, (reader.height, reader.width))

    def __repr__(self) -> str:
        where = self.prepared_dir if self.source == "prepared" else "<vid>.mp4"
        return f"VideoSource({self.source!r}, backend={self.backend!r}, {where})"


class MultiModalPipeline:
    """ClipRecord -> ``{"x": {modality: array/tensor, "present": {...}}}`` (module docstring).

    Args:
        modalities: subset of ``MODALITIES`` (``rgb``, ``joint``, ``bone``, ...).
        layout: joint layout of the skeleton streams (and of the person box).
        num_frames: T, skeleton frames per clip.
        train: random sampling and augmentation.
        video: a :class:`VideoSource` (needed when ``rgb`` is a modality).
        video_frames: T_v, RGB frames per clip; ``num_frames`` must be a multiple of it.
        video_size: side S of the RGB crop.
        area_range: training random-resized-crop area range (fraction of the box).
        augment, num_persons, interpolate: as :func:`build_skeleton_pipeline`.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        layout: str,
        num_frames: int,
        train: bool = False,
        video: VideoSource | None = None,
        video_frames: int = 16,
        video_size: int = 224,
        area_range: tuple[float, float] = (0.4, 1.0),
        augment: Mapping[str, Any] | None = None,
        num_persons: int = 1,
        interpolate: Mapping[str, Any] | bool = False,
    ) -> None:
        modalities = list(modalities)
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"modalities must be distinct names from {MODALITIES}, "
                             f"got {modalities}")  # fmt: skip
        if "rgb" in modalities:
            if video is None:
                raise ValueError("the rgb modality needs a VideoSource")
            if video_frames <= 0 or num_frames % video_frames:
                raise ValueError(f"data.num_frames ({num_frames}) must be a multiple of "
                                 f"video.num_frames ({video_frames})")  # fmt: skip
        self.modalities, self.layout, self.train = modalities, layout, train
        self.streams = [m for m in modalities if m != "rgb"]
        self.video, self.stride = video, max(1, num_frames // max(video_frames, 1))
        self.head = Compose(temporal_steps(layout, interpolate))
        self.sample = UniformSample(num_frames, test_mode=not train)
        steps: list[Callable[[ClipRecord], ClipRecord]] = [NormalizeSkeleton()]
        if train:
            aug = resolve_augment(augment)
            if aug["flip"] is not None:
                steps.append(RandomFlip(**aug["flip"]))
            if aug["affine"] is not None:
                steps.append(RandomAffine(**aug["affine"]))
        self.skeleton = Compose(steps)
        self.format = FormatGCNInput(num_persons=num_persons)
        self.rgb = VideoClipTransform(size=video_size, train=train, area_range=area_range)
        self.video_frames, self.video_size = video_frames, video_size

    def _stream(self, record: ClipRecord, stream: str) -> np.ndarray:
        if stream.startswith("bone"):
            record = ToBone()(record)
        if stream.endswith("motion"):
            record = ToMotion()(record)
        return self.format(record)

    def __call__(self, record: ClipRecord) -> dict[str, Any]:
        rec = self.sample(self.head(record))
        skel = self.skeleton(rec)
        x: dict[str, Any] = {s: self._stream(skel, s) for s in self.streams}
        if "rgb" in self.modalities:
            assert self.video is not None
            if self.video.has_video(record):
                offsets = np.asarray(rec.meta["frame_inds"])[:: self.stride][: self.video_frames]
                frames, box = self.video.read(record, offsets)
                flip = bool(skel.meta.get("flipped", False))
                x["rgb"] = self.rgb(frames, box=box, flip=flip)
                present = True
            else:
                s = self.video_size
                x["rgb"] = torch.zeros(3, self.video_frames, s, s)
                present = False
            x["present"] = {"rgb": present}
        return {"x": x}

    def __repr__(self) -> str:
        return (f"MultiModalPipeline({self.modalities}, layout={self.layout!r}, "
                f"frames={self.sample.num_frames}, video_frames={self.video_frames}, "
                f"video_size={self.video_size}, train={self.train}, video={self.video!r})")  # fmt: skip


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
        box = scale_box(clip_person_box(record, layout, box_margin), record.img_shape, size)
        jobs.append(ClipJob(name=record.name, video_path=path, start=record.start,
                            end=record.end, box=tuple(float(v) for v in box),
                            split=str(record.meta.get("split", ""))))  # fmt: skip
    return jobs, problems


log = logging.getLogger(__name__)


class MultiModalRepresentation(Representation):
    """``multimodal`` (System B; the RGB-only experiments with ``modalities=[rgb]``): samples
    ``{"x": {"rgb": (3, T_v, S, S), "joint": (3, T, V, M), ..., "present": {"rgb": bool}}}``.

    With ``video.source=prepared``, :meth:`prepare` writes every clip's person crop once as a
    short-GOP mp4 (:mod:`migalab.data.video.clips`), so training never decodes the long videos.
    """

    name = "multimodal"

    def __init__(
        self, clip: ClipOptions, modalities: Sequence[str], video: VideoOptions, cache_dir: Path
    ) -> None:
        super().__init__(clip)
        self.modalities = list(modalities)
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
        self.video = video
        self.cache_dir = Path(cache_dir)
        self._video_source: VideoSource | None = None

    @property
    def uses_rgb(self) -> bool:
        return "rgb" in self.modalities

    @property
    def uses_prepared_video(self) -> bool:
        return self.uses_rgb and self.video.source == "prepared"

    @property
    def prepared_video_dir(self) -> Path:
        """Folder of the prepared person-cropped clips."""
        if self.video.prepared_dir:
            return Path(self.video.prepared_dir)
        return self.cache_dir / f"video_clips_{int(self.video.prepared_size)}"

    def prepare(self, cache_dir: Path, splits: Sequence[str]) -> None:
        """Write every clip's person crop as a short-GOP mp4 unless the clips are current."""
        if not self.uses_prepared_video:
            return
        from migalab.data.cache import SkeletonCache
        from migalab.data.video.clips import clips_are_current, prepare_clips

        v = self.video
        jobs, problems = build_clip_jobs(
            SkeletonCache(cache_dir), self.clip.layout, list(splits),
            box_margin=float(v.box_margin), on_error=v.on_error,
        )  # fmt: skip
        for what, message in problems:
            log.warning("video: skipping %s: %s", what, message)
        size, gop, crf = int(v.prepared_size), int(v.prepared_gop), int(v.prepared_crf)
        if clips_are_current(self.prepared_video_dir, jobs, size, gop, crf):
            return
        log.info("writing %d person-cropped clips (%d px, GOP %d) to %s", len(jobs), size, gop,
                 self.prepared_video_dir)  # fmt: skip
        result = prepare_clips(
            jobs, self.prepared_video_dir, size=size, gop=gop, crf=crf,
            workers=int(v.prepare_workers), on_error=v.on_error,
        )  # fmt: skip
        for what, message in result.problems:
            log.warning("video: skipped %s: %s", what, message)

    @property
    def video_source(self) -> VideoSource:
        """Where RGB frames come from (shared by the split datasets)."""
        if self._video_source is None:
            v = self.video
            self._video_source = VideoSource(
                v.source, backend=v.backend,
                prepared_dir=self.prepared_video_dir if v.source == "prepared" else None,
                layout=self.clip.layout, box_margin=float(v.box_margin),
            )  # fmt: skip
        return self._video_source

    def pipeline(self, train: bool, key: str | None = None) -> MultiModalPipeline:
        c, v = self.clip, self.video
        return MultiModalPipeline(
            self.modalities, c.layout, c.num_frames, train=train,
            video=self.video_source if self.uses_rgb else None,
            video_frames=int(v.num_frames), video_size=int(v.size),
            area_range=v.area_range, augment=c.augment,
            num_persons=c.num_persons, interpolate=c.interpolate,
        )  # fmt: skip
