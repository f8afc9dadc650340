"""Declared and referenced sizes are checked before a reader allocates them: xlsx (zip entries,
``<dimension>``, cell references), csv (lines, fields), npy headers, pyskl annotations; each
limit at its boundary, and one bad video never takes the others down."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats import limits
from migalab.data.formats.errors import FormatError
from migalab.data.formats.light35 import read_light_table
from migalab.data.formats.limits import (
    MAX_TABLE_COLUMNS,
    MAX_TABLE_ROWS,
    check_npy_header,
    check_text_table,
    check_xlsx,
)
from migalab.data.formats.miga2025 import read_openpose_table
from migalab.data.formats.npy2023 import read_npy2023
from migalab.data.formats.pyskl import read_pyskl
from migalab.data.prepare import prepare_release
from migalab.data.prepare.clip_release import stack_clips
from tests.data.formats.hostile import (
    base_xlsx,
    far_cell_xlsx,
    lying_size_zip,
    rewrite_sheet,
    zip_bomb_xlsx,
)


@pytest.fixture
def xlsx(tmp_path: Path) -> Path:
    return base_xlsx(tmp_path / "base.xlsx")


# -- xlsx ---------------------------------------------------------------------------------------


def test_a_real_table_passes_and_reads(xlsx: Path, tmp_path: Path) -> None:
    check_xlsx(xlsx)
    assert read_openpose_table(xlsx).shape == (2, 411)
    import pandas as pd  # an openpyxl-written workbook (other writer, same checks)

    other = tmp_path / "openpyxl.xlsx"
    pd.DataFrame(np.ones((3, 411))).to_excel(other, header=False, index=False, engine="openpyxl")
    check_xlsx(other)
    assert read_openpose_table(other).shape == (3, 411)


def test_a_far_cell_aborts_calamine_but_is_refused_first(xlsx: Path, tmp_path: Path) -> None:
    """The hostile file is real: python-calamine kills the interpreter (Rust out of memory,
    SIGABRT) on it; the reader refuses it first, naming the file and the cell."""
    bomb = far_cell_xlsx(xlsx, tmp_path / "0001_openpose.xlsx")
    assert bomb.stat().st_size < 10_000
    code = (
        "from python_calamine import CalamineWorkbook\n"
        f"CalamineWorkbook.from_path({str(bomb)!r}).get_sheet_by_index(0).to_python()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode != 0 and b"memory allocation" in proc.stderr
    with pytest.raises(FormatError, match="XFD999999") as err:
        read_openpose_table(bomb)
    assert str(bomb) in str(err.value)


def test_a_declared_dimension_past_the_limits_is_refused(xlsx: Path, tmp_path: Path) -> None:
    bomb = rewrite_sheet(xlsx, tmp_path / "dim.xlsx", dimension="A1:XFD9999999")
    with pytest.raises(FormatError, match="declares 9999999 rows x 16384 columns"):
        read_openpose_table(bomb)
    ok = rewrite_sheet(xlsx, tmp_path / "ok.xlsx", dimension=f"A1:OU{MAX_TABLE_ROWS}")
    check_xlsx(ok)  # the largest real-shaped table (exactly at the row limit)
    wide = rewrite_sheet(xlsx, tmp_path / "wide.xlsx", dimension=f"A1:SS{MAX_TABLE_ROWS}")
    with pytest.raises(FormatError, match="declares"):  # 513 columns
        check_xlsx(wide)


@pytest.mark.parametrize("prefix", ["", "x:"], ids=["canonical", "prefixed"])
@pytest.mark.parametrize(
    ("ref", "ok"),
    [
        (f"A{MAX_TABLE_ROWS}", True),
        (f"A{MAX_TABLE_ROWS + 1}", False),
        ("SR1", True),  # column 512
        ("SS1", False),  # column 513
        ("RZ1", True),  # the last column the fast pass skips (494)
        ("AAA1", False),
        ("A0000001", True),  # leading zeros: row 1
        ("a99999", True),  # lower case, as calamine reads it
        ("xfd1", False),
    ],
)
def test_cell_references_at_the_limits(
    xlsx: Path, tmp_path: Path, ref: str, ok: bool, prefix: str
) -> None:
    """Each reference exactly at / one past the row and column limits, in canonical
    ``<c r=...>`` form (fast pass) and with a namespace prefix (tag-by-tag pass)."""
    row = "".join(ch for ch in ref if ch.isdigit())
    extra = f'<{prefix}row r="{row}"><{prefix}c r="{ref}"><v>1</v></{prefix}c></{prefix}row>'
    path = rewrite_sheet(xlsx, tmp_path / "t.xlsx", extra=extra)
    if ok:
        check_xlsx(path)
    else:
        with pytest.raises(FormatError, match="beyond"):
            check_xlsx(path)


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ("<row>" + "<c><v>1</v></c>" * MAX_TABLE_COLUMNS + "</row>", True),
        ("<row>" + "<c><v>1</v></c>" * (MAX_TABLE_COLUMNS + 1) + "</row>", False),
        ('<row r="3"><c s="0" r="SS3"><v>1</v></c></row>', False),  # r not first
        ("<row r=\"3\"><c r = 'XFD3'><v>1</v></c></row>", False),  # spaces, single quotes
        (f'<row r="{MAX_TABLE_ROWS}"/><row><c><v>1</v></c></row>', False),  # running row index
        (f'<row r="{MAX_TABLE_ROWS - 1}"/><row><c><v>1</v></c></row>', True),
    ],
)
def test_cells_without_a_plain_reference(xlsx: Path, tmp_path: Path, body: str, ok: bool) -> None:
    """Cells placed by calamine's running row / column index or written with another attribute
    order or quoting are followed tag by tag."""
    path = rewrite_sheet(xlsx, tmp_path / "t.xlsx", sheet_data=body)
    if ok:
        check_xlsx(path)
    else:
        with pytest.raises(FormatError, match="beyond"):
            check_xlsx(path)


def test_zip_bombs_and_lying_sizes(xlsx: Path, tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="zip bomb"):
        read_openpose_table(zip_bomb_xlsx(xlsx, tmp_path / "bomb.xlsx"))
    with pytest.raises(FormatError, match="holds more than"):
        check_xlsx(lying_size_zip(xlsx, tmp_path / "lying.xlsx"))
    (tmp_path / "notzip.xlsx").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FormatError, match="notzip.xlsx: unreadable xlsx"):
        read_openpose_table(tmp_path / "notzip.xlsx")


def test_the_compression_ratio_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    path = tmp_path / "r.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.bin", bytes(2 << 20))
    monkeypatch.setattr(limits, "MAX_COMPRESSION_RATIO", 1)
    check_xlsx(path)  # stored: exactly 1x
    monkeypatch.setattr(limits, "RATIO_FLOOR_BYTES", 0)
    check_xlsx(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.bin", bytes(2 << 20))
    with pytest.raises(FormatError, match="zip bomb"):
        check_xlsx(path)


# -- csv ----------------------------------------------------------------------------------------


def test_csv_line_and_field_limits(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,2,3\n4,5,6\n7,8,9")  # 3 lines, the last without a newline
    check_text_table(path, max_rows=3, max_columns=3, max_line_bytes=5)
    with pytest.raises(FormatError, match="more than 2 lines"):
        check_text_table(path, max_rows=2)
    with pytest.raises(FormatError, match="line 1 has 3 fields"):
        check_text_table(path, max_columns=2)
    with pytest.raises(FormatError, match="line 1 has 3 fields in 5 bytes"):
        check_text_table(path, max_line_bytes=4)
    path.write_text("1,2\n" * 3)
    check_text_table(path, max_rows=3)
    with pytest.raises(FormatError, match="more than 2 lines"):
        check_text_table(path, max_rows=2)


def test_a_wide_line_is_found_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "_CHUNK", 7)
    path = tmp_path / "t.csv"
    path.write_text("1,2\n" + "," * 20 + "\n3,4\n")
    check_text_table(path, max_columns=21)
    with pytest.raises(FormatError, match="line 2 has 21 fields"):
        check_text_table(path, max_columns=20)


def test_a_csv_table_too_wide_is_refused_before_pandas(tmp_path: Path) -> None:
    path = tmp_path / "0001_openpose.csv"
    path.write_text("," * MAX_TABLE_COLUMNS + "\n")
    with pytest.raises(FormatError, match=f"{MAX_TABLE_COLUMNS + 1} fields"):
        read_openpose_table(path)


def test_a_light_table_frame_index_is_bounded(tmp_path: Path) -> None:
    row = ",".join(["1"] * 105)
    path = tmp_path / "0001_light_hand.csv"
    path.write_text(f"{MAX_TABLE_ROWS - 1},{row}\n")
    assert read_light_table(path).shape == (MAX_TABLE_ROWS, 411)
    path.write_text(f"{MAX_TABLE_ROWS},{row}\n")
    with pytest.raises(FormatError, match="past the"):
        read_light_table(path)


# -- npy ----------------------------------------------------------------------------------------


def _npy_pair(tmp_path: Path, shape: tuple[int, ...]) -> tuple[Path, Path]:
    data, label = tmp_path / "train_data.npy", tmp_path / "train_label.pkl"
    np.save(data, np.zeros(shape, np.float32))
    label.write_bytes(pickle.dumps(([f"s_{i}" for i in range(shape[0])], [0] * shape[0])))
    return data, label


@pytest.mark.parametrize(("channels", "ok"), [(2, False), (3, True), (4, False)])
def test_npy2023_channels(tmp_path: Path, channels: int, ok: bool) -> None:
    data, label = _npy_pair(tmp_path, (2, channels, 5, 22, 1))
    if ok:
        assert len(read_npy2023(data, label)) == 2
    else:
        with pytest.raises(FormatError, match=r"expected \(N, 3, T, 22, M\)"):
            read_npy2023(data, label)


def test_npy_header_is_checked_against_the_file(tmp_path: Path) -> None:
    data, label = _npy_pair(tmp_path, (2, 3, 5, 22, 1))
    raw = data.read_bytes().replace(b"(2, 3, 5, 22, 1)", b"(9999999, 3, 5, 22, 1)")
    data.write_bytes(raw)
    with pytest.raises(FormatError, match="declares .* but the file holds"):
        read_npy2023(data, label)
    np.save(data, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="not a numeric array"):
        check_npy_header(data)
    data, label = _npy_pair(tmp_path, (1, 3, 5, 22, limits.MAX_PERSONS + 1))
    with pytest.raises(FormatError, match="persons"):
        read_npy2023(data, label)


# -- pyskl --------------------------------------------------------------------------------------


def _ann(name: str, keypoint: object, t: int) -> dict:
    return {"frame_dir": name, "label": 1, "img_shape": (720, 1280), "total_frames": t,
            "keypoint": keypoint, "keypoint_score": np.ones((1, t, 22), np.float32)}  # fmt: skip


def test_pyskl_shared_references_cannot_blow_up(tmp_path: Path) -> None:
    """A small pickle whose keypoint is one frame referenced once per frame (the pickle memo:
    a few bytes each) is refused by its shape, before NumPy builds it."""
    frame = [[1.0, 2.0]] * 22
    t = MAX_TABLE_ROWS + 1
    path = tmp_path / "a.pkl"
    ann = _ann("a_1", [[frame] * t], t) | {"keypoint_score": np.ones((1, 1, 22), np.float32)}
    path.write_bytes(pickle.dumps({"annotations": [ann]}))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(FormatError, match="beyond"):
        read_pyskl(path)


def test_pyskl_split_total_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kp = np.zeros((1, 10, 22, 2), np.float32)
    anns = [_ann(f"a_{i}", kp, 10) for i in range(3)]
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"annotations": anns}))
    monkeypatch.setattr(limits, "MAX_SPLIT_VALUES", 1 * 30 * 22 * 3)
    records = read_pyskl(path)["all"]
    assert len(records) == 3 and stack_clips(records)[0].shape == (1, 30, 22, 3)
    monkeypatch.setattr(limits, "MAX_SPLIT_VALUES", 1 * 30 * 22 * 3 - 1)
    with pytest.raises(FormatError, match="more than the"):
        read_pyskl(path)
    with pytest.raises(FormatError, match="more than the"):
        stack_clips(records)


def test_pyskl_malformed_fields_are_format_errors(tmp_path: Path) -> None:
    ann = _ann("a_1", np.zeros((1, 4, 22, 2), np.float32), 4)
    ann["total_frames"] = "9" * 5000  # int() refuses it
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"annotations": [ann]}))
    with pytest.raises(FormatError, match="annotation 0"):
        read_pyskl(path)


# -- one bad video ------------------------------------------------------------------------------


def test_a_bomb_video_is_reported_and_the_others_converted(
    tiny_release: Path, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    shutil.copytree(tiny_release, release)
    folder = sorted((release / "train").iterdir())[0]
    bomb = far_cell_xlsx(base_xlsx(tmp_path / "b.xlsx"), folder / f"{folder.name}_openpose.xlsx")
    result = prepare_release(release, tmp_path / "cache", splits=["train"], progress=False)
    assert result.complete and result.num_videos == 3
    assert [f for f, _ in result.skipped] == [str(bomb.resolve())]
    assert "XFD999999" in result.skipped[0][1]


# -- every limit's exact message, at its boundary (mutation testing: scripts/mutation.py) ---------


def _refused(call, path: Path, reason: str) -> None:  # noqa: ANN001
    """``call()`` raises a FormatError naming ``path`` with exactly ``reason``."""
    with pytest.raises(FormatError) as err:
        call()
    assert err.value.path == str(path) and err.value.reason == reason


def _zip(path: Path, entries: dict[str, bytes], method: int = 8) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


def test_whole_messages_of_the_dimension_and_ratio_refusals(xlsx: Path, tmp_path: Path) -> None:
    import zipfile

    dim = rewrite_sheet(xlsx, tmp_path / "dim.xlsx", dimension="A1:XFD9999999")
    _refused(lambda: check_xlsx(dim), dim, "zip entry xl/worksheets/sheet1.xml declares 9999999 "
             f"rows x 16384 columns ({9999999 * 16384} cells); a skeleton table has at most 100000 "
             "rows x 512 columns")  # fmt: skip
    # a <dimension> that is not a range of references declares nothing
    check_xlsx(_zip(tmp_path / "bad.xlsx", {"a.xml": b'<a><dimension ref="A1:1A"/><b/>'}))
    bomb = zip_bomb_xlsx(xlsx, tmp_path / "bomb.xlsx")
    with zipfile.ZipFile(bomb) as z:
        packed = z.getinfo("xl/media/image1.bin").compress_size
    _refused(lambda: check_xlsx(bomb), bomb, f"zip entry xl/media/image1.bin expands {packed} "
             f"bytes to {64 << 20} (more than 200x: a zip bomb)")  # fmt: skip


def test_declared_size_at_its_limits() -> None:
    limits.check_declared_size("t.xlsx", "sheet", MAX_TABLE_ROWS, MAX_TABLE_COLUMNS)  # at both
    for rows, cols in ((MAX_TABLE_ROWS + 1, 1), (1, MAX_TABLE_COLUMNS + 1)):
        _refused(lambda r=rows, c=cols: limits.check_declared_size("t.xlsx", "sheet", r, c),
                 Path("t.xlsx"), f"sheet declares {rows} rows x {cols} columns ({rows * cols} "
                 f"cells); a skeleton table has at most {MAX_TABLE_ROWS} rows x "
                 f"{MAX_TABLE_COLUMNS} columns")  # fmt: skip


def test_zip_entry_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    path = _zip(tmp_path / "e.xlsx", {"a.xml": b"<a/>"})
    raw = bytearray(path.read_bytes())  # set the encryption bit (local header and directory)
    raw[6] |= 1
    raw[raw.rfind(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "enc.xlsx").write_bytes(bytes(raw))
    _refused(lambda: check_xlsx(tmp_path / "enc.xlsx"), tmp_path / "enc.xlsx",
             "zip entry a.xml is encrypted")  # fmt: skip
    raw[6] &= ~1
    raw[raw.rfind(b"PK\x01\x02") + 8] &= ~1
    raw[6] |= 2  # another flag bit (deflate options): not encryption
    (tmp_path / "flag2.xlsx").write_bytes(bytes(raw))
    check_xlsx(tmp_path / "flag2.xlsx")
    bz = _zip(tmp_path / "bz.xlsx", {"a.xml": b"<a/>"}, zipfile.ZIP_BZIP2)
    _refused(lambda: check_xlsx(bz), bz, "zip entry a.xml uses compression method 12")
    data = b"<a>" + b"x" * 997  # 1000 bytes
    path = _zip(tmp_path / "s.xlsx", {"a.xml": data}, zipfile.ZIP_STORED)
    monkeypatch.setattr(limits, "MAX_XLSX_ENTRY_BYTES", 1000)
    check_xlsx(path)  # exactly at the limit (and read in full: the stream is not cut short)
    monkeypatch.setattr(limits, "MAX_XLSX_ENTRY_BYTES", 999)
    _refused(lambda: check_xlsx(path), path, "zip entry a.xml declares 1000 bytes (at most 999)")


def test_zip_entry_count_and_ratio_at_their_limits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _zip(tmp_path / "n.xlsx", {f"{i}.xml": b"<a/>" for i in range(3)})
    monkeypatch.setattr(limits, "MAX_XLSX_ENTRIES", 3)
    check_xlsx(path)
    monkeypatch.setattr(limits, "MAX_XLSX_ENTRIES", 2)
    _refused(lambda: check_xlsx(path), path, "3 zip entries (an xlsx has about ten)")
    p = Path("r.xlsx")
    monkeypatch.setattr(limits, "RATIO_FLOOR_BYTES", 201)
    limits._check_ratio(p, "a.xml", 201, 1)  # at the floor: not checked
    monkeypatch.setattr(limits, "RATIO_FLOOR_BYTES", 0)
    limits._check_ratio(p, "a.xml", 200, 1)  # exactly 200x
    limits._check_ratio(p, "a.xml", 200, 0)  # nothing compressed counts as one byte
    _refused(lambda: limits._check_ratio(p, "a.xml", 201, 1), p,
             "zip entry a.xml expands 1 bytes to 201 (more than 200x: a zip bomb)")  # fmt: skip
    _refused(lambda: limits._check_ratio(p, "a.xml", 201, 0), p,
             "zip entry a.xml expands 0 bytes to 201 (more than 200x: a zip bomb)")  # fmt: skip


def test_the_stream_is_read_past_its_declared_size_chunk_by_chunk(
    xlsx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "_CHUNK", 8)  # chunks smaller than the 16 bytes declared
    lying = lying_size_zip(xlsx, tmp_path / "lying.xlsx")
    _refused(lambda: check_xlsx(lying), lying, "zip entry xl/worksheets/sheet1.xml holds more "
             "than the 16 bytes it declares")  # fmt: skip
    broken = tmp_path / "crc.xlsx"  # a damaged stream: unreadable, named
    raw = bytearray(_zip(tmp_path / "c.xlsx", {"a.xml": b"<a>" + b"x" * 50}, 0).read_bytes())
    raw[40] ^= 0xFF
    broken.write_bytes(bytes(raw))
    _refused(lambda: check_xlsx(broken), broken,
             "unreadable xlsx entry a.xml (Bad CRC-32 for file 'a.xml')")  # fmt: skip


def test_a_tag_longer_than_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The distance from one ``<`` to the next is what the scan carries between chunks."""
    monkeypatch.setattr(limits, "_CHUNK", 1)
    path = _zip(tmp_path / "t.xlsx", {"a.xml": b"<a>" + b"x" * 20 + b"<b/>"})
    monkeypatch.setattr(limits, "MAX_TAG_BYTES", 23)
    check_xlsx(path)
    monkeypatch.setattr(limits, "MAX_TAG_BYTES", 22)
    _refused(lambda: check_xlsx(path), path, "zip entry a.xml: an XML tag over 22 bytes")


