"""pyskl annotation pickle (PoseC3D tooling).

Layout: ``{"split": {split_name: [frame_dir, ...]}, "annotations": [ann, ...]}`` where each
``ann`` has ``frame_dir`` (clip name), ``label`` (0-based), ``img_shape`` (H, W),
``total_frames`` (T), ``keypoint`` (M, T, V, 2) float32 pixels and ``keypoint_score`` (M, T, V).

The writer adds ``video_id``, ``start``, ``end``, ``layout`` and, when known, ``video_path`` and
``emotion`` to each annotation (pyskl passes unknown keys through untouched) so that a round trip
keeps the whole ClipRecord.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.classes import NUM_CLASSES
from migalab.data.formats.errors import FormatError, class_id, load_pickle
from migalab.data.formats.limits import (
    MAX_ANNOTATIONS,
    MAX_JOINTS,
    MAX_PERSONS,
    MAX_TABLE_ROWS,
    check_split_size,
    nested_shape,
)
from migalab.data.record import UNKNOWN_LABEL, ClipRecord
from migalab.data.skeleton.layouts import LAYOUTS, get_layout
from migalab.utils.io import atomic_write

_LAYOUT_BY_JOINTS = {22: "imigue22", 36: "mg36", 137: "openpose137"}
_REQUIRED = ("frame_dir", "keypoint", "img_shape", "total_frames")
#: Split name used when the pickle has no ``"split"`` mapping.
ALL_SPLIT = "all"


def infer_layout(num_joints: int) -> str:
    """Layout name for V joints: 22 imigue22, 36 mg36, 137 openpose137, else the one registered
    layout with V joints (ValueError when none or several)."""
    if num_joints in _LAYOUT_BY_JOINTS:
        return _LAYOUT_BY_JOINTS[num_joints]
    matches = [name for name, lay in LAYOUTS.items() if lay.num_joints == num_joints]
    if len(matches) != 1:
        raise ValueError(f"cannot infer a joint layout for V={num_joints} (candidates {matches})")
    return matches[0]


def _video_id(name: str) -> str:
    head, sep, tail = name.rpartition("_")
    return head if sep and tail.isdigit() else name


def _to_record(
    path: Path,
    i: int,
    ann: Any,
    layout: str | None,
    split: str | None,
    num_classes: int = NUM_CLASSES,
) -> ClipRecord:
    if not isinstance(ann, Mapping):
        raise FormatError(path, f"annotation {i} is a {type(ann).__name__}, not a dict")
    missing = [k for k in _REQUIRED if k not in ann]
    name = ann.get("frame_dir", f"#{i}")
    for key in ("keypoint", "keypoint_score"):  # bounded before anything is converted
        shape = nested_shape(ann.get(key, ()))
        if len(shape) >= 3 and (
            shape[0] > MAX_PERSONS or shape[1] > MAX_TABLE_ROWS or shape[2] > MAX_JOINTS
        ):
            raise FormatError(
                path,
                f"annotation {i} ({name}): {key} {shape} is beyond {MAX_PERSONS} persons x "
                f"{MAX_TABLE_ROWS} frames x {MAX_JOINTS} joints",
            )
        if np.prod(shape, dtype=object) > MAX_PERSONS * MAX_TABLE_ROWS * MAX_JOINTS * 3:
            raise FormatError(path, f"annotation {i} ({name}): {key} {shape} is too large")
    kp = np.asarray(ann.get("keypoint", np.zeros((0,))), dtype=np.float32)
    if "keypoint_score" not in ann and not (kp.ndim == 4 and kp.shape[-1] == 3):
        missing.append("keypoint_score")
    if missing:
        raise FormatError(path, f"annotation {i} ({name}) is missing key(s) {missing}")
    if kp.ndim != 4 or kp.shape[-1] not in (2, 3):
        raise FormatError(path, f"annotation {i} ({name}): keypoint {kp.shape} is not (M,T,V,2)")
    if "keypoint_score" in ann:
        score = np.asarray(ann["keypoint_score"], dtype=np.float32)
        kp = kp[..., :2]
    elif kp.shape[-1] == 3:
        # (x, y, score) packed in one array (older pyskl files) -- or a 3-D skeleton (x, y, z),
        # whose z must not be read as a confidence
        third = kp[..., 2]
        if third.size and (np.nanmin(third) < 0 or np.nanmax(third) > 1):
            raise FormatError(
                path,
                f"annotation {i} ({name}): keypoint {kp.shape} has no keypoint_score and its third "
                f"channel spans {np.nanmin(third):.3g}..{np.nanmax(third):.3g}, not a 0..1 "
                "confidence: 3-D skeletons (x, y, z) are not supported; give 2-D keypoints with a "
                "keypoint_score",
            )
        kp, score = kp[..., :2], third
    if score.shape != kp.shape[:3]:
        raise FormatError(
            path, f"annotation {i} ({name}): keypoint_score {score.shape} vs keypoint {kp.shape}"
        )
    t = kp.shape[1]
    if int(ann["total_frames"]) != t:
        raise FormatError(
            path,
            f"annotation {i} ({name}): total_frames {ann['total_frames']} but keypoint has {t}",
        )
    lay = layout or ann.get("layout") or None
    if lay is None:
        try:
            lay = infer_layout(kp.shape[2])
        except ValueError as exc:
            raise FormatError(path, f"annotation {i} ({name}): {exc}") from None
    try:
        expected = get_layout(str(lay)).num_joints
    except (KeyError, ValueError) as exc:
        raise FormatError(path, f"annotation {i} ({name}): {exc}") from None
    if expected != kp.shape[2]:
        raise FormatError(
            path,
            f"annotation {i} ({name}): layout {lay!r} has {expected} joints but keypoint has "
            f"V={kp.shape[2]}",
        )
    start = int(ann.get("start", 0))
    emotion = ann.get("emotion")
    label = ann.get("label", UNKNOWN_LABEL)
    label = (
        UNKNOWN_LABEL
        if label is None
        else class_id(path, f"annotation {i} ({name})", label, num_classes)
    )
    h, w = (int(v) for v in ann["img_shape"])
    return ClipRecord(
        name=str(name),
        video_id=str(ann.get("video_id", _video_id(str(name)))),
        start=start,
        end=int(ann.get("end", start + t - 1)),
        label=label,
        keypoint=np.ascontiguousarray(kp),
        keypoint_score=np.ascontiguousarray(score),
        img_shape=(h, w),
        layout=str(lay),
        video_path=ann.get("video_path"),
        emotion=None if emotion is None else int(emotion),
        meta={"split": split, "source": str(path)},
    )


def read_pyskl(
    path: str | os.PathLike,
    layout: str | None = None,
    splits: Sequence[str] | None = None,
    num_classes: int = NUM_CLASSES,
) -> dict[str, list[ClipRecord]]:
    """Read a pyskl annotation pickle.

    Args:
        path: the ``.pkl`` file.
        layout: joint layout of the V axis; default: the annotation's ``layout`` key, else inferred
            from V (22 imigue22, 36 mg36, 137 openpose137).
        splits: only these splits (default all in the file).
        num_classes: labels must be 0-based ids below it (or -1 / missing: unknown).

    Returns:
        ``{split: [ClipRecord, ...]}`` in the order of the split lists; keypoint (M, T, V, 2),
        keypoint_score (M, T, V). Without a ``"split"`` mapping every annotation goes to ``"all"``.
        A missing ``label`` becomes UNKNOWN_LABEL.

    Raises:
        FormatError: unreadable pickle, missing ``annotations``, an annotation missing a key
            (named by its index), inconsistent shapes, a layout whose joint count is not V, a
            3-channel keypoint whose third channel is not a 0..1 score (3-D skeletons), a label
            outside -1..num_classes-1, or a split naming an unknown frame_dir.
    """
    path = Path(path)
    obj = load_pickle(path)
    if not isinstance(obj, Mapping) or "annotations" not in obj:
        raise FormatError(path, "expected a dict with an 'annotations' list (and a 'split' dict)")
    anns = obj["annotations"]
    if not isinstance(anns, Sequence):
        raise FormatError(path, f"'annotations' is a {type(anns).__name__}, not a list")
    if len(anns) > MAX_ANNOTATIONS:
        raise FormatError(path, f"{len(anns)} annotations (at most {MAX_ANNOTATIONS})")
    by_name: dict[str, int] = {}
    for i, ann in enumerate(anns):
        if not isinstance(ann, Mapping) or "frame_dir" not in ann:
            _to_record(path, i, ann, layout, None)  # raises, naming annotation i
        by_name.setdefault(str(ann["frame_dir"]), i)
    split_map = obj.get("split")
    if split_map is None:
        split_map = {ALL_SPLIT: list(by_name)}
    if not isinstance(split_map, Mapping):
        raise FormatError(path, f"'split' is a {type(split_map).__name__}, not a dict")
    wanted = list(split_map) if splits is None else list(splits)
    out: dict[str, list[ClipRecord]] = {}
    for split in wanted:
        if split not in split_map:
            raise FormatError(path, f"no split {split!r} (have {sorted(split_map)})")
        records = []
        persons = frames = joints = 0
        for name in split_map[split]:
            if str(name) not in by_name:
                raise FormatError(path, f"split {split!r} lists {name!r}, not in annotations")
            i = by_name[str(name)]
            try:
                record = _to_record(path, i, anns[i], layout, split, num_classes)
            except FormatError:
                raise
            except (TypeError, ValueError, OverflowError, KeyError) as exc:  # a malformed field
                raise FormatError(
                    path, f"annotation {i} ({name}): {type(exc).__name__}: {exc}"
                ) from None
            m, t, v = record.keypoint_score.shape
            persons, frames, joints = max(persons, m), frames + t, max(joints, v)
            check_split_size(path, f"split {split!r}", persons, frames, joints)
            records.append(record)
        out[str(split)] = records
    return out


def to_annotation(record: ClipRecord) -> dict[str, Any]:
    """A ClipRecord as a pyskl annotation dict (plus the extra keys listed in the module doc)."""
    ann: dict[str, Any] = {
        "frame_dir": record.name,
        "label": int(record.label),
        "img_shape": (int(record.img_shape[0]), int(record.img_shape[1])),
        "original_shape": (int(record.img_shape[0]), int(record.img_shape[1])),
        "total_frames": int(record.keypoint.shape[1]),
        "keypoint": np.asarray(record.keypoint, dtype=np.float32),
        "keypoint_score": np.asarray(record.keypoint_score, dtype=np.float32),
        "video_id": record.video_id,
        "start": int(record.start),
        "end": int(record.end),
        "layout": record.layout,
    }
    if record.video_path is not None:
        ann["video_path"] = str(record.video_path)
    if record.emotion is not None:
        ann["emotion"] = int(record.emotion)
    return ann


def write_pyskl(
    path: str | os.PathLike, records_by_split: Mapping[str, Sequence[ClipRecord]]
) -> Path:
    """Write ``{split: records}`` as a pyskl annotation pickle, atomically.

    A clip listed in several splits is stored once in ``annotations``. Clip names must be unique
    per clip (two different clips with one name raise ValueError).
    """
    annotations: list[dict[str, Any]] = []
    seen: dict[str, ClipRecord] = {}
    split_map: dict[str, list[str]] = {}
    for split, records in records_by_split.items():
        names = []
        for r in records:
            r.validate()
            prev = seen.get(r.name)
            if prev is not None:
                if (prev.video_id, prev.start, prev.end) != (r.video_id, r.start, r.end):
                    raise ValueError(f"two different clips are named {r.name!r}")
            else:
                seen[r.name] = r
                annotations.append(to_annotation(r))
            names.append(r.name)
        split_map[str(split)] = names
    obj = {"split": split_map, "annotations": annotations}
    return atomic_write(path, lambda f: pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL))
