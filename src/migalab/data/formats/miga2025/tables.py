"""MiGA 2025 OpenPose tables: ``<vid>_openpose.xlsx`` (or .csv), no header; row i is frame i (0-based); 411 columns = 137 keypoints x (x, y, confidence) in pixels. Reading (calamine, openpyxl or csv, every bad cell named by its spreadsheet column) and atomic writing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from migalab.data.formats.errors import FormatError
from migalab.data.formats.light35 import is_light_table, read_light_table
from migalab.data.formats.limits import check_text_table, check_xlsx
from migalab.utils.io import default_file_mode

NUM_COLUMNS = 411


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, default_file_mode())  # mkstemp alone gives 0o600
    return fd, tmp


def write_openpose_table(path: str | os.PathLike, table: np.ndarray) -> Path:
    """Write a (T, 411) keypoint table as ``.xlsx`` (no header, numbers) or ``.csv``, atomically.

    The suffix of ``path`` picks the format. Values are written with 2 decimals for coordinates
    and 3 for confidences, like OpenPose JSON dumps.
    """
    path = Path(path)
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != NUM_COLUMNS:
        raise ValueError(f"{path}: table must be (T, {NUM_COLUMNS}), got {table.shape}")
    table = _round_table(table)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        if path.suffix == ".csv":
            np.savetxt(tmp, table, delimiter=",", fmt="%.10g")
        elif path.suffix == ".xlsx":
            _write_xlsx(tmp, table)
        else:
            raise ValueError(f"{path}: unsupported table format {path.suffix!r} (.xlsx or .csv)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _round_table(table: np.ndarray) -> np.ndarray:
    out = table.copy()
    out[:, 0::3] = np.round(out[:, 0::3], 2)
    out[:, 1::3] = np.round(out[:, 1::3], 2)
    out[:, 2::3] = np.round(out[:, 2::3], 3)
    return out


def _write_xlsx(path: str, table: np.ndarray) -> None:
    import xlsxwriter  # the fastest maintained pure-Python xlsx writer

    wb = xlsxwriter.Workbook(path, {"constant_memory": True})
    ws = wb.add_worksheet("Sheet1")
    for r, row in enumerate(table.tolist()):
        ws.write_row(r, 0, row)
    wb.close()


NUM_KEYPOINTS = NUM_COLUMNS // 3


DEFAULT_IMG_SHAPE = (720, 1280)


_COMPONENTS = ("x", "y", "confidence")


def column_letter(col: int) -> str:
    """0-based column index -> spreadsheet letters (0 -> ``A``, 26 -> ``AA``)."""
    letters = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def describe_column(col: int) -> str:
    """Human description of a 0-based table column: ``column 7 (G) = keypoint 2 x``."""
    kp, comp = divmod(col, 3)
    return f"column {col + 1} ({column_letter(col)}) = keypoint {kp} {_COMPONENTS[comp]}"


def read_openpose_table(path: str | os.PathLike, engine: str = "calamine") -> np.ndarray:
    """Read a MiGA OpenPose table (``.xlsx`` first sheet or ``.csv``, no header), or a 2024-2026
    35-joint table (``<vid>_light_hand.csv``: :mod:`migalab.data.formats.light35`).

    Args:
        path: ``<vid>_openpose.xlsx`` or ``.csv``.
        engine: for ``.xlsx`` only: ``"calamine"`` (python-calamine, fast) or ``"openpyxl"``
            (``pandas.read_excel(engine="openpyxl")``, the slow baseline kept for benchmarks).

    Returns:
        (T, 411) float32 array; row i is frame i; columns are 137 keypoints x (x, y, confidence)
        in pixels. Missing keypoints are (0, 0, 0) and are valid.

    Raises:
        FormatError: unreadable file, no rows, a row without exactly 411 values, an empty or
            non-numeric cell, or a NaN/inf value; the message names the file, the 1-based row
            and the column / keypoint. Also, before any parser runs, a file past the size
            limits of :mod:`migalab.data.formats.limits` (an xlsx zip bomb or a sheet spanning
            more than 100,000 rows x 512 columns; a csv with more lines or wider lines).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FormatError(path, "no such file")
    if is_light_table(path):  # <vid>_light_hand.csv: 35 joints, placed at their 137 positions
        return read_light_table(path)
    if suffix == ".xlsx":
        check_xlsx(path)  # before any xlsx reader allocates what the file declares
        if engine == "calamine":
            rows = _calamine_rows(path)
        elif engine == "openpyxl":
            return _read_openpyxl(path)
        else:
            raise ValueError(f"unknown xlsx engine {engine!r} (calamine or openpyxl)")
        table = _rows_to_array(path, rows)
    elif suffix == ".csv":
        table = _read_csv_table(path)
    else:
        raise FormatError(path, f"unsupported table format {path.suffix!r} (.xlsx or .csv)")
    return table


