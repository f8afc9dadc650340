"""``gcn``: skeleton sequences for graph convolutions (2s-AGCN): ``x`` (C=3, T, V, M)."""

from __future__ import annotations

from typing import Any

from migalab.data.representations.base import Representation, ViewSample
from migalab.data.skeleton.transforms import build_skeleton_pipeline


class GcnRepresentation(Representation):
    """Normalised skeleton sequences of one stream (joint, bone, joint_motion, bone_motion)."""

    name = "gcn"

    def pipeline(self, train: bool, key: str | None = None) -> Any:
        c = self.clip
        return ViewSample(
            build_skeleton_pipeline(
                c.layout,
                c.num_frames,
                stream=c.stream,
                train=train,
                augment=c.augment,
                num_persons=c.num_persons,
                interpolate=c.interpolate,
            )
        )
