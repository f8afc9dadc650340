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
   training; Kinetics normalisation: in the worker with ``video.normalize=loader``; with
   ``device``, the default, ``x["rgb"]`` leaves the loader as uint8 and
   :meth:`MultiModalRepresentation.on_after_batch_transfer` normalises the batch on the
   training device, the same values).
6. face (emotion stream): the clip's prepared face crops (a per-frame face track from the
   skeleton's face keypoints, :mod:`migalab.data.video.faces`, cropped once by
   :meth:`MultiModalRepresentation.prepare`) at every ``k_f``-th sampled frame
   (``k_f = T / T_f``, so face frame i = skeleton frame ``i * k_f``), mirrored when the skeleton
   was flipped: ``x["face"]`` (T_f, 3, S_f, S_f) **uint8** RGB (0-255, not normalised: the face
   encoder normalises, SwinFace ``(x / 255 - 0.5) / 0.5``), ``x["face_visible"]`` (T_f,) bool
   (the skeleton showed a face in that frame; other frames hold the interpolated box's pixels)
   and ``present["face"]`` (any frame visible).

A clip whose video could not be prepared (``video.on_error=skip``) gets an all-zero RGB input
and ``present["rgb"] = False``; fusion blocks mask it (see
:class:`migalab.models.fusion.CrossModalTokenFusion`). Likewise for faces
(``face.on_error=skip``): zero crops, ``face_visible`` all False, ``present["face"] = False``.
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
from migalab.data.video.faces import FaceTrack, face_track, keypoints137
from migalab.data.video.readers import ReaderPool, VideoReadError, open_video
from migalab.data.video.transforms import (
    VideoClipTransform,
    normalize_clips,
    person_box,
    scale_box,
)

#: Modality names: ``rgb``, ``face`` plus the skeleton streams.
MODALITIES = ("rgb", "face", *STREAMS)
#: Modalities that are not skeleton streams.
_FRAME_MODALITIES = ("rgb", "face")
#: where the RGB clips are normalised (``data.video.normalize``)
RGB_NORMALIZE = ("device", "loader")
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
        normalize: ``device`` (the loader yields uint8 clips; the datamodule's
            ``on_after_batch_transfer`` normalises the batch on the training device: 4x fewer
            bytes through worker shared memory, pinning and the host-to-device copy) or
            ``loader`` (float32, normalised in the worker). The values are the same.
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
    normalize: str = "device"

    def __post_init__(self) -> None:
        if self.normalize not in RGB_NORMALIZE:
            raise ValueError(
                f"video.normalize must be one of {RGB_NORMALIZE}, got {self.normalize!r}"
            )
        if self.source not in VIDEO_SOURCES:
            raise ValueError(f"video.source must be one of {VIDEO_SOURCES}, got {self.source!r}")
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"video.on_error must be 'raise' or 'skip', got {self.on_error!r}")
        object.__setattr__(self, "area_range", tuple(float(v) for v in self.area_range))


