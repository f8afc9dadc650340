"""The one exception type raised for malformed release files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any


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


def class_id(path: Path | str, item: str, value: object, num_classes: int) -> int:
    """``value`` as a 0-based class id in ``0..num_classes-1`` (or -1: unknown); anything else
    raises :class:`FormatError` naming ``item`` of ``path`` (a raw release id such as 99 is the
    usual cause: the 0-based id is ``k - 1``, and ``99 -> 31``)."""
    try:
        label = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise FormatError(path, f"{item}: label {value!r} is not an integer") from None
    if not -1 <= label < num_classes:
        raise FormatError(
            path,
            f"{item}: label {label} outside 0..{num_classes - 1} (-1 = unknown); raw release ids "
            f"(1-based, 99) must be converted (k -> k-1, 99 -> {num_classes - 1})",
        )
    return label


#: what a data pickle (pyskl annotations, 2023 label lists) may reference besides plain Python
#: containers: NumPy arrays, dtypes and scalars (``_codecs.encode`` carries array bytes in
#: protocol-2 pickles). Anything else -- a function, a class with side effects -- is refused.
_PICKLE_GLOBALS = frozenset({
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # protocol-5 arrays
    ("numpy._core.numeric", "_frombuffer"),
})  # fmt: skip


class _DataUnpickler(pickle.Unpickler):
    """Unpickles data only: plain containers, NumPy arrays and scalars (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_GLOBALS or module == "numpy.dtypes":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"it references {module}.{name}; a data pickle may hold only containers, numbers, "
            f"strings and NumPy arrays, and loading anything else could run code"
        )


def load_pickle(path: Path) -> object:
    """Unpickle the data file ``path`` without running code from it.

    Only plain containers, numbers, strings and NumPy arrays are rebuilt (the pyskl annotation
    and 2023 label pickles hold nothing else); a missing, unreadable or code-carrying file
    raises :class:`FormatError` naming it.
    """
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f).load()
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except Exception as exc:
        raise FormatError(path, f"unreadable pickle ({type(exc).__name__}: {exc})") from exc
