"""MiGA 2024-2026 35-joint skeleton tables (``<vid>_light_hand.csv``, also ``<vid>_light.csv``).

No header; 106 columns per row: the frame index, then 35 joints x (x, y, confidence) in pixels:
the 25 OpenPose BODY_25 joints in BODY_25 order, then 5 right-hand and 5 left-hand fingertips
(the organisers' evaluation script names them ``RightFinger1-5``, ``LeftFinger1-5``). Frame
indices are 0-based; the label files are the MiGA 2025 ones (``<vid>_label.csv``).

The reader places the joints at their OpenPose-137 positions (body 0-24, fingertips at hand
points 4, 8, 12, 16, 20) in a (T, 411) table whose other keypoints are missing (0, 0, 0), so the
prepare step, the cache and every layout made of these joints (``imigue22``, ``light35``) work
unchanged.

Left / right: which fingertip group belongs to which hand is decided per file from the data.
The group whose median distance to BODY_25's right wrist (joint 4) is smaller is the right hand,
whatever the column names say (naming conventions differ between the person's and the image's
side; the body joints themselves are in OpenPose's person-centric order). Files with too few
frames where both wrists and fingertips are seen keep the column order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from migalab.data.formats.errors import FormatError
from migalab.data.formats.limits import MAX_TABLE_ROWS, check_text_table
from migalab.data.skeleton.layouts import LIGHT35

#: table file names, in the order they are looked for
LIGHT_TABLE_SUFFIXES = ("_light_hand.csv", "_light.csv")
NUM_LIGHT_JOINTS = 35
NUM_LIGHT_COLUMNS = 1 + 3 * NUM_LIGHT_JOINTS
#: OpenPose-137 index of each of the 35 joints, in table order (the ``light35`` layout)
LIGHT35_OPENPOSE = LIGHT35.indices
_R_WRIST, _L_WRIST = 4, 7
#: frames with both wrists and a fingertip group seen needed to decide the hand side from data
MIN_SIDE_FRAMES = 5


def is_light_table(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a 35-joint table."""
    return Path(path).name.endswith(LIGHT_TABLE_SUFFIXES)


def read_light_table(path: str | os.PathLike) -> np.ndarray:
    """Read a 35-joint table into a (T, 411) OpenPose-137 table (see the module docstring).

    Raises:
        FormatError: unreadable file, no rows, a row without 106 values, a non-numeric, NaN or
            inf cell, or a frame index that is negative, not an integer, repeated or past
            :data:`~migalab.data.formats.limits.MAX_TABLE_ROWS` - 1 (the table is allocated up
            to the largest index); the message names the file and the 1-based row. Frames
            missing between indices stay missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    check_text_table(path)
    values, row_numbers = _fast_values(path)
    if values is None:
        values, row_numbers = _checked_values(path)
    return _to_table137(path, values, row_numbers)


def _fast_values(path: Path) -> tuple[np.ndarray | None, list[int]]:
    """pandas' C parser for a well-formed file (the common case); None when anything is off."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, header=None, engine="c", encoding="utf-8-sig")
    except Exception:  # noqa: BLE001 - any problem: the checked path names it
        return None, []
    values = frame.to_numpy() if frame.shape[1] == NUM_LIGHT_COLUMNS else None
    if values is None or values.dtype.kind not in "fi" or not np.isfinite(values).all():
        return None, []
    return values.astype(np.float64), list(range(1, len(values) + 1))


def _checked_values(path: Path) -> tuple[np.ndarray, list[int]]:
    """Row-by-row reading that names the first bad row and column."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f)]
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise FormatError(path, f"unreadable csv ({type(exc).__name__}: {exc})") from exc
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not numbered:
        raise FormatError(path, "table has no rows")
    values = np.empty((len(numbered), NUM_LIGHT_COLUMNS), np.float64)
    for k, (row, cells) in enumerate(numbered):
        if len(cells) != NUM_LIGHT_COLUMNS:
            raise FormatError(
                path,
                f"{len(cells)} columns, expected {NUM_LIGHT_COLUMNS} "
                f"(frame index + {NUM_LIGHT_JOINTS} joints x 3)",
                row=row,
            )
        try:
            values[k] = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            raise FormatError(path, f"non-numeric cell {bad!r}", row=row) from None
        if not np.isfinite(values[k]).all():
            col = int(np.flatnonzero(~np.isfinite(values[k]))[0])
            raise FormatError(path, f"column {col + 1}: value is {values[k, col]}", row=row)
    return values, [row for row, _ in numbered]


def _to_table137(path: Path, values: np.ndarray, row_numbers: list[int]) -> np.ndarray:
    """Check the frame indices and place the 35 joints at their OpenPose-137 positions."""
    frames = values[:, 0]
    if (frames < 0).any() or (frames != np.round(frames)).any():
        k = int(np.flatnonzero((frames < 0) | (frames != np.round(frames)))[0])
        raise FormatError(path, f"frame index {frames[k]:g} is not a frame", row=row_numbers[k])
    if (frames >= MAX_TABLE_ROWS).any():
        k = int(np.flatnonzero(frames >= MAX_TABLE_ROWS)[0])
        raise FormatError(
            path,
            f"frame index {frames[k]:g} is past the {MAX_TABLE_ROWS} frames a table may hold",
            row=row_numbers[k],
        )
    idx = frames.astype(np.int64)
    uniq, first = np.unique(idx, return_index=True)
    if len(uniq) != len(idx):
        dup = np.setdiff1d(np.arange(len(idx)), first)[0]
        raise FormatError(path, f"frame {idx[dup]} appears twice", row=row_numbers[int(dup)])
    joints = values[:, 1:].reshape(len(values), NUM_LIGHT_JOINTS, 3)
    if _hands_swapped(joints):
        joints = joints[:, [*range(25), *range(30, 35), *range(25, 30)]]
    table = np.zeros((int(idx.max()) + 1, 137, 3), np.float32)
    table[idx[:, None], np.asarray(LIGHT35_OPENPOSE)[None, :]] = joints
    return table.reshape(len(table), 411)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _hands_swapped(joints: np.ndarray) -> bool:
    """True when the first fingertip group sits at the LEFT wrist (BODY_25 joint 7)."""
    seen = joints[..., 2] > 0
    first, second = slice(25, 30), slice(30, 35)
    ok = seen[:, _R_WRIST] & seen[:, _L_WRIST] & seen[:, first].all(1) & seen[:, second].all(1)
    if ok.sum() < MIN_SIDE_FRAMES:
        return False
    xy = joints[ok, :, :2]

    def dist(group: slice, wrist: int) -> float:
        return float(np.median(np.linalg.norm(xy[:, group] - xy[:, wrist : wrist + 1], axis=-1)))

    as_named = dist(first, _R_WRIST) + dist(second, _L_WRIST)
    swapped = dist(first, _L_WRIST) + dist(second, _R_WRIST)
    return swapped < as_named


def write_light_table(path: str | os.PathLike, table: np.ndarray) -> Path:
    """Write the 35 joints of a (T, 411) OpenPose-137 table as a ``_light_hand.csv`` table
    (frame index first; right fingertips, then left), atomically."""
    from migalab.utils.io import atomic_write_text

    table = np.asarray(table, dtype=np.float64).reshape(len(table), 137, 3)
    joints = table[:, list(LIGHT35_OPENPOSE)].reshape(len(table), -1)
    lines = [
        ",".join([str(t), *(f"{v:.10g}" for v in np.round(row, 3))]) for t, row in enumerate(joints)
    ]
    return atomic_write_text(path, "\n".join(lines) + "\n")
