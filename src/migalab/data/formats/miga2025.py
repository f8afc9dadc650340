"""MiGA 2025 per-video release: ``<root>/<split>/<vid>/`` with ``<vid>_openpose.xlsx`` (or .csv),
``<vid>_label.csv`` and ``<vid>.mp4``; per-video emotion in ``<root>/emotion_labels.csv``.

The OpenPose table has no header; row i is frame i (0-based); 411 columns = 137 keypoints x
(x, y, confidence) in pixels. The label CSV has no header; rows ``class,start_frame,end_frame``
with 1-based class ids plus the code 99, 0-based inclusive frames. Clip ``<vid>_<row>``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.classes import NUM_CLASSES
from migalab.data.formats.errors import FormatError
from migalab.data.formats.light35 import LIGHT_TABLE_SUFFIXES, is_light_table, read_light_table
from migalab.data.formats.limits import MAX_LABEL_ROWS, check_text_table, check_xlsx
from migalab.data.record import UNKNOWN_LABEL, ClipRecord
from migalab.utils.io import atomic_write_text, default_file_mode

NUM_COLUMNS = 411
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


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

NUM_KEYPOINTS = NUM_COLUMNS // 3
SPLITS = ("train", "validate", "test")
DEFAULT_IMG_SHAPE = (720, 1280)
EMOTION_FILE = "emotion_labels.csv"
EMOTION_CODES = {"lose": 0, "win": 1}
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


# --------------------------------------------------------------------------------------------
# Emotion labels: <root>/emotion_labels.csv with header video_id,split,emotion (win / lose)
# --------------------------------------------------------------------------------------------


def _read_text_csv(path: Path) -> Any:
    """A headed CSV as a DataFrame of stripped-header string columns (empty cells ""), or a
    FormatError naming the file."""
    import pandas as pd

    if os.path.isfile(path):
        check_text_table(path, max_rows=MAX_LABEL_ROWS, what="csv file")
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig"
        )
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except Exception as exc:
        raise FormatError(path, f"unreadable csv ({type(exc).__name__}: {exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_emotion_labels(
    path: str | os.PathLike, column: str = "emotion", codes: Mapping[str, int] = EMOTION_CODES
) -> dict[str, int]:
    """Read the per-release emotion file (header ``video_id,split,emotion``).

    ``column`` / ``codes``: the label column and its accepted values (case-insensitive);
    :func:`read_video_labels` reads ``video_id,label`` files with them.

    Returns:
        ``{video_id: 1 for win, 0 for lose}``; video ids keep their leading zeros.

    Raises:
        FormatError: unreadable file, missing columns, an emotion other than win/lose, or one
            video listed twice with different emotions.
    """
    path = Path(path)
    frame = _read_text_csv(path)
    missing = {"video_id", column} - set(frame.columns)
    if missing:
        header = "video_id,split,emotion" if column == "emotion" else f"video_id,{column}"
        raise FormatError(path, f"header must be {header}; missing {sorted(missing)}", row=1)
    allowed = " or ".join(sorted(codes, reverse=True))  # win or lose (or 1 or 0)
    out: dict[str, int] = {}
    for i, (vid, emo) in enumerate(zip(frame["video_id"], frame[column], strict=True)):
        row = i + 2  # the header is row 1
        vid, emo = vid.strip(), emo.strip().lower()
        if not vid:
            raise FormatError(path, "empty video_id", row=row)
        if emo not in codes:
            raise FormatError(path, f"{column} {emo!r} is not {allowed}", row=row)
        code = codes[emo]
        if out.get(vid, code) != code:
            raise FormatError(path, f"video {vid} listed again with a different {column}", row=row)
        out[vid] = code
    return out


#: values of a ``video_id,label`` file (:func:`read_video_labels`): win = 1, lose = 0
VIDEO_LABEL_CODES = {"lose": 0, "win": 1, "0": 0, "1": 1}


def read_video_labels(path: str | os.PathLike) -> dict[str, int]:
    """Read a user's per-video emotion labels, header ``video_id,label``, label ``win``/``lose``
    or ``1``/``0`` (**win = 1, lose = 0**); other columns are ignored.

    Raises:
        FormatError: unreadable file, no ``video_id`` / ``label`` column, another label value, or
            a video listed twice with different labels.
    """
    return read_emotion_labels(path, column="label", codes=VIDEO_LABEL_CODES)


def read_video_subjects(path: str | os.PathLike) -> dict[str, str]:
    """Read which subject (player) each video shows: a CSV with ``video_id`` and ``subject``
    columns (other columns ignored, so a labels file may carry them), for subject-grouped
    leakage checks. The releases do not say; users who know (iMiGUE: 72 players) can.

    Returns:
        ``{video_id: subject}`` (strings; video ids keep their leading zeros).

    Raises:
        FormatError: unreadable file, no ``video_id`` / ``subject`` column, an empty value, or a
            video listed twice with different subjects.
    """
    path = Path(path)
    frame = _read_text_csv(path)
    missing = {"video_id", "subject"} - set(frame.columns)
    if missing:
        raise FormatError(path, f"needs columns video_id,subject; missing {sorted(missing)}", row=1)
    out: dict[str, str] = {}
    for i, (vid, subject) in enumerate(zip(frame["video_id"], frame["subject"], strict=True)):
        row = i + 2  # the header is row 1
        vid, subject = vid.strip(), subject.strip()
        if not vid or not subject:
            raise FormatError(path, "empty video_id or subject", row=row)
        if out.get(vid, subject) != subject:
            raise FormatError(path, f"video {vid} listed again with another subject", row=row)
        out[vid] = subject
    return out


def write_emotion_labels(
    path: str | os.PathLike, rows: Iterable[tuple[str, str, int | str]]
) -> Path:
    """Write ``video_id,split,emotion`` rows (emotion as ``win``/``lose`` or 1/0), atomically."""
    names = {v: k for k, v in EMOTION_CODES.items()}
    lines = ["video_id,split,emotion"]
    for vid, split, emo in rows:
        if isinstance(emo, str):
            emo_name = emo.strip().lower()
            if emo_name not in EMOTION_CODES:
                raise ValueError(f"emotion {emo!r} is not win or lose")
        else:
            emo_name = names[int(emo)]
        lines.append(f"{vid},{split},{emo_name}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------
# Release layout: <root>/<split>/<vid>/{<vid>_openpose.xlsx|.csv, <vid>_label.csv, <vid>.mp4}
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoFiles:
    """The files of one video folder of a MiGA 2025 release.

    ``table`` is None when the folder has neither ``<vid>_openpose.xlsx`` nor ``.csv`` (reading
    it then raises a FormatError); ``label`` and ``video`` are None when absent.
    """

    video_id: str
    split: str
    folder: Path
    table: Path | None
    label: Path | None
    video: Path | None

    def source_files(self) -> list[Path]:
        """The files a reader of this video uses (for fingerprints)."""
        return [p for p in (self.table, self.label, self.video) if p is not None]


def _find_table(folder: Path, vid: str) -> Path | None:
    for suffix in (".xlsx", ".csv"):  # xlsx is the release format; csv is the fallback
        exact = folder / f"{vid}_openpose{suffix}"
        if exact.is_file():
            return exact
        found = sorted(p for p in folder.glob(f"*openpose*{suffix}") if not p.name.startswith("."))
        if found:
            return found[0]
    for suffix in LIGHT_TABLE_SUFFIXES:  # the 2024-2026 35-joint tables
        if (folder / f"{vid}{suffix}").is_file():
            return folder / f"{vid}{suffix}"
    return None


def video_files(folder: str | os.PathLike, split: str = "") -> VideoFiles:
    """Locate table, label CSV and mp4 of one ``<vid>/`` folder (the video id is its name)."""
    folder = Path(folder)
    vid = folder.name
    label = folder / f"{vid}_label.csv"
    video = folder / f"{vid}.mp4"
    return VideoFiles(
        video_id=vid,
        split=split,
        folder=folder,
        table=_find_table(folder, vid),
        label=label if label.is_file() else None,
        video=video if video.is_file() else None,
    )


#: a release: one root folder, several (each split is taken from the first that holds it), or a
#: mapping split -> folder (the split's own folder of ``<vid>/`` folders, or a root holding it)
ReleaseRoot = str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike]


def release_roots(root: ReleaseRoot) -> list[Path]:
    """Every folder a release names (one for a single root), in order, without repeats."""
    if isinstance(root, Mapping):
        folders = list(root.values())
    elif isinstance(root, Sequence) and not isinstance(root, str):
        folders = list(root)
    else:
        folders = [root]
    return list(dict.fromkeys(Path(f) for f in folders))


def split_dir_candidates(root: ReleaseRoot, split: str) -> list[Path]:
    """Where the folder of ``split`` may be, in the order they are tried.

    Below a root: the suite's own layout (``<root>/<split>/``) and the official MiGA 2025
    archives as they unpack, with one or both archives under ``root``: ``imigue_data_phase1/
    datasets/imigue_skeleton_{train,validate}/`` and ``imigue_data_phase2/imigue_skeleton_test/``
    (also with ``root`` pointing inside an archive: ``datasets/imigue_skeleton_<split>/`` or
    ``imigue_skeleton_<split>/``). Several roots: each root's candidates in turn. A mapping:
    the split's folder below it, then the folder itself.
    """
    if isinstance(root, Mapping):
        if split not in root:
            return []
        folder = Path(root[split])
        return [*split_dir_candidates(folder, split), folder]
    if isinstance(root, Sequence) and not isinstance(root, str | os.PathLike):
        return [c for r in root for c in split_dir_candidates(r, split)]
    root = Path(root)
    official = f"imigue_skeleton_{split}"
    return [
        root / split,
        root / official,
        root / "datasets" / official,
        root / "imigue_data_phase1" / "datasets" / official,
        root / "imigue_data_phase2" / official,
        root / "imigue_data_phase2" / "datasets" / official,
    ]


def split_dir(root: ReleaseRoot, split: str) -> Path | None:
    """The folder holding the ``<vid>/`` folders of ``split`` (:func:`split_dir_candidates`), or
    None when the release has no such split."""
    for candidate in split_dir_candidates(root, split):
        if candidate.is_dir():
            return candidate
    return None


def find_videos(root: ReleaseRoot, split: str) -> list[VideoFiles]:
    """All video folders of one split (``<split folder>/<vid>/``, the split folder found by
    :func:`split_dir`: the suite's ``<root>/<split>/`` or the official archive names), sorted
    by video id.

    Returns an empty list when the split folder does not exist. Hidden folders are ignored.
    """
    folder = split_dir(root, split)
    if folder is None:
        return []
    folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [video_files(p, split) for p in folders]


def read_video_folder(
    folder: str | os.PathLike | VideoFiles,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    engine: str = "calamine",
    split: str | None = None,
    emotion: int | None = None,
    table: np.ndarray | None = None,
) -> list[ClipRecord]:
    """Read all clips of one MiGA 2025 video folder.

    Args:
        folder: the ``<vid>/`` folder (or its :class:`VideoFiles`).
        img_shape: (height, width) of the frames; the release is 720x1280.
        engine: xlsx engine for :func:`read_openpose_table`.
        split: stored in ``meta["split"]``.
        emotion: per-video emotion (1 win, 0 lose) copied into every clip.
        table: an already-read (T, 411) table to reuse instead of reading the file.

    Returns:
        One ClipRecord per label row, named ``<vid>_<row>`` (0-based row of the label CSV), with
        keypoint (1, T_clip, 137, 2) float32 pixels and keypoint_score (1, T_clip, 137) sliced
        from frames start..end inclusive; ``video_path`` is ``<vid>.mp4`` when present.
    """
    vf = folder if isinstance(folder, VideoFiles) else video_files(folder, split or "")
    split = split if split is not None else vf.split
    if table is None:
        if vf.table is None:
            raise FormatError(
                vf.folder,
                f"no {vf.video_id}_openpose.xlsx / .csv or {vf.video_id}_light_hand.csv in the folder",
            )
        table = read_openpose_table(vf.table, engine=engine)
    if vf.label is None:
        raise FormatError(vf.folder / f"{vf.video_id}_label.csv", "no such file")
    labels = read_label_csv(vf.label, num_frames=len(table))
    kps = table.reshape(len(table), NUM_KEYPOINTS, 3)
    records = []
    for row, (label, start, end) in enumerate(labels):
        seg = kps[start : end + 1]
        records.append(
            ClipRecord(
                name=f"{vf.video_id}_{row}",
                video_id=vf.video_id,
                start=start,
                end=end,
                label=label,
                keypoint=np.ascontiguousarray(seg[None, :, :, :2], dtype=np.float32),
                keypoint_score=np.ascontiguousarray(seg[None, :, :, 2], dtype=np.float32),
                img_shape=(int(img_shape[0]), int(img_shape[1])),
                layout="openpose137",
                video_path=str(vf.video) if vf.video is not None else None,
                emotion=emotion,
                meta={"split": split, "row": row, "source": str(vf.table)},
            )
        )
    return records


def read_release(
    root: str | os.PathLike,
    splits: Sequence[str] = SPLITS,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    engine: str = "calamine",
) -> Iterator[ClipRecord]:
    """Iterate the clips of a whole release, split by split and video by video.

    Emotion labels come from ``<root>/emotion_labels.csv`` when that file exists. This reads the
    spreadsheets directly (seconds per video); use ``migalab.data.prepare`` to build a cache once.
    """
    root = Path(root)
    emo_file = root / EMOTION_FILE
    emotions = read_emotion_labels(emo_file) if emo_file.is_file() else {}
    for split in splits:
        for vf in find_videos(root, split):
            yield from read_video_folder(
                vf, img_shape=img_shape, engine=engine, emotion=emotions.get(vf.video_id)
            )
