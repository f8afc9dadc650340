"""Size limits checked before a release file is parsed, so that a small hostile file cannot make a
reader allocate without bound (python-calamine aborts the whole process, Rust ``rust_oom``,
when a 5 KB xlsx places one cell at ``XFD9999999``: it allocates rows x columns cells of 32
bytes).

The limits comfortably cover the real releases: iMiGUE videos have up to tens of thousands of
frames (one table row each) of 411 columns; label files a few hundred rows.

* :func:`check_xlsx`: the zip's central directory (entry count, compression method, declared
  and actual uncompressed sizes, compression ratio), the first sheet's declared
  ``<dimension>`` and every cell / row reference of every entry, streamed (never the whole
  XML in memory), against :data:`MAX_TABLE_ROWS` x :data:`MAX_TABLE_COLUMNS`.
* :func:`check_text_table`: line count and widest line (fields) of a csv, streamed, before
  pandas or the csv module reads it whole.
* :func:`check_npy_header`: a ``.npy`` header's dtype and shape against the file size.
"""

from __future__ import annotations

import copy
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from migalab.data.formats.errors import FormatError

#: most rows (frames) a skeleton table may have: 100,000 frames is 55 min at 30 fps (iMiGUE
#: press conferences have up to tens of thousands of frames)
MAX_TABLE_ROWS = 100_000
#: most columns a table may span (a MiGA table has 411, a 35-joint table 106)
MAX_TABLE_COLUMNS = 512
#: most cells a spreadsheet may span, rows x columns (51.2 M cells: 1.6 GB in calamine)
MAX_TABLE_CELLS = MAX_TABLE_ROWS * MAX_TABLE_COLUMNS
#: most bytes of one csv line (64 per field: ``-1234.5678901234567,`` is 20)
MAX_CSV_LINE_BYTES = 64 * MAX_TABLE_COLUMNS
#: most rows of a label or emotion file (real ones: up to 282 intervals, 359 videos)
MAX_LABEL_ROWS = 100_000
#: most persons per clip of a clip-level release (the releases have 1; pyskl pads to a few)
MAX_PERSONS = 16
#: most joints per person (OpenPose has 137)
MAX_JOINTS = 512
#: most values (persons x frames x joints x 3) of one split of a clip-level release in the cache:
#: 2**31 float32 is 8.6 GB; all of iMiGUE's clips at 137 joints are about 0.4 G values
MAX_SPLIT_VALUES = 1 << 31
#: most annotations of a pyskl pickle (iMiGUE has 18.5 k clips)
MAX_ANNOTATIONS = 1_000_000
#: most entries of an xlsx zip (a workbook has about ten)
MAX_XLSX_ENTRIES = 1_000
#: most uncompressed bytes of one xlsx entry (64 bytes of sheet XML per allowed cell)
MAX_XLSX_ENTRY_BYTES = 64 * MAX_TABLE_CELLS
#: largest uncompressed / compressed ratio of an xlsx entry over :data:`RATIO_FLOOR_BYTES` (real
#: sheets compress 5-30x; deflate's own limit is ~1032x: zip bombs)
MAX_COMPRESSION_RATIO = 200
#: entries smaller than this are not ratio-checked (tiny XML parts compress very well)
RATIO_FLOOR_BYTES = 1 << 20
#: longest XML tag the reference scan accepts
MAX_TAG_BYTES = 1 << 16
_CHUNK = 1 << 20