def test_the_last_tag_and_later_chunks_are_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beyond = ("beyond the 100000 rows x 512 columns a skeleton table may span (reading it would "
              "allocate every cell up to there)")  # fmt: skip
    path = _zip(tmp_path / "last.xlsx", {"a.xml": b'<x><c r="XFD1">'})  # ends on the tag
    _refused(lambda: check_xlsx(path), path, f"zip entry a.xml places a cell at XFD1, {beyond}")
    monkeypatch.setattr(limits, "_CHUNK", 16)
    body = b"<a>" + b"<b/>" * 20 + b'<row r="1"><c r="SS1"/></row>'
    path = _zip(tmp_path / "late.xlsx", {"a.xml": body})
    _refused(lambda: check_xlsx(path), path, f"zip entry a.xml places a cell at SS1, {beyond}")


@pytest.mark.parametrize(
    ("body", "rows", "cols", "refusal"),
    [
        ("<x:row><x:c/></x:row>" * 3, 3, 1, None),  # running row index
        ("<x:row><x:c/></x:row>" * 4, 3, 1, "row 4"),
        ("<x:row>" + "<x:c/>" * 3 + "</x:row>" * 2, 3, 3, None),  # running column index
        ("<x:row>" + "<x:c/>" * 4 + "</x:row>", 3, 3, "D1"),
        ("<x:row>" + "<x:c></x:c>" * 3 + "</x:row>" + "<x:row><x:c></x:c></x:row>", 3, 3, None),
        ("<x:row>" + "<x:c></x:c>" * 4 + "</x:row>", 3, 3, "D1"),
        ("<x:row/>" + "<x:c/>" * 3, 3, 3, None),  # a self-closing row resets the column
        ('<x:row r="1"><x:c/></x:row>', 1, 1, None),
        ('<x:row r="0"><x:c/></x:row>', 1, 1, None),
        ('<x:row r="4"/>', 3, 1, "row 4"),
        ('<x:row r="3"/><x:c/>', 3, 1, "A4"),  # a cell after row 3 is on row 4
        ('<x:row><x:c r="B1"/></x:row>', 1, 2, None),
        ('<x:row><x:c r="B1"/><x:c/></x:row>', 1, 2, "C1"),  # the next column after B
    ],
)
def test_the_tag_by_tag_pass_follows_calamines_positions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, rows: int, cols: int,
    refusal: str | None,
) -> None:  # fmt: skip
    monkeypatch.setattr(limits, "MAX_TABLE_ROWS", rows)
    monkeypatch.setattr(limits, "MAX_TABLE_COLUMNS", cols)
    path = _zip(tmp_path / "t.xlsx", {"a.xml": body.encode()})
    if refusal is None:
        check_xlsx(path)
    else:
        _refused(lambda: check_xlsx(path), path, f"zip entry a.xml places a cell at {refusal}, "
                 f"beyond the {rows} rows x {cols} columns a skeleton table may span (reading "
                 "it would allocate every cell up to there)")  # fmt: skip


