"""The video and face settings of a multimodal representation (``data.video``, ``data.face``): :class:`VideoOptions` (person-crop clips: frames, size, source, normalisation, preparation) and :class:`FaceOptions` (face crops)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from migalab.data.representations.base import options_from

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
