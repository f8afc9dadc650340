"""``heatmap``: PoseC3D Gaussian heatmap volumes ``x`` (C, T, H, W), C = joints (stream joint) or
limbs (stream limb); multi-view evaluation gives (K, C, T, H, W) and ``views``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from migalab.data.representations.base import ClipOptions, Representation, ViewSample
from migalab.data.skeleton.heatmaps import HEATMAP_STREAMS, HeatmapRenderer
from migalab.data.skeleton.heatmaps import heatmap_channels as _stream_channels
from migalab.data.skeleton.layouts import get_layout


@dataclass(frozen=True)
class HeatmapOptions:
    """PoseC3D heatmap options (``data.heatmap``; pyskl's SlowOnly-R50 recipe).

    Attributes:
        size_train: training crop side (pixels of the heatmap canvas).
        size_eval: evaluation canvas side.
        sigma: Gaussian sigma (heatmap pixels).
        render: ``cpu`` (loader workers render) or ``device`` (the loader ships keypoints and
            the training device renders in ``on_after_batch_transfer``).
        area_range: RandomResizedCrop area range (train).
        flip_p: training flip probability.
        val_clips, val_flip: temporal clips and flip views per validation sample.
        test_clips, test_flip: the same for test / predict (pyskl: 10 clips + flip).
    """

    size_train: int = 56
    size_eval: int = 64
    sigma: float = 0.6
    render: str = "cpu"
    area_range: tuple[float, float] = (0.56, 1.0)
    flip_p: float = 0.5
    val_clips: int = 1
    val_flip: bool = False
    test_clips: int = 10
    test_flip: bool = True

    def __post_init__(self) -> None:
        if self.render not in ("cpu", "device"):
            raise ValueError(f"heatmap.render must be 'cpu' or 'device', got {self.render!r}")


def heatmap_channels(layout: str, stream: str) -> int:
    """Input channels of a heatmap encoder: joints of ``layout`` (joint) or its limbs (limb)."""
    lay = get_layout(layout)
    return _stream_channels(lay.num_joints, stream, lay.limbs)


class HeatmapRepresentation(Representation):
    """Heatmap volumes rendered by the loader workers or on the training device."""

    name = "heatmap"

    def __init__(self, clip: ClipOptions, options: HeatmapOptions) -> None:
        super().__init__(clip)
        if clip.stream not in HEATMAP_STREAMS:
            raise ValueError(f"heatmap streams are {HEATMAP_STREAMS}, got {clip.stream!r}")
        self.options = options
        self._renderer: torch.nn.Module | None = None

    def pipeline(self, train: bool, key: str | None = None) -> Any:
        from migalab.data.skeleton.heatmap_transforms import build_heatmap_pipeline

        c, hm = self.clip, self.options
        if train or key == "train":  # training clips (eval transform: overfit check): 1 view
            clips, flip = 1, False
        elif key in (None, "val"):
            clips, flip = int(hm.val_clips), bool(hm.val_flip)
        else:
            clips, flip = int(hm.test_clips), bool(hm.test_flip)
        pipe = build_heatmap_pipeline(
            c.layout,
            c.num_frames,
            stream=c.stream,
            train=train,
            size_train=int(hm.size_train),
            size_eval=int(hm.size_eval),
            sigma=float(hm.sigma),
            interpolate=c.interpolate,
            render=hm.render,
            num_clips=clips,
            flip_test=flip,
            flip_p=float(hm.flip_p),
            area_range=tuple(hm.area_range),
            num_persons=c.num_persons,
        )
        side = int(hm.size_train if train else hm.size_eval)
        canvas = (side, side) if hm.render == "device" else None
        return ViewSample(pipe, views=clips * (2 if flip else 1), canvas=canvas)

    @property
    def renderer(self) -> torch.nn.Module:
        """The on-device heatmap renderer (``heatmap.render=device``)."""
        if self._renderer is None:
            limbs = get_layout(self.clip.layout).limbs if self.clip.stream == "limb" else None
            self._renderer = HeatmapRenderer(
                self.clip.stream, limbs=limbs, sigma=float(self.options.sigma)
            )
        return self._renderer

    def on_after_batch_transfer(self, batch: Any) -> Any:
        """Render device-side heatmaps: keypoints (N, [K,] M, T, V, 3) → (N, [K,] C, T, H, W)."""
        if isinstance(batch, dict) and "canvas" in batch:
            h, w = (int(v) for v in batch["canvas"][0])
            points = batch["x"]
            batch = dict(batch)
            batch["x"] = self.renderer.to(points.device)(points, (h, w))
            del batch["canvas"]
        return batch