def test_references_and_column_names() -> None:
    assert limits._ref(b"SS") == (0, 513) and limits._ref(b"12") == (12, 0)
    assert limits._ref(b"1A") is None
    assert [limits._column_name(c) for c in (1, 26, 27, 512, 16384)] == [
        "A", "Z", "AA", "SR", "XFD"]  # fmt: skip


def test_nested_shape() -> None:
    assert limits.nested_shape([]) == (0,)
    assert limits.nested_shape([np.zeros((2, 3))]) == (1, 2, 3)
    assert limits.nested_shape(([[1, 2]],)) == (1, 1, 2)
    assert limits.nested_shape(np.zeros((4, 0))) == (4, 0)


def test_csv_limits_at_their_boundaries_and_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("1,2\n1,2,3\n")  # the second line of a chunk
    _refused(lambda: check_text_table(path, max_columns=2), path,
             f"table line 2 has 3 fields in 5 bytes (at most 2 fields, {limits.MAX_CSV_LINE_BYTES} "
             "bytes)")  # fmt: skip
    path.write_text("1,2\n" + "x" * 10)  # the last line, without a newline
    check_text_table(path, max_line_bytes=10)
    _refused(lambda: check_text_table(path, max_line_bytes=9, what="labels"), path,
             "labels line 2 has 1 fields in 10 bytes (at most 512 fields, 9 bytes)")  # fmt: skip
    path.write_text("1\n" + "1,2,3")
    check_text_table(path, max_columns=3)
    _refused(lambda: check_text_table(path, max_columns=2), path,
             f"table line 2 has 3 fields in 5 bytes (at most 2 fields, {limits.MAX_CSV_LINE_BYTES} "
             "bytes)")  # fmt: skip
    path.write_text("1\n1\n1")  # a last line of one byte counts
    check_text_table(path, max_rows=3)
    _refused(lambda: check_text_table(path, max_rows=2), path, "table has more than 2 lines")
    monkeypatch.setattr(limits, "_CHUNK", 7)
    path.write_text("x" * 20)  # one line over three chunks
    check_text_table(path, max_line_bytes=20)
    _refused(lambda: check_text_table(path, max_line_bytes=19), path,
             "table line 1 has 1 fields in 20 bytes (at most 512 fields, 19 bytes)")  # fmt: skip
    path.write_text("a\n" + "x" * 10 + "\n")  # a line that ends in a later chunk
    check_text_table(path, max_line_bytes=10)
    _refused(lambda: check_text_table(path, max_line_bytes=9), path,
             "table line 2 has 1 fields in 10 bytes (at most 512 fields, 9 bytes)")  # fmt: skip
    path.write_text("1\n" * 8)  # lines counted over chunks
    check_text_table(path, max_rows=8)
    _refused(lambda: check_text_table(path, max_rows=7), path, "table has more than 7 lines")
    with pytest.raises(FormatError) as err:
        check_text_table(tmp_path)  # a folder
    assert err.value.path == str(tmp_path)
    assert err.value.reason.startswith("unreadable csv (IsADirectoryError: ")


