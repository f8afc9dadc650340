"""MiGA 2023/24 release: pre-cut clips ``<split>_data.npy`` (N, 3, T, 22, M) + ``<split>_label.pkl``
(sample names, 0-based labels) in one folder, joints in the ``imigue22`` order
(:mod:`migalab.data.formats.npy2023`). Split names are the file prefixes (``data.splits``)."""

from collections.abc import Sequence
from functools import partial
from pathlib import Path

from migalab.data.classes import CLASS_NAMES
from migalab.data.formats.npy2023 import DEFAULT_IMG_SHAPE, LAYOUT, read_npy2023_split, split_paths
from migalab.data.prepare.clip_release import is_clip_cache_current, prepare_clip_release
from migalab.data.specs.base import DatasetSpec


def source_files(root: Path, splits: Sequence[str]) -> list[Path]:
    """The ``<split>_data.npy`` / ``<split>_label.pkl`` files of ``splits`` that exist."""
    return [p for split in splits for p in split_paths(root, split) if p.is_file()]


SPEC = DatasetSpec(
    name="miga2023_npy",
    description="MiGA 2023/24 release: <split>_data.npy (N, 3, T, 22, M) + <split>_label.pkl",
    class_names=CLASS_NAMES,
    prepare=partial(
        prepare_clip_release,
        read=lambda root, split: read_npy2023_split(root, split),
        files=source_files,
    ),
    is_current=partial(is_clip_cache_current, files=source_files),
    splits={"train": "train", "val": "val", "test": "test"},
    layout=LAYOUT,
    img_shape=DEFAULT_IMG_SHAPE,
)
