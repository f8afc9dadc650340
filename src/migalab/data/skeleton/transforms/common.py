"""Helpers shared by the skeleton transforms (and the heatmap pipeline): the layout of an
argument, a new record with changes, the record's coordinate space."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import JointLayout, get_layout

__all__ = ["as_layout", "is_body_space", "replace_record"]


def as_layout(layout: str | JointLayout) -> JointLayout:
    """The ``JointLayout`` named by ``layout`` (a layout is returned as it is)."""
    return get_layout(layout) if isinstance(layout, str) else layout


def replace_record(
    record: ClipRecord, meta_updates: Mapping[str, Any] | None = None, **changes: Any
) -> ClipRecord:
    """A new record with ``changes`` and a copied ``meta`` updated by ``meta_updates``."""
    meta = dict(record.meta)
    if meta_updates:
        meta.update(meta_updates)
    return record.replace(meta=meta, **changes)


def is_body_space(record: ClipRecord) -> bool:
    """Whether the record's keypoints are in body units (``NormalizeSkeleton``) or pixels."""
    return record.meta.get("space", "pixel") == "body"
