"""Split hygiene for video-level tasks: no group (video, subject) in two splits, class balance.

Emotion is one label per interview video, so a video (or a subject, when subject ids are known)
seen in training and again in validation / test leaks its label. The MiGA releases split by
video; :func:`check_disjoint_splits` makes that an enforced fact instead of an assumption.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def check_disjoint_splits(groups: Mapping[str, Iterable[str]], kind: str = "video") -> None:
    """Raise ValueError when a group id occurs in more than one split.

    Args:
        groups: split name -> the group ids of its samples (repeats within a split are fine).
        kind: what the ids are (``video``, ``subject``), for the message.

    Raises:
        ValueError: naming every shared id (up to 10) and the splits that share it.
    """
    seen: dict[str, list[str]] = {}
    for split, ids in groups.items():
        for gid in sorted({str(g) for g in ids}):
            seen.setdefault(gid, []).append(split)
    shared = {g: s for g, s in seen.items() if len(s) > 1}
    if not shared:
        return
    items = sorted(shared.items())
    shown = ", ".join(f"{g} ({' and '.join(s)})" for g, s in items[:10])
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    raise ValueError(
        f"{len(items)} {kind}(s) appear in more than one split, so their labels leak between "
        f"splits: {shown}{more}. Split by {kind}."
    )


def label_balance(labels: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    """Counts of a binary video-level split: ``clips``, ``videos``, ``videos_win`` /
    ``videos_lose`` (label 1 / 0 of each video), ``videos_unknown`` (label < 0)."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    per_video: dict[int, int] = {}
    for g, y in zip(groups.tolist(), labels.tolist(), strict=True):
        per_video.setdefault(int(g), int(y))
    values = list(per_video.values())
    return {
        "clips": len(labels),
        "videos": len(values),
        "videos_win": sum(v == 1 for v in values),
        "videos_lose": sum(v == 0 for v in values),
        "videos_unknown": sum(v < 0 for v in values),
    }
