"""The multimodal representation a ``ClipDataModule`` uses (``data.modalities``): its options, preparation (person and face crops, once, cached) and per-split pipelines; RGB normalisation on the training device (:meth:`MultiModalRepresentation.on_after_batch_transfer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from migalab.data.representations.base import ClipOptions, Representation
from migalab.data.representations.multimodal.crop_jobs import (
    _prepare_jobs,
    build_clip_jobs,
    build_face_jobs,
)
from migalab.data.representations.multimodal.options import FaceOptions, VideoOptions
from migalab.data.representations.multimodal.pipeline import (
    MODALITIES,
    MultiModalPipeline,
    VideoSource,
)
from migalab.data.video.transforms import (
    normalize_clips,
)


class MultiModalRepresentation(Representation):
    """``multimodal`` (System B; the RGB-only experiments with ``modalities=[rgb]``): samples
    ``{"x": {"rgb": (3, T_v, S, S), "joint": (3, T, V, M), ..., "present": {"rgb": bool}}}``;
    with ``face``: ``x["face"]`` (T_f, 3, S_f, S_f) uint8, ``x["face_visible"]`` (T_f,) bool,
    ``present["face"]``.

    With ``video.source=prepared``, :meth:`prepare` writes every clip's person crop once as a
    short-GOP mp4 (:mod:`migalab.data.video.prepared_clips`), so training never decodes the long videos;
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