# NumPy re-parses headers it cannot read at once (large numbers, a malformed one), and says so
@pytest.mark.filterwarnings("ignore:Reading `.npy` or `.npz` file required:UserWarning")
def test_npy_headers(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    for version in ((1, 0), (2, 0), (3, 0)):
        with open(path, "wb") as f:
            np.lib.format.write_array(f, np.zeros((2, 3), np.float32), version=version)
        assert check_npy_header(path) == ((2, 3), np.dtype(np.float32))
    np.save(path, np.zeros(2, bool))
    assert check_npy_header(path) == ((2,), np.dtype(bool))
    for dtype in ("<U3", "<M8[s]", "complex64"):
        np.save(path, np.zeros(2, dtype))
        _refused(lambda: check_npy_header(path), path,
                 f"npy dtype {np.dtype(dtype)} is not a numeric array")  # fmt: skip
    with open(path, "wb") as f:  # 2**64 values of 4 bytes: int64 arithmetic would wrap to 0
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (2**32, 2**32)})  # fmt: skip
    _refused(lambda: check_npy_header(path), path, f"npy header declares {(2**32, 2**32)} "
             f"float32 ({2**66} bytes) but the file holds 0 data bytes")  # fmt: skip
    _refused(lambda: check_npy_header(tmp_path / "no.npy"), tmp_path / "no.npy", "no such file")
    path.write_bytes(b"\x93NUMPY\x04\x00" + b"\x00" * 16)  # a format version NumPy lacks
    _refused(lambda: check_npy_header(path), path,
             "unreadable npy header (ValueError: npy version (4, 0))")  # fmt: skip
    path.write_bytes(b"\x93NUMPY\x01\x00\x04\x00{}\n ")
    with pytest.raises(FormatError) as err:
        check_npy_header(path)
    assert err.value.path == str(path)
    assert err.value.reason.startswith("unreadable npy header (ValueError: ")


def test_split_size_message() -> None:
    _refused(lambda: limits.check_split_size("s.pkl", "train", 2, 2**30, 1), Path("s.pkl"),
             f"train: 2 persons x {2**30} frames x 1 joints x 3 = {3 * 2**31} values, more "
             f"than the {2**31} a split of the cache may hold")  # fmt: skip
    limits.check_split_size("s.pkl", "train", 1, 2**31 // 3, 1)
