"""MiGA 2025 per-video emotion: ``<root>/emotion_labels.csv`` with header ``video_id,split,emotion`` (win / lose); a user's ``video_id,label`` file (win / lose or 1 / 0) and ``video_id,subject`` subjects."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from migalab.data.formats.errors import FormatError
from migalab.data.formats.limits import MAX_LABEL_ROWS, check_text_table
from migalab.utils.io import atomic_write_text

EMOTION_FILE = "emotion_labels.csv"


EMOTION_CODES = {"lose": 0, "win": 1}


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
