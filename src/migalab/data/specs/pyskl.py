"""A pyskl annotation pickle (``{"split": {name: [frame_dir, ...]}, "annotations": [...]}``),
as PoseC3D / ST-GCN++ tooling writes it (:mod:`migalab.data.formats.pyskl`): ``data.release_root``
is the ``.pkl`` file; its joint layout comes from the annotations (22: imigue22, 36: mg36,
137: openpose137). Labels are 0-based."""

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from migalab.data.classes import CLASS_NAMES
from migalab.data.formats.pyskl import read_pyskl
from migalab.data.prepare.clip_release import is_clip_cache_current, prepare_clip_release
from migalab.data.record import ClipRecord
from migalab.data.specs.base import DatasetSpec


def source_files(path: Path, splits: Sequence[str]) -> list[Path]:
    """The pickle, when it exists (a split it lacks is reported by :func:`read_split`)."""
    return [path] if path.is_file() else []


def read_split(path: Path, split: str) -> list[ClipRecord]:
    """The clips of one split of the pickle."""
    return read_pyskl(path, splits=[split])[split]


SPEC = DatasetSpec(
    name="pyskl",
    description="pyskl annotation pickle: annotations with keypoint (M, T, V, 2) + split lists",
    class_names=CLASS_NAMES,
    prepare=partial(prepare_clip_release, read=read_split, files=source_files),
    is_current=partial(is_clip_cache_current, files=source_files),
    splits={"train": "train", "val": "val", "test": "test"},
    layout=None,
    img_shape=None,
)
