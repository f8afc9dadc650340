"""One multimodal sample (the package docstring's steps 1-6): :class:`MultiModalPipeline` turns a clip record into skeleton streams, RGB frames (from a :class:`VideoSource`) and face crops of the same instants."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from migalab.data.record import ClipRecord
from migalab.data.representations.multimodal.crop_jobs import clip_person_box
from migalab.data.representations.multimodal.options import VIDEO_SOURCES
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
from migalab.data.video.prepared_clips import PreparedClips
from migalab.data.video.readers import ReaderPool, VideoReadError
from migalab.data.video.transforms import (
    VideoClipTransform,
    scale_box,
)

#: Modality names: ``rgb``, ``face`` plus the skeleton streams.
MODALITIES = ("rgb", "face", *STREAMS)


#: Modalities that are not skeleton streams.
_FRAME_MODALITIES = ("rgb", "face")


class VideoSource:
    """Where a clip's RGB frames come from.

    ``prepared``: the clip's person crop in ``prepared_dir`` (written by
    :func:`migalab.data.video.prepared_clips.prepare_clips`), the box is None (the frames are the box);
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
