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
from migalab.data.prepare.clips import stack_clips
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