def _calamine_rows(path: Path) -> list[list]:
    from python_calamine import CalamineWorkbook

    try:
        with CalamineWorkbook.from_path(str(path)) as wb:
            if not wb.sheet_names:
                raise FormatError(path, "workbook has no sheets")
            return wb.get_sheet_by_index(0).to_python(skip_empty_area=False)
    except FormatError:
        raise
    except Exception as exc:  # calamine raises its own zip/xml errors
        raise FormatError(path, f"unreadable xlsx ({type(exc).__name__}: {exc})") from exc


def _read_openpyxl(path: Path) -> np.ndarray:
    import pandas as pd

    try:
        frame = pd.read_excel(path, engine="openpyxl", header=None, sheet_name=0)
    except Exception as exc:
        raise FormatError(path, f"unreadable xlsx ({type(exc).__name__}: {exc})") from exc
    if frame.shape[1] == NUM_COLUMNS and all(
        pd.api.types.is_numeric_dtype(dt) for dt in frame.dtypes
    ):
        table = frame.to_numpy(dtype=np.float32)
        if len(table) and np.isfinite(table).all():
            return table
    rows = frame.astype(object).where(frame.notna(), "").to_numpy().tolist()
    return _rows_to_array(path, rows)


def _rows_to_array(path: Path, rows: list[list]) -> np.ndarray:
    """Fast path: one NumPy conversion; on any problem, locate it cell by cell."""
    if not rows:
        raise FormatError(path, "table has no rows")
    if len(rows[0]) == NUM_COLUMNS:
        try:
            table = np.array(rows, dtype=np.float32)
        except (ValueError, TypeError):
            table = None
        if table is not None and table.ndim == 2 and np.isfinite(table).all():
            return table
    _diagnose_rows(path, rows, strip_trailing=True)
    raise FormatError(path, "table could not be converted to numbers")  # pragma: no cover


def _read_csv_table(path: Path) -> np.ndarray:
    import pandas as pd

    check_text_table(path)
    try:
        frame = pd.read_csv(path, header=None, engine="c", encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise FormatError(path, "table has no rows") from None
    except pd.errors.ParserError:
        frame = None  # ragged rows: located below
    except (UnicodeDecodeError, OSError) as exc:
        raise FormatError(path, f"unreadable csv ({type(exc).__name__}: {exc})") from exc
    if (
        frame is not None
        and frame.shape[1] == NUM_COLUMNS
        and all(pd.api.types.is_numeric_dtype(dt) for dt in frame.dtypes)
    ):
        table = frame.to_numpy(dtype=np.float32)
        if np.isfinite(table).all():
            return table
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise FormatError(path, f"unreadable csv ({type(exc).__name__}: {exc})") from exc
    _diagnose_rows(path, rows, strip_trailing=False)
    raise FormatError(path, "table could not be converted to numbers")  # pragma: no cover


def _diagnose_rows(path: Path, rows: list[list], strip_trailing: bool) -> None:
    """Raise a FormatError for the first bad row (column count, empty, non-numeric, NaN/inf)."""
    if not rows:
        raise FormatError(path, "table has no rows")
    for r, row in enumerate(rows):
        cells = list(row)
        if strip_trailing:  # spreadsheets pad short rows with empty cells
            while cells and cells[-1] in ("", None):
                cells.pop()
        if not cells or (len(cells) == 1 and str(cells[0]).strip() == ""):
            raise FormatError(path, "empty row (no values)", row=r + 1)
        if len(cells) != NUM_COLUMNS:
            raise FormatError(
                path, f"{len(cells)} columns, expected {NUM_COLUMNS} (137 keypoints x 3)", row=r + 1
            )
        for c, cell in enumerate(cells):
            if cell is None or (isinstance(cell, str) and cell.strip() == ""):
                raise FormatError(path, f"{describe_column(c)}: empty or error cell", row=r + 1)
            if isinstance(cell, bool):
                raise FormatError(path, f"{describe_column(c)}: non-numeric {cell!r}", row=r + 1)
            try:
                value = float(cell)
            except (TypeError, ValueError):
                raise FormatError(
                    path, f"{describe_column(c)}: non-numeric {cell!r}", row=r + 1
                ) from None
            if not np.isfinite(value):
                raise FormatError(path, f"{describe_column(c)}: value is {value}", row=r + 1)