@dataclass(frozen=True)
class FaceOptions:
    """Face-crop options (``data.face``, the ``face`` modality; defaults here and in
    ``conf/data``). Face tracks: :func:`migalab.data.video.faces.face_track`.

    Attributes:
        num_frames: T_f, face frames per clip; ``data.num_frames`` must be a multiple of it.
        size: side S_f of the face crops (prepared at this size and served as is; SwinFace: 112).
        threshold: confidence above which a keypoint counts.
        min_points: face landmarks (of 70) needed in a frame, else the nose / eyes / ears
            fallback.
        margin: the square box's side is the face extent x (1 + 2 margin).
        smooth: centred moving-average window of the track in frames (1 = none).
        backend: decoder of the prepared crops (``decord`` | ``pyav`` | ``auto``).
        prepared_gop: keyframe interval of the stored face clips.
        prepared_crf: x264 quality of the stored face clips.
        prepared_dir: where they go (default ``<cache_dir>/face_clips_<size>``).
        prepare_workers: processes writing them.
        on_error: ``raise`` | ``skip`` (report; the clip's face is marked missing).
    """

    num_frames: int = 16
    size: int = 112
    threshold: float = 0.3
    min_points: int = 10
    margin: float = 0.25
    smooth: int = 5
    backend: str = "auto"
    prepared_gop: int = 16
    prepared_crf: int = 20
    prepared_dir: str | None = None
    prepare_workers: int = 1
    on_error: str = "raise"

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"face.on_error must be 'raise' or 'skip', got {self.on_error!r}")
        if self.size < 2 or self.size % 2:
            raise ValueError(f"face.size must be even and >= 2, got {self.size}")
        if self.num_frames < 1 or self.smooth < 1 or self.min_points < 1 or self.margin < 0:
            raise ValueError("face: num_frames, smooth, min_points must be >= 1, margin >= 0")

    def track_kwargs(self) -> dict[str, Any]:
        """The :func:`~migalab.data.video.faces.face_track` arguments."""
        return {
            "threshold": float(self.threshold),
            "min_points": int(self.min_points),
            "margin": float(self.margin),
            "smooth": int(self.smooth),
        }


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

    def flags(self, record: ClipRecord) -> np.ndarray | None:
        """The prepared clip's per-frame flags (face crops: face visible), or None."""
        return self.clips.flags(record.name) if self.source == "prepared" else None

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
        face: a prepared :class:`VideoSource` of face crops (needed when ``face`` is a modality).
        face_frames: T_f, face frames per clip; ``num_frames`` must be a multiple of it.
        face_size: S_f, side of the prepared face crops.
        video_frames: T_v, RGB frames per clip; ``num_frames`` must be a multiple of it.
        video_size: side S of the RGB crop.
        area_range: training random-resized-crop area range (fraction of the box).
        augment: as :func:`build_skeleton_pipeline`.
        num_persons: as :func:`build_skeleton_pipeline`.
        interpolate: as :func:`build_skeleton_pipeline`.
        normalize_rgb: False: ``x["rgb"]`` stays uint8 (zeros where absent), normalised on the
            training device by :meth:`MultiModalRepresentation.on_after_batch_transfer`.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        layout: str,
        num_frames: int,
        train: bool = False,
        video: VideoSource | None = None,
        face: VideoSource | None = None,
        face_frames: int = 16,
        face_size: int = 112,
        video_frames: int = 16,
        video_size: int = 224,
        area_range: tuple[float, float] = (0.4, 1.0),
        augment: Mapping[str, Any] | None = None,
        num_persons: int = 1,
        interpolate: Mapping[str, Any] | bool = False,
        normalize_rgb: bool = True,
    ) -> None:
        modalities = list(modalities)
        unknown = set(modalities) - set(MODALITIES)
        if unknown or not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(
                f"modalities must be distinct names from {MODALITIES}, got {modalities}"
            )
        if "rgb" in modalities:
            if video is None:
                raise ValueError("the rgb modality needs a VideoSource")
            if video_frames <= 0 or num_frames % video_frames:
                raise ValueError(
                    f"data.num_frames ({num_frames}) must be a multiple of "
                    f"video.num_frames ({video_frames})"
                )
        if "face" in modalities:
            if face is None or face.source != "prepared":
                raise ValueError("the face modality needs a prepared VideoSource of face crops")
            if face_frames <= 0 or num_frames % face_frames:
                raise ValueError(
                    f"data.num_frames ({num_frames}) must be a multiple of "
                    f"face.num_frames ({face_frames})"
                )
        self.modalities, self.layout, self.train = modalities, layout, train
        self.streams = [m for m in modalities if m not in _FRAME_MODALITIES]
        self.face, self.face_frames, self.face_size = face, face_frames, int(face_size)
        self.face_stride = max(1, num_frames // max(face_frames, 1))
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
        self.rgb = VideoClipTransform(
            size=video_size, train=train, area_range=area_range, normalize=normalize_rgb
        )
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
                dtype = torch.float32 if self.rgb.normalize else torch.uint8
                x["rgb"] = torch.zeros(3, self.video_frames, s, s, dtype=dtype)
                present = False
            x["present"] = {"rgb": present}
        if "face" in self.modalities:
            offsets = np.asarray(rec.meta["frame_inds"])[:: self.face_stride][: self.face_frames]
            flip = bool(skel.meta.get("flipped", False))
            face, visible = self._face(record, offsets, flip)
            x["face"], x["face_visible"] = face, visible
            x.setdefault("present", {})["face"] = bool(visible.any())
        return {"x": x}

    def _face(
        self, record: ClipRecord, offsets: np.ndarray, flip: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(T_f, 3, S_f, S_f) uint8 face crops and (T_f,) bool visibility (all False, zero
        crops, when the clip's face crops were not prepared)."""
        assert self.face is not None
        if not self.face.has_video(record):
            n, s = len(offsets), self.face_size
            return torch.zeros(n, 3, s, s, dtype=torch.uint8), torch.zeros(n, dtype=torch.bool)
        frames, _ = self.face.read(record, offsets)  # (T_f, S, S, 3) uint8
        face = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        if flip:
            face = face.flip(-1)
        flags = self.face.flags(record)
        if flags is None:
            visible = torch.ones(len(offsets), dtype=torch.bool)
        else:
            visible = torch.from_numpy(flags[np.asarray(offsets, dtype=np.int64)].copy())
        return face.contiguous(), visible

    def __repr__(self) -> str:
        return (
            f"MultiModalPipeline({self.modalities}, layout={self.layout!r}, "
            f"frames={self.sample.num_frames}, video_frames={self.video_frames}, "
            f"video_size={self.video_size}, train={self.train}, video={self.video!r})"
        )


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


class MultiModalRepresentation(Representation):
    """``multimodal`` (System B; the RGB-only experiments with ``modalities=[rgb]``): samples
    ``{"x": {"rgb": (3, T_v, S, S), "joint": (3, T, V, M), ..., "present": {"rgb": bool}}}``;
    with ``face``: ``x["face"]`` (T_f, 3, S_f, S_f) uint8, ``x["face_visible"]`` (T_f,) bool,
    ``present["face"]``.

    With ``video.source=prepared``, :meth:`prepare` writes every clip's person crop once as a
    short-GOP mp4 (:mod:`migalab.data.video.clips`), so training never decodes the long videos;
    with ``face``, every clip's face crops (per-frame face track) likewise.
    """

    name = "multimodal"

    def __init__(
        self,
        clip: ClipOptions,
        modalities: Sequence[str],
        video: VideoOptions,
        cache_dir: Path,
        face: FaceOptions | None = None,
    ) -> None:
        super().__init__(clip)
        self.modalities = list(modalities)
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
        self.video = video
        self.face = face or FaceOptions()
        self.cache_dir = Path(cache_dir)
        self._video_source: VideoSource | None = None
        self._face_source: VideoSource | None = None

    @property
    def uses_rgb(self) -> bool:
        return "rgb" in self.modalities

    def on_after_batch_transfer(self, batch: Any) -> Any:
        """Normalise uint8 RGB clips (``video.normalize=device``) on the device they lie on:
        ``x["rgb"]`` (N, 3, T_v, S, S) uint8 -> float32, absent clips (``present["rgb"]``)
        zero, as the loader-side normalisation gives them."""
        x = batch.get("x") if isinstance(batch, Mapping) else None
        rgb = x.get("rgb") if isinstance(x, Mapping) else None
        if isinstance(rgb, torch.Tensor) and rgb.dtype == torch.uint8:
            present = (x.get("present") or {}).get("rgb")
            x["rgb"] = normalize_clips(rgb, present if isinstance(present, torch.Tensor) else None)
        return batch

    @property
    def uses_face(self) -> bool:
        return "face" in self.modalities

    @property
    def uses_prepared_video(self) -> bool:
        return self.uses_rgb and self.video.source == "prepared"

    @property
    def prepared_video_dir(self) -> Path:
        """Folder of the prepared person-cropped clips."""
        if self.video.prepared_dir:
            return Path(self.video.prepared_dir)
        return self.cache_dir / f"video_clips_{int(self.video.prepared_size)}"

    @property
    def prepared_face_dir(self) -> Path:
        """Folder of the prepared face crops."""
        if self.face.prepared_dir:
            return Path(self.face.prepared_dir)
        return self.cache_dir / f"face_clips_{int(self.face.size)}"

    def prepare(self, cache_dir: Path, splits: Sequence[str]) -> None:
        """Write every clip's person crop (prepared RGB) and face crops (``face``) as short-GOP
        mp4s unless they are current."""
        if not (self.uses_prepared_video or self.uses_face):
            return
        from migalab.data.cache import SkeletonCache

        cache = SkeletonCache(cache_dir)
        if self.uses_prepared_video:
            v = self.video
            jobs, problems = build_clip_jobs(
                cache,
                self.clip.layout,
                list(splits),
                box_margin=float(v.box_margin),
                on_error=v.on_error,
            )
            _prepare_jobs(
                "video",
                "person-cropped clips",
                jobs,
                problems,
                self.prepared_video_dir,
                int(v.prepared_size),
                int(v.prepared_gop),
                int(v.prepared_crf),
                int(v.prepare_workers),
                v.on_error,
            )
        if self.uses_face:
            f = self.face
            jobs, problems = build_face_jobs(cache, list(splits), f, on_error=f.on_error)
            _prepare_jobs(
                "face",
                "face-crop clips",
                jobs,
                problems,
                self.prepared_face_dir,
                int(f.size),
                int(f.prepared_gop),
                int(f.prepared_crf),
                int(f.prepare_workers),
                f.on_error,
            )

    @property
    def video_source(self) -> VideoSource:
        """Where RGB frames come from (shared by the split datasets)."""
        if self._video_source is None:
            v = self.video
            self._video_source = VideoSource(
                v.source,
                backend=v.backend,
                prepared_dir=self.prepared_video_dir if v.source == "prepared" else None,
                layout=self.clip.layout,
                box_margin=float(v.box_margin),
            )
        return self._video_source

    @property
    def face_source(self) -> VideoSource:
        """The prepared face crops (shared by the split datasets)."""
        if self._face_source is None:
            self._face_source = VideoSource(
                "prepared",
                backend=self.face.backend,
                prepared_dir=self.prepared_face_dir,
                layout=self.clip.layout,
            )
        return self._face_source

    def pipeline(self, train: bool, key: str | None = None) -> MultiModalPipeline:
        c, v, f = self.clip, self.video, self.face
        return MultiModalPipeline(
            self.modalities,
            c.layout,
            c.num_frames,
            train=train,
            video=self.video_source if self.uses_rgb else None,
            face=self.face_source if self.uses_face else None,
            face_frames=int(f.num_frames),
            face_size=int(f.size),
            video_frames=int(v.num_frames),
            video_size=int(v.size),
            area_range=v.area_range,
            augment=c.augment,
            num_persons=c.num_persons,
            interpolate=c.interpolate,
            normalize_rgb=v.normalize == "loader",
        )


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
    """Report ``problems``, then :func:`~migalab.data.video.clips.prepare_clips` unless current."""
    from migalab.data.video.clips import clips_are_current, prepare_clips

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
