"""Everything a datamodule needs on disk before training: the release (generated when it is the
synthetic one) and its current skeleton cache. Runs once per node (or once) in ``prepare_data``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from migalab.data.formats.miga2025 import ReleaseRoot, release_roots
from migalab.data.specs import DatasetSpec

log = logging.getLogger(__name__)


def prepare_datamodule_files(
    spec: DatasetSpec,
    release_root: ReleaseRoot,
    cache_dir: str | Path,
    splits: Sequence[str],
    *,
    synthetic: Mapping[str, Any] | None = None,
    img_shape: tuple[int, int] | None = None,
    workers: int = 1,
) -> None:
    """Generate the synthetic release when ``synthetic`` is given and the one on disk does not
    match it, then convert the release into the cache at ``cache_dir`` unless it is current.

    Args:
        spec: the dataset (its ``prepare`` / ``is_current``).
        release_root: the release: a folder (a file for pyskl pickles), several folders, or a
            mapping split -> folder (:data:`~migalab.data.formats.miga2025.ReleaseRoot`).
        cache_dir: the skeleton cache folder.
        splits: release split names to convert.
        synthetic: :class:`~migalab.synthetic.SynthConfig` fields, or None for real data.
        img_shape: (height, width) of the source frames (default: the spec's).
        workers: processes converting videos.

    Raises:
        FileNotFoundError: a real release that does not exist.
    """
    cache_dir = Path(cache_dir)
    if synthetic is not None:
        if not isinstance(release_root, str | Path):
            raise ValueError("a synthetic release is one folder: data.release_root=<folder>")
        release_root = Path(release_root)
        from migalab.synthetic import SynthConfig, generate_release, release_is_current

        cfg = SynthConfig(**synthetic)
        if not release_is_current(release_root, cfg):
            log.info("generating synthetic iMiGUE in %s", release_root)
            generate_release(release_root, cfg)
    else:
        absent = [r for r in release_roots(release_root) if not r.exists()]
        if absent:
            raise FileNotFoundError(
                f"{spec.name} release {absent[0]} does not exist; set data.release_root to the "
                f"release ({spec.description}) or use data=synthetic"
            )
    if not spec.is_current(release_root, cache_dir):
        log.info("converting %s into the skeleton cache %s", release_root, cache_dir)
        spec.prepare(
            release_root,
            cache_dir,
            splits=tuple(splits),
            img_shape=img_shape or spec.img_shape,
            workers=workers,
        )