#: ``<c>`` / ``<row>`` tags the fast pass looks at (each a regex with a literal start): a cell
#: whose tag does not start ``<c r="<ref>"`` with a column A..RZ (494) and a row of at most 5
#: digits, a row not ``<row r="<at most 5 digits>"``, and any namespace-prefixed tag. Real sheets
#: have none; a canonical one is parsed exactly, any other sends the entry to the tag-by-tag pass
_SUSPECT_TAGS = (
    re.compile(rb'<c(?! r="[A-Ra-r]?[A-Za-z]\d{1,5}")[\s/>]'),
    re.compile(rb'<row(?! r="\d{1,5}")[\s/>]'),
    re.compile(rb":(?:c|row)[\s/>]"),
)
_CANONICAL_REF = re.compile(rb'<(?:c|row) r="([A-Za-z]*\d*)"')
_TAG = re.compile(rb"<(/?)(?:[^\s<>/:!?]+:)?(c|row)(?=[\s/>])([^>]*)>")
_R_ATTR = re.compile(rb"""(?:^|\s)r\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_DIMENSION = re.compile(rb"""<(?:[^\s<>/:!?]+:)?dimension\s[^>]*?\bref\s*=\s*["']([^"']*)["']""")
_REF = re.compile(rb"([A-Za-z]*)(\d*)")


def _ref(value: bytes) -> tuple[int, int] | None:
    """A cell reference ``AB12`` (or a row number ``12``) as 1-based (row, column; 0 when it
    has no letters), or None when it is not one (calamine refuses those itself)."""
    m = _REF.fullmatch(value.strip())
    if m is None:
        return None
    col = 0
    for ch in m.group(1).upper():
        col = col * 26 + ch - 64
    return int(m.group(2) or 0), col


def _column_name(col: int) -> str:
    letters = ""
    while col > 0:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


class _Extent:
    """The largest row and column an entry's references reach; raises past the limits."""

    def __init__(self, path: Path, entry: str) -> None:
        self.path, self.entry = path, entry
        self.rows = self.cols = 0

    def add(self, row: int, col: int) -> None:
        self.rows, self.cols = max(self.rows, row), max(self.cols, col)
        if self.rows > MAX_TABLE_ROWS or self.cols > MAX_TABLE_COLUMNS:
            where = f"{_column_name(col)}{row}" if col else f"row {row}"
            raise FormatError(
                self.path,
                f"{self.entry} places a cell at {where}, beyond the {MAX_TABLE_ROWS} rows x "
                f"{MAX_TABLE_COLUMNS} columns a skeleton table may span (reading it would "
                "allocate every cell up to there)",
            )


def check_declared_size(path: str | os.PathLike, what: str, rows: int, cols: int) -> None:
    """Refuse a table that declares more than :data:`MAX_TABLE_ROWS` rows,
    :data:`MAX_TABLE_COLUMNS` columns or :data:`MAX_TABLE_CELLS` cells."""
    if rows > MAX_TABLE_ROWS or cols > MAX_TABLE_COLUMNS or rows * cols > MAX_TABLE_CELLS:
        raise FormatError(
            path,
            f"{what} declares {rows} rows x {cols} columns ({rows * cols} cells); a skeleton "
            f"table has at most {MAX_TABLE_ROWS} rows x {MAX_TABLE_COLUMNS} columns",
        )


def check_xlsx(path: str | os.PathLike) -> None:
    """Refuse an xlsx whose reading could allocate without bound, before any xlsx reader sees
    it: too many zip entries, an encrypted entry or one compressed other than stored / deflate,
    an entry whose declared or actual uncompressed size exceeds :data:`MAX_XLSX_ENTRY_BYTES` or
    whose compression ratio exceeds :data:`MAX_COMPRESSION_RATIO` (zip bombs), a sheet whose
    ``<dimension>`` declares too many cells, or any cell / row reference past
    :data:`MAX_TABLE_ROWS` x :data:`MAX_TABLE_COLUMNS` (what calamine allocates). Every entry is
    streamed once, a chunk at a time.

    Raises:
        FormatError: naming the file, the zip entry and the limit.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise FormatError(path, f"unreadable xlsx (not a zip workbook: {exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_XLSX_ENTRIES:
            raise FormatError(path, f"{len(infos)} zip entries (an xlsx has about ten)")
        for info in infos:
            _check_entry_header(path, info)
        for info in infos:
            _scan_entry(path, zf, info)


def _check_entry_header(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    if info.flag_bits & 0x1:
        raise FormatError(path, f"zip entry {name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise FormatError(path, f"zip entry {name} uses compression method {info.compress_type}")
    if info.file_size > MAX_XLSX_ENTRY_BYTES:
        limit = MAX_XLSX_ENTRY_BYTES
        raise FormatError(
            path, f"zip entry {name} declares {info.file_size} bytes (at most {limit})"
        )
    _check_ratio(path, name, info.file_size, info.compress_size)


def _check_ratio(path: Path, name: str, size: int, compressed: int) -> None:
    if size > RATIO_FLOOR_BYTES and size > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise FormatError(
            path,
            f"zip entry {name} expands {compressed} bytes to {size} (more than "
            f"{MAX_COMPRESSION_RATIO}x: a zip bomb)",
        )


def _scan_entry(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Stream one entry (past its declared size, which may lie) and check its references."""
    if not _scan_entry_pass(path, zf, info, canonical=True):
        _scan_entry_pass(path, zf, info, canonical=False)


def _scan_entry_pass(
    path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, canonical: bool
) -> bool:
    """One pass; False when the fast (canonical) pass meets a tag it cannot judge."""
    probe = copy.copy(info)
    probe.file_size = MAX_XLSX_ENTRY_BYTES + 1  # read what the stream holds, not what it says
    extent = _Extent(path, f"zip entry {info.filename}")
    row_index = col_index = 0  # calamine's position of a cell without a reference
    carry, total, first = b"", 0, True
    try:
        with zf.open(probe) as f:
            while True:
                chunk = f.read(_CHUNK)
                total += len(chunk)
                if total > info.file_size:
                    raise FormatError(
                        path,
                        f"zip entry {info.filename} holds more than the {info.file_size} bytes "
                        "it declares",
                    )
                buf = carry + chunk
                cut = buf.rfind(b"<") if chunk else len(buf)
                cut = len(buf) if cut < 0 else cut
                if len(buf) - cut > MAX_TAG_BYTES:
                    raise FormatError(
                        path, f"zip entry {info.filename}: an XML tag over {MAX_TAG_BYTES} bytes"
                    )
                part, carry = buf[:cut], buf[cut:]
                if first:
                    first = False
                    dim = _DIMENSION.search(part)
                    if dim is not None and (ref := _dimension(dim.group(1))) is not None:
                        check_declared_size(path, f"zip entry {info.filename}", *ref)
                if canonical:
                    for pattern in _SUSPECT_TAGS:
                        for m in pattern.finditer(part):
                            exact = _CANONICAL_REF.match(part, m.start())
                            if exact is None:
                                return False  # judged tag by tag
                            extent.add(*_ref(exact.group(1)))  # type: ignore[misc]
                else:
                    row_index, col_index = _scan_tags(part, extent, row_index, col_index)
                if not chunk:
                    break
    except FormatError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise FormatError(path, f"unreadable xlsx entry {info.filename} ({exc})") from None
    _check_ratio(path, info.filename, total, info.compress_size)
    return True


def _scan_tags(part: bytes, extent: _Extent, row_index: int, col_index: int) -> tuple[int, int]:
    """Follow calamine's cell positions tag by tag (a reference, else the running row / column
    index); self-closing tags count too (an over-estimate only)."""
    for m in _TAG.finditer(part):
        closing, name, attrs = m.group(1), m.group(2), m.group(3)
        if closing:
            if name == b"row":
                row_index, col_index = row_index + 1, 0
            else:
                col_index += 1
            continue
        attr = _R_ATTR.search(attrs)
        ref = None
        if attr is not None:
            ref = _ref(attr.group(1) if attr.group(1) is not None else attr.group(2))
        if name == b"row":
            if ref is not None:
                row_index = max(ref[0] - 1, 0)
            extent.add(row_index + 1, 0)
        else:
            if ref is not None and ref[1]:
                row, col_index = ref[0], ref[1] - 1
            else:
                row = row_index + 1
            extent.add(row, col_index + 1)
        if attrs.endswith(b"/"):  # <c .../> or <row .../>: also its end
            if name == b"row":
                row_index, col_index = row_index + 1, 0
            else:
                col_index += 1
    return row_index, col_index


def _dimension(ref: bytes) -> tuple[int, int] | None:
    """``A1:OU3`` -> (3, 411): the rows and columns a sheet declares from A1."""
    parts = [_ref(p) for p in ref.split(b":")]
    if not parts or any(p is None for p in parts):
        return None
    return max(p[0] for p in parts), max(p[1] for p in parts)  # type: ignore[index]


def check_split_size(
    path: str | os.PathLike, what: str, persons: int, frames: int, joints: int
) -> None:
    """Refuse clips whose stacked cache array (``persons x frames x joints x 3``) would exceed
    :data:`MAX_SPLIT_VALUES`, before it is allocated."""
    values = int(persons) * int(frames) * int(joints) * 3
    if values > MAX_SPLIT_VALUES:
        raise FormatError(
            path,
            f"{what}: {persons} persons x {frames} frames x {joints} joints x 3 = {values} values, "
            f"more than the {MAX_SPLIT_VALUES} a split of the cache may hold",
        )


def nested_shape(value: object) -> tuple[int, ...]:
    """The shape ``np.asarray(value)`` would have, without building it: an array's own shape,
    else the lengths of nested lists / tuples along their first elements (shared references in
    a pickle can make a tiny file describe a huge nested list)."""
    if isinstance(value, np.ndarray):
        return tuple(int(s) for s in value.shape)
    shape: list[int] = []
    while isinstance(value, list | tuple):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    if isinstance(value, np.ndarray):
        shape += [int(s) for s in value.shape]
    return tuple(shape)


# --------------------------------------------------------------------------------------------
# csv
# --------------------------------------------------------------------------------------------


def check_text_table(
    path: str | os.PathLike,
    max_rows: int = MAX_TABLE_ROWS,
    max_columns: int = MAX_TABLE_COLUMNS,
    max_line_bytes: int = MAX_CSV_LINE_BYTES,
    what: str = "table",
) -> None:
    """Refuse a csv with more than ``max_rows`` lines, a line of more than ``max_columns``
    fields (commas + 1) or more than ``max_line_bytes`` bytes, streamed a chunk at a time before
    any parser reads it whole (quoted commas and newlines count: an over-estimate only).

    Raises:
        FormatError: naming the file, the limit and the 1-based line that broke it.
    """
    path = Path(path)
    lines = 0  # complete lines so far
    line_bytes = line_commas = 0  # of the unfinished line
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                arr = np.frombuffer(chunk, np.uint8)
                newlines = np.flatnonzero(arr == 10)
                commas = np.concatenate([[0], np.cumsum(arr == 44)])
                if newlines.size:
                    ends = np.concatenate([newlines, [len(arr)]])
                    starts = np.concatenate([[0], newlines + 1])
                    sizes = ends - starts
                    fields = commas[ends] - commas[starts]
                    sizes[0] += line_bytes
                    fields[0] += line_commas
                    _check_lines(
                        path, what, lines, sizes[:-1], fields[:-1], max_columns, max_line_bytes
                    )
                    lines += newlines.size
                    line_bytes, line_commas = int(sizes[-1]), int(fields[-1])
                else:
                    line_bytes += len(arr)
                    line_commas += int(commas[-1])
                if line_bytes > max_line_bytes or line_commas + 1 > max_columns:
                    _check_lines(
                        path,
                        what,
                        lines,
                        np.array([line_bytes]),
                        np.array([line_commas]),
                        max_columns,
                        max_line_bytes,
                    )
                if lines > max_rows:
                    raise FormatError(path, f"{what} has more than {max_rows} lines")
    except OSError as exc:
        raise FormatError(path, f"unreadable csv ({type(exc).__name__}: {exc})") from None
    if lines + (line_bytes > 0) > max_rows:
        raise FormatError(path, f"{what} has more than {max_rows} lines")


def _check_lines(
    path: Path,
    what: str,
    before: int,
    sizes: np.ndarray,
    commas: np.ndarray,
    max_columns: int,
    max_line_bytes: int,
) -> None:
    bad = np.flatnonzero((sizes > max_line_bytes) | (commas + 1 > max_columns))
    if bad.size:
        i = int(bad[0])
        raise FormatError(
            path,
            f"{what} line {before + i + 1} has {int(commas[i]) + 1} fields in {int(sizes[i])} "
            f"bytes (at most {max_columns} fields, {max_line_bytes} bytes)",
        )


# --------------------------------------------------------------------------------------------
# npy
# --------------------------------------------------------------------------------------------


def check_npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """The (shape, dtype) a ``.npy`` header declares, checked before the array is loaded: a
    numeric (not object) dtype and exactly as many data bytes in the file as the shape needs.

    Raises:
        FormatError: unreadable header, an object / structured dtype, or a size mismatch.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # pragma: no cover - read_magic refuses other versions
                raise ValueError(f"npy version {version}")
            offset = f.tell()
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise FormatError(path, f"unreadable npy header ({type(exc).__name__}: {exc})") from None
    del fortran
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise FormatError(path, f"npy dtype {dtype} is not a numeric array")
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = path.stat().st_size - offset
    if need != have:
        raise FormatError(
            path,
            f"npy header declares {tuple(shape)} {dtype} ({need} bytes) but the file holds "
            f"{have} data bytes",
        )
    return tuple(int(s) for s in shape), dtype
