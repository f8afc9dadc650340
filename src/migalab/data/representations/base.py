"""What every representation shares: the clip options, the sample wrapper and the
:class:`Representation` interface the datamodule talks to."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from migalab.data.record import ClipRecord

T = TypeVar("T")


def options_from(cls: type[T], given: Mapping[str, Any] | T | None, what: str) -> T:
    """``cls`` (a dataclass of defaults) updated with ``given``; unknown keys raise ValueError
    naming ``what`` (the config key) and the known options."""
    if isinstance(given, cls):
        return given
    given = dict(given or {})
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = set(given) - set(known)
    if unknown:
        raise ValueError(f"unknown {what} options {sorted(unknown)}; known: {sorted(known)}")
    return cls(**given)


@dataclass(frozen=True)
class ClipOptions:
    """How a clip is sampled, whatever the representation (``data.*``; defaults here and in
    ``conf/data``).

    Attributes:
        layout: joint layout selected from the cache (``imigue22``, ``mg36``, ``openpose137``...).
        num_frames: T after uniform temporal sampling.
        stream: skeleton stream (gcn: joint, bone, joint_motion, bone_motion; heatmap: joint,
            limb).
        num_persons: M.
        augment: training augmentations (``flip``, ``affine``; a key set to None disables it).
        interpolate: fill missing keypoints (score 0 / NaN) by linear interpolation over the
            clip's frames (True, or ``InterpolateMissing`` keyword arguments).
    """

    layout: str = "imigue22"
    num_frames: int = 32
    stream: str = "joint"
    num_persons: int = 1
    augment: Mapping[str, Any] | None = None
    interpolate: bool | Mapping[str, Any] = False


class ViewSample:
    """Wrap a pipeline's output as a dataset sample: ``{"x": output}`` plus ``views`` (K, for
    multi-view outputs with a leading view axis) and ``canvas`` ((H, W) of keypoints that the
    device renders into heatmaps)."""

    def __init__(
        self, pipeline: Any, views: int = 1, canvas: tuple[int, int] | None = None
    ) -> None:
        self.pipeline, self.views, self.canvas = pipeline, int(views), canvas

    def __call__(self, record: ClipRecord) -> dict[str, Any]:
        out: dict[str, Any] = {"x": self.pipeline(record)}
        if self.views > 1:
            out["views"] = self.views
        if self.canvas is not None:
            out["canvas"] = np.asarray(self.canvas, dtype=np.int64)
        return out

    def __repr__(self) -> str:
        return f"ViewSample(views={self.views}, canvas={self.canvas}, pipeline={self.pipeline!r})"


class Representation:
    """An encoder input type: builds the clip -> sample pipelines of a datamodule.

    Subclasses set ``name`` and implement :meth:`pipeline`; :meth:`prepare` (rank 0, after the
    skeleton cache exists) and :meth:`on_after_batch_transfer` (on the training device) are
    optional hooks.
    """

    name: ClassVar[str] = ""

    def __init__(self, clip: ClipOptions) -> None:
        self.clip = clip

    def pipeline(self, train: bool, key: str | None = None) -> Any:
        """The transform ClipRecord -> sample dict (``x`` and optional ``views`` / ``canvas``)
        of the training side (``train``) or of evaluation split ``key`` (``val`` / ``test``).
        ``train=False, key="train"``: the evaluation transform of training clips (the overfit
        check of ``data.overfit_clips``), one view per clip as training steps take."""
        raise NotImplementedError

    def prepare(self, cache_dir: Path, splits: Sequence[str]) -> None:
        """Work done once on the prepared cache (e.g. person-cropped video clips)."""

    def on_after_batch_transfer(self, batch: Any) -> Any:
        """Device-side completion of a batch (e.g. heatmap rendering)."""
        return batch
