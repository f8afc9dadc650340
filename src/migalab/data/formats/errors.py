"""The one exception type raised for malformed release files."""

from __future__ import annotations

import os
from pathlib import Path


class FormatError(ValueError):
    """A release file is unreadable or breaks its format.

    The message always names the file and, where it applies, the 1-based row as a spreadsheet
    shows it, plus what is wrong. ``path`` and ``row`` are also kept as attributes so callers
    (e.g. the prepare report) can tabulate problems.
    """

    def __init__(self, path: str | os.PathLike | None, message: str, row: int | None = None):
        self.path = None if path is None else str(path)
        self.row = row
        self.reason = message
        where = self.path or "<unknown file>"
        if row is not None:
            where = f"{where}: row {row}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):  # keep it picklable across process pools
        return (type(self), (self.path, self.reason, self.row))


def load_pickle(path: Path) -> object:
    """Unpickle ``path``; a missing or unreadable file raises :class:`FormatError` naming it."""
    import pickle

    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except Exception as exc:
        raise FormatError(path, f"unreadable pickle ({type(exc).__name__}: {exc})") from exc
