"""MiGA 2025 clip labels: ``<vid>_label.csv``, no header, rows ``class,start_frame,end_frame`` with 1-based class ids plus the code 99 (illustrative), 0-based inclusive frames; clip ``<vid>_<row>``. Reading (every bad row named) and writing."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from migalab.data.classes import NUM_CLASSES
from migalab.data.formats.errors import FormatError
from migalab.data.formats.limits import MAX_LABEL_ROWS, check_text_table
from migalab.data.formats.miga2025.tables import _atomic_target
from migalab.data.record import UNKNOWN_LABEL

ILLUSTRATIVE_CODE = 99


def raw_to_class(raw: int) -> int:
    """Release class code (1..31 or 99) -> 0-based class id (``k -> k-1``, ``99 -> 31``)."""
    if raw == ILLUSTRATIVE_CODE:
        return NUM_CLASSES - 1
    if 1 <= raw <= NUM_CLASSES - 1:
        return raw - 1
    raise ValueError(f"class id {raw} outside 1..{NUM_CLASSES - 1} and not {ILLUSTRATIVE_CODE}")


def class_to_raw(label: int) -> int:
    """0-based class id -> release code (inverse of :func:`raw_to_class`)."""
    if label == NUM_CLASSES - 1:
        return ILLUSTRATIVE_CODE
    if 0 <= label < NUM_CLASSES - 1:
        return label + 1
    raise ValueError(f"class {label} outside 0..{NUM_CLASSES - 1}")


def write_label_csv(path: str | os.PathLike, rows: Sequence[tuple[int, int, int]]) -> Path:
    """Write ``class,start,end`` rows (class given as the release code) without header, atomically."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "w") as f:
            for raw, start, end in rows:
                f.write(f"{int(raw)},{int(start)},{int(end)}\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _parse_int(path: Path, row: int, field: str, text: str) -> int:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        raise FormatError(path, f"{field} {text!r} is not a number", row=row) from None
    if not np.isfinite(value) or value != int(value):
        raise FormatError(path, f"{field} {text!r} is not an integer", row=row)
    return int(value)


def read_label_csv(
    path: str | os.PathLike, num_frames: int | None = None
) -> list[tuple[int, int, int]]:
    """Read a MiGA label CSV (no header; rows ``class,start_frame,end_frame``).

    Args:
        path: ``<vid>_label.csv``.
        num_frames: frames in the video's OpenPose table; when given, clips ending past the last
            frame are rejected.

    Returns:
        One ``(label, start, end)`` per row in file order (row i is clip ``<vid>_<i>``): label is
        the 0-based class (:func:`raw_to_class`) or ``UNKNOWN_LABEL`` when the class field is
        empty or ``-1`` or the row has only ``start,end`` (hidden test labels); start/end are
        0-based inclusive frames.
        Blank lines are skipped.

    Raises:
        FormatError: unreadable file, a row without 2 or 3 fields, non-integer fields, a class outside
            1..31 and not 99, a negative start, end < start, or end past the table's last frame.
    """
    import csv

    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    check_text_table(path, max_rows=MAX_LABEL_ROWS, what="label file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise FormatError(path, f"unreadable csv ({type(exc).__name__}: {exc})") from exc
    out: list[tuple[int, int, int]] = []
    for i, fields in enumerate(rows):
        row = i + 1
        if not fields or all(not s.strip() for s in fields):
            continue
        if len(fields) == 2:  # hidden test labels written as start_frame,end_frame
            fields = ["", *fields]
        if len(fields) != 3:
            raise FormatError(
                path,
                f"{len(fields)} fields, expected 3 (class,start_frame,end_frame) or 2 "
                "(start_frame,end_frame: hidden label)",
                row=row,
            )
        cls_text = fields[0].strip()
        if cls_text == "" or cls_text == "-1":
            label = UNKNOWN_LABEL
        else:
            raw = _parse_int(path, row, "class", cls_text)
            try:
                label = raw_to_class(raw)
            except ValueError as exc:
                raise FormatError(path, str(exc), row=row) from None
        start = _parse_int(path, row, "start frame", fields[1])
        end = _parse_int(path, row, "end frame", fields[2])
        if start < 0:
            raise FormatError(path, f"negative start frame {start}", row=row)
        if end < start:
            raise FormatError(path, f"end frame {end} < start frame {start}", row=row)
        if num_frames is not None and end >= num_frames:
            raise FormatError(
                path,
                f"end frame {end} is past the last frame {num_frames - 1} of the table "
                f"({num_frames} frames)",
                row=row,
            )
        out.append((label, start, end))
    return out
