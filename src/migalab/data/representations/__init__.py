"""Representations: how a clip record becomes an encoder's input, as a small registry.

``data.representation`` picks one (``modalities`` given -> ``multimodal``):

* ``gcn`` (:mod:`.gcn`): skeleton sequences (C, T, V, M) for 2s-AGCN;
* ``heatmap`` (:mod:`.heatmap`): PoseC3D heatmap volumes (C, T, H, W);
* ``multimodal`` (:mod:`.multimodal`): a dict of RGB frames, face crops and skeleton streams
  (System B; RGB only with ``modalities=[rgb]``).

Each has one typed dataclass of options (:class:`ClipOptions` for all, :class:`HeatmapOptions`,
:class:`VideoOptions`, :class:`FaceOptions`) whose defaults YAML restates in ``conf/data``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from migalab.data.representations.base import ClipOptions, Representation, ViewSample, options_from
from migalab.data.representations.gcn import GcnRepresentation
from migalab.data.representations.heatmap import HeatmapOptions, HeatmapRepresentation
from migalab.data.representations.multimodal import (
    FaceOptions,
    MultiModalRepresentation,
    VideoOptions,
)

#: ``data.representation`` names -> classes
REPRESENTATIONS: dict[str, type[Representation]] = {
    "gcn": GcnRepresentation,
    "heatmap": HeatmapRepresentation,
    "multimodal": MultiModalRepresentation,
}


def build_representation(
    name: str,
    clip: ClipOptions,
    *,
    heatmap: Mapping[str, Any] | HeatmapOptions | None = None,
    video: Mapping[str, Any] | VideoOptions | None = None,
    face: Mapping[str, Any] | FaceOptions | None = None,
    modalities: Sequence[str] | None = None,
    cache_dir: str | Path = ".",
) -> Representation:
    """The representation ``name`` (``multimodal`` when ``modalities`` are given with ``gcn``).

    Raises:
        ValueError: an unknown name, unknown options, or modalities with ``heatmap``.
    """
    heatmap_opts = options_from(HeatmapOptions, heatmap, "heatmap")
    video_opts = options_from(VideoOptions, video, "video")
    face_opts = options_from(FaceOptions, face, "face")
    if modalities:
        if name not in ("gcn", "multimodal"):
            raise ValueError(
                "multimodal samples use skeleton sequences: set representation=gcn with modalities"
            )
        return MultiModalRepresentation(clip, modalities, video_opts, Path(cache_dir), face_opts)
    if name == "gcn":
        return GcnRepresentation(clip)
    if name == "heatmap":
        return HeatmapRepresentation(clip, heatmap_opts)
    raise ValueError(f"representation must be one of {tuple(REPRESENTATIONS)}, got {name!r}")


__all__ = [
    "REPRESENTATIONS",
    "ClipOptions",
    "FaceOptions",
    "GcnRepresentation",
    "HeatmapOptions",
    "HeatmapRepresentation",
    "MultiModalRepresentation",
    "Representation",
    "VideoOptions",
    "ViewSample",
    "build_representation",
]
