"""The one exception type raised for malformed release files, and the data-only unpickler."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migalab.errors import UserError


class FormatError(UserError, ValueError):
    """A release file is unreadable or breaks its format (a :class:`~migalab.errors.UserError`:
    console scripts print it as one line and exit 2; still a ``ValueError`` for callers).

    The message always names the file and, where it applies, the 1-based row as a spreadsheet
    shows it, plus what is wrong, on one line (line breaks of a wrapped library error are
    folded). ``path`` and ``row`` are also kept as attributes so callers (e.g. the prepare
    report) can tabulate problems.
    """

    def __init__(self, path: str | os.PathLike | None, message: str, row: int | None = None):
        self.path = None if path is None else str(path)
        self.row = row
        self.reason = " ".join(str(message).splitlines())
        where = self.path or "<unknown file>"
        if row is not None:
            where = f"{where}: row {row}"
        super().__init__(f"{where}: {self.reason}")

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


def _latin1_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` (NumPy array buffers) use it:
    ``encode(text, "latin1")`` only. Another codec is refused (looking a codec up imports its
    module, and some codecs are not data)."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(
            f"_codecs.encode({type(obj).__name__}, {encoding!r}, {errors!r}): a data pickle may "
            "only encode text as latin1 (how protocol 2 stores bytes)"
        )
    return obj.encode("latin-1")


def _bytes(*args: object) -> bytes:
    """``bytes`` as protocol-2 pickles of ``b""`` use it (``bytes()``); anything that would
    allocate from a number (``bytes(10**12)``) is refused."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytes(args[0])
    raise pickle.UnpicklingError("bytes(...) in a data pickle takes no argument or bytes")


#: the numpy.dtypes classes (NumPy 2 names; an older NumPy lacks some, which are then refused)
_NUMPY_DTYPE_CLASSES = (
    "BoolDType",
    "Int8DType",
    "ByteDType",
    "UInt8DType",
    "UByteDType",
    "Int16DType",
    "ShortDType",
    "UInt16DType",
    "UShortDType",
    "Int32DType",
    "IntDType",
    "UInt32DType",
    "UIntDType",
    "Int64DType",
    "LongDType",
    "UInt64DType",
    "ULongDType",
    "LongLongDType",
    "ULongLongDType",
    "Float16DType",
    "Float32DType",
    "Float64DType",
    "LongDoubleDType",
    "Complex64DType",
    "Complex128DType",
    "CLongDoubleDType",
    "ObjectDType",
    "BytesDType",
    "StrDType",
    "VoidDType",
    "DateTime64DType",
    "TimeDelta64DType",
    "StringDType",
)

#: exactly the globals a data pickle (pyskl annotations, 2023 label lists) may reference besides
#: plain Python containers: NumPy arrays, dtypes and scalars as NumPy 1 and 2 write them with
#: protocols 2-5. ``(module, name)`` pairs, no prefixes, no dotted names; a value is the object
#: to use instead of the real global (None: the real one).
_PICKLE_GLOBALS: dict[tuple[str, str], Callable[..., Any] | None] = {
    ("collections", "OrderedDict"): None,
    ("_codecs", "encode"): _latin1_encode,  # protocol-2 bytes
    ("__builtin__", "bytes"): _bytes,  # protocol-2 b""
    ("builtins", "bytes"): _bytes,
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
    ("numpy.core.multiarray", "_reconstruct"): None,  # NumPy 1 names
    ("numpy.core.multiarray", "scalar"): None,
    ("numpy.core.numeric", "_frombuffer"): None,
    ("numpy._core.multiarray", "_reconstruct"): None,  # NumPy 2 names
    ("numpy._core.multiarray", "scalar"): None,
    ("numpy._core.numeric", "_frombuffer"): None,  # protocol-5 arrays
    ("numpy._core._internal", "_convert_to_stringdtype_kwargs"): None,  # StringDType
    **{("numpy.dtypes", name): None for name in _NUMPY_DTYPE_CLASSES},
}


class _DataUnpickler(pickle.Unpickler):
    """Unpickles data only: plain containers, NumPy arrays, dtypes and scalars (no code runs).

    Every global is looked up in :data:`_PICKLE_GLOBALS` by its exact ``(module, name)``: a name
    with a dot (protocol 4 walks dotted names attribute by attribute, from where builtins are
    reachable) or any other module or name is refused before anything is imported.
    """

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global ``module.name`` (see the class doc); UnpicklingError otherwise."""
        key = (module, name)
        if "." in name or key not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"it references {module}.{name}; a data pickle may hold only containers, "
                "numbers, strings and NumPy arrays, and loading anything else could run code"
            )
        replacement = _PICKLE_GLOBALS[key]
        if replacement is not None:
            return replacement
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        """Persistent ids are refused (a data pickle has none)."""
        raise pickle.UnpicklingError("a data pickle has no persistent ids")


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
