"""Everything a datamodule needs on disk before training: the release (generated when it is the
synthetic one) and its current skeleton cache. Runs once per node (or once) in ``prepare_data``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from migalab.data.specs import DatasetSpec

log = logging.getLogger(__name__)


def prepare_clip_data(
    spec: DatasetSpec,
    release_root: str | Path,
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
        release_root: the release (folder, or file for pyskl pickles).
        cache_dir: the skeleton cache folder.
        splits: release split names to convert.
        synthetic: :class:`~migalab.data.synthetic.SynthConfig` fields, or None for real data.
        img_shape: (height, width) of the source frames (default: the spec's).
        workers: processes converting videos.

    Raises:
        FileNotFoundError: a real release that does not exist.
    """
    release_root, cache_dir = Path(release_root), Path(cache_dir)
    if synthetic is not None:
        from migalab.data.synthetic import SynthConfig, generate_release, release_is_current

        cfg = SynthConfig(**synthetic)
        if not release_is_current(release_root, cfg):
            log.info("generating synthetic iMiGUE in %s", release_root)
            generate_release(release_root, cfg)
    elif not release_root.exists():
        raise FileNotFoundError(
            f"{spec.name} release {release_root} does not exist; set data.release_root to the "
            f"release ({spec.description}) or use data=synthetic"
        )
    if not spec.is_current(release_root, cache_dir):
        log.info("converting %s into the skeleton cache %s", release_root, cache_dir)
        spec.prepare(
            release_root, cache_dir, splits=tuple(splits),
            img_shape=img_shape or spec.img_shape, workers=workers,
        )  # fmt: skip
