"""Background windows: the stretches of every video that no labelled clip covers.

iMiGUE's per-video tables are mostly frames outside any labelled clip, and the MiGA online
track scores a model on whole videos, where those stretches are background. Two users of them:

* ``migalab-pseudolabel`` scores them with a trained model (:func:`unlabelled_windows`);
* ``data.target=actionness`` trains a gesture-vs-background model on the labelled clips (label
  1) and such windows (label 0) of the same split (:func:`with_background`), which online
  recognition uses to tell "a gesture happens here" from "nothing happens"
  (``online.actionness_ckpt``, :mod:`migalab.predict`): the actionness-then-classify split of
  temporal action detection. The MiGA online entries are trained detectors instead (learnable
  query points after PointTAD, 2nd in 2024 with F1 14.34, arXiv 2407.04490; data augmentation
  and spatial-temporal attention, 1st in 2025 with F1 38.03, arXiv 2507.09512); a detector head
  is a larger step, not taken here.

Skeleton streams only: RGB and face inputs are prepared per labelled clip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from migalab.data.cache import SkeletonCache

#: the index split of a release split's background windows
BACKGROUND_PREFIX = "background:"
#: ``data.background``'s keys and defaults: windows of ``window`` frames every ``stride``; at most
#: ``ratio`` background windows per labelled clip of the split (evenly spaced over the split's
#: videos in order: deterministic, every video represented)
BACKGROUND_DEFAULTS = {"window": 32, "stride": 16, "ratio": 1.0}


def unlabelled_windows(
    cache: SkeletonCache, window: int, stride: int, splits: Sequence[str] | None
) -> SkeletonCache:
    """The sliding windows (:meth:`SkeletonCache.windows`) of the sequences of ``splits`` that
    overlap no labelled clip of their video (in any split)."""
    windows = cache.windows(
        window, stride, list(splits) if splits else None, split_name="unlabelled"
    )
    clips = cache.index[cache.index["row"] >= 0]
    spans: dict[str, list[tuple[int, int]]] = {}
    for vid, start, end in zip(clips["video_id"], clips["start"], clips["end"], strict=True):
        spans.setdefault(str(vid), []).append((int(start), int(end)))
    keep = [
        not any(s <= end and start <= e for s, e in spans.get(str(vid), []))
        for vid, start, end in zip(
            windows.index["video_id"], windows.index["start"], windows.index["end"], strict=True
        )
    ]
    return windows.select(np.asarray(keep, bool))


def background_options(options: dict | None) -> dict[str, float]:
    """``data.background`` with its defaults, checked: window and stride >= 1, ratio > 0."""
    options = dict(options or {})
    unknown = set(options) - set(BACKGROUND_DEFAULTS)
    if unknown:
        raise ValueError(
            f"data.background takes {', '.join(BACKGROUND_DEFAULTS)}; got "
            f"unknown key(s) {sorted(unknown)}"
        )
    merged = {**BACKGROUND_DEFAULTS, **options}
    for key in ("window", "stride"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"data.background.{key} must be a whole number >= 1, got {value!r}")
    ratio = merged["ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not ratio > 0:
        raise ValueError(f"data.background.ratio must be > 0, got {ratio!r}")
    return merged


def background_table(
    cache: SkeletonCache, splits: Sequence[str], window: int, stride: int, ratio: float
) -> pd.DataFrame:
    """``video_id``, ``start``, ``end``, ``label`` (0) of the background windows of ``splits``:
    :func:`unlabelled_windows`, at most ``ratio`` per labelled clip of those splits (evenly
    spaced)."""
    windows = unlabelled_windows(cache, window, stride, splits).index
    index = cache.index
    clips = int(((index["row"] >= 0) & index["split"].isin(list(splits))).sum())
    limit = max(1, int(ratio * clips))
    if len(windows) > limit:
        windows = windows.iloc[
            np.unique(np.linspace(0, len(windows) - 1, limit).round().astype(int))
        ]
    table = windows[["video_id", "start", "end"]].reset_index(drop=True).copy()
    table["label"] = 0
    return table


def with_background(
    cache: SkeletonCache, split: str | Sequence[str], options: dict[str, float]
) -> tuple[SkeletonCache, list[str], int]:
    """``cache`` plus the background windows of ``split`` (one release split or several) as
    index rows of split ``background:<split>``; returns the cache, the split names a
    :class:`~migalab.data.datasets.SkeletonClipDataset` reads (the clips' and the windows') and
    the number of windows added."""
    splits = [split] if isinstance(split, str) else list(split)
    name = BACKGROUND_PREFIX + "+".join(splits)
    table = background_table(
        cache, splits, int(options["window"]), int(options["stride"]), float(options["ratio"])
    )
    if len(table) == 0:
        return cache, splits, 0
    return (
        cache.with_windows(table, name, source=f"background windows of {name}"),
        [*splits, name],
        len(table),
    )
