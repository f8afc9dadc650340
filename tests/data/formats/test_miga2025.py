"""MiGA 2025 release readers: round trips and bad-input messages."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats.errors import FormatError
from migalab.data.formats.miga2025 import (
    column_letter,
    find_videos,
    read_emotion_labels,
    read_label_csv,
    read_openpose_table,
    read_release,
    read_video_folder,
    write_emotion_labels,
    write_label_csv,
    write_openpose_table,
)
from migalab.data.record import UNKNOWN_LABEL


def make_table(t: int = 12, seed: int = 0) -> np.ndarray:
    """(T, 411) plausible table, already rounded like the writer rounds, one missing keypoint."""
    rng = np.random.default_rng(seed)
    table = np.empty((t, 411))
    table[:, 0::3] = rng.uniform(0, 1280, (t, 137))
    table[:, 1::3] = rng.uniform(0, 720, (t, 137))
    table[:, 2::3] = rng.uniform(0, 1, (t, 137))
    table[:, 3 * 5 : 3 * 6] = 0.0  # keypoint 5 missing: (0, 0, 0) is valid
    table[:, 0::3] = table[:, 0::3].round(2)
    table[:, 1::3] = table[:, 1::3].round(2)
    table[:, 2::3] = table[:, 2::3].round(3)
    return table


def csv_lines(table: np.ndarray) -> list[str]:
    return [",".join(f"{v:.10g}" for v in row) for row in table]


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_table_round_trip(tmp_path: Path, suffix: str) -> None:
    table = make_table()
    path = write_openpose_table(tmp_path / f"0001_openpose{suffix}", table)
    got = read_openpose_table(path)
    assert got.dtype == np.float32 and got.shape == (12, 411)
    np.testing.assert_allclose(got, table.astype(np.float32), rtol=0, atol=1e-3)
    assert not list(tmp_path.glob(".*tmp"))


def test_openpyxl_engine_matches_calamine(tmp_path: Path) -> None:
    path = write_openpose_table(tmp_path / "t.xlsx", make_table(5))
    np.testing.assert_array_equal(
        read_openpose_table(path, engine="openpyxl"), read_openpose_table(path)
    )


def test_label_round_trip(tmp_path: Path) -> None:
    path = write_label_csv(tmp_path / "l.csv", [(1, 0, 3), (99, 4, 9), (31, 10, 11)])
    assert read_label_csv(path, num_frames=12) == [(0, 0, 3), (31, 4, 9), (30, 10, 11)]


def test_hidden_labels_are_unknown(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text(",0,3\n-1,4,9\n\n12,15\n")
    assert read_label_csv(path) == [
        (UNKNOWN_LABEL, 0, 3),
        (UNKNOWN_LABEL, 4, 9),
        (UNKNOWN_LABEL, 12, 15),
    ]


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 410)] == ["A", "Z", "AA", "OU"]


# ---------------------------------------------------------------- bad tables


def _write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _xlsx(path: Path, rows: list[list]) -> Path:
    import xlsxwriter

    wb = xlsxwriter.Workbook(str(path), {"nan_inf_to_errors": True})
    ws = wb.add_worksheet()
    for r, row in enumerate(rows):
        ws.write_row(r, 0, row)
    wb.close()
    return path


def _assert_error(exc: pytest.ExceptionInfo, path: Path, *parts: str) -> None:
    msg = str(exc.value)
    assert isinstance(exc.value, ValueError)
    assert path.name in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_corrupt_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "0001_openpose.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "unreadable xlsx")


def test_missing_table(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        read_openpose_table(tmp_path / "nope.xlsx")


def test_unreadable_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 300)
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path)


def test_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("")
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "no rows")


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_wrong_column_count(tmp_path: Path, suffix: str) -> None:
    table = make_table(6).tolist()
    table[3] = table[3][:408]  # row 4 is short
    path = tmp_path / f"t{suffix}"
    if suffix == ".xlsx":
        _xlsx(path, table)
    else:
        _write_csv(path, [",".join(map(str, r)) for r in table])
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "row 4", "408 columns", "expected 411")


def test_all_rows_too_wide_csv(tmp_path: Path) -> None:
    lines = [line + ",1" for line in csv_lines(make_table(3))]
    path = _write_csv(tmp_path / "t.csv", lines)
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "row 1", "412 columns")


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_non_numeric_cell(tmp_path: Path, suffix: str) -> None:
    table: list[list] = make_table(5).tolist()
    table[2][7] = "abc"  # row 3, column 8 (H) = keypoint 2 y
    path = tmp_path / f"t{suffix}"
    if suffix == ".xlsx":
        _xlsx(path, table)
    else:
        _write_csv(path, [",".join(map(str, r)) for r in table])
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "row 3", "column 8 (H)", "keypoint 2 y", "non-numeric 'abc'")


def test_nan_and_inf_csv(tmp_path: Path) -> None:
    table = make_table(5)
    for value, text in ((np.nan, "nan"), (np.inf, "inf")):
        bad = table.copy()
        bad[1, 12] = value  # row 2, column 13 (M) = keypoint 4 x
        path = _write_csv(tmp_path / f"t_{text}.csv", csv_lines(bad))
        with pytest.raises(FormatError) as exc:
            read_openpose_table(path)
        _assert_error(exc, path, "row 2", "column 13 (M)", "keypoint 4 x", text)


def test_nan_xlsx_error_cell(tmp_path: Path) -> None:
    table: list[list] = make_table(4).tolist()
    table[3][2] = float("nan")  # stored as an error cell (#NUM!)
    path = _xlsx(tmp_path / "t.xlsx", table)
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "row 4", "column 3 (C)", "keypoint 0 confidence")


def test_empty_cell_csv(tmp_path: Path) -> None:
    lines = csv_lines(make_table(3))
    cells = lines[0].split(",")
    cells[400] = ""
    lines[0] = ",".join(cells)
    path = _write_csv(tmp_path / "t.csv", lines)
    with pytest.raises(FormatError) as exc:
        read_openpose_table(path)
    _assert_error(exc, path, "row 1", "column 401", "keypoint 133", "empty")


# ---------------------------------------------------------------- bad labels


@pytest.mark.parametrize(
    ("text", "row", "what"),
    [
        ("1,0,3\n32,4,5\n", "row 2", "class id 32 outside 1..31 and not 99"),
        ("0,0,3\n", "row 1", "class id 0"),
        ("1,0,3\n2,5,4\n", "row 2", "end frame 4 < start frame 5"),
        ("1,-2,3\n", "row 1", "negative start frame -2"),
        ("1,0,3\n1,0,20\n", "row 2", "end frame 20 is past the last frame 11"),
        ("1,0,3\n1\n", "row 2", "1 fields, expected 3"),
        ("1,0,3,7\n", "row 1", "4 fields, expected 3"),
        ("a,0,3\n", "row 1", "class 'a' is not a number"),
        ("1,0,3.5\n", "row 1", "end frame '3.5' is not an integer"),
    ],
)
def test_bad_labels(tmp_path: Path, text: str, row: str, what: str) -> None:
    path = tmp_path / "0001_label.csv"
    path.write_text(text)
    with pytest.raises(FormatError) as exc:
        read_label_csv(path, num_frames=12)
    _assert_error(exc, path, row, what)


# ---------------------------------------------------------------- emotion file


def test_emotion_round_trip(tmp_path: Path) -> None:
    path = write_emotion_labels(
        tmp_path / "emotion_labels.csv", [("0001", "train", "win"), ("0002", "test", 0)]
    )
    assert path.read_text().splitlines()[0] == "video_id,split,emotion"
    assert read_emotion_labels(path) == {"0001": 1, "0002": 0}


def test_emotion_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "emotion_labels.csv"
    path.write_text("video_id,split,emotion\n0001,train,win\n0002,train,draw\n")
    with pytest.raises(FormatError) as exc:
        read_emotion_labels(path)
    _assert_error(exc, path, "row 3", "'draw' is not win or lose")


def test_emotion_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "emotion_labels.csv"
    path.write_text("video,emotion\n0001,win\n")
    with pytest.raises(FormatError, match=re.escape("row 1")):
        read_emotion_labels(path)


# ---------------------------------------------------------------- folders and releases


def _make_video(root: Path, split: str, vid: str, t: int, labels, suffix=".xlsx", mp4=False):
    folder = root / split / vid
    table = make_table(t, seed=int(vid))
    write_openpose_table(folder / f"{vid}_openpose{suffix}", table)
    write_label_csv(folder / f"{vid}_label.csv", labels)
    if mp4:
        (folder / f"{vid}.mp4").write_bytes(b"")
    return table


def test_read_video_folder(tmp_path: Path) -> None:
    table = _make_video(tmp_path, "train", "0007", 20, [(3, 2, 5), (99, 10, 19)], mp4=True)
    recs = read_video_folder(tmp_path / "train" / "0007", split="train", emotion=1)
    assert [r.name for r in recs] == ["0007_0", "0007_1"]
    r = recs[1]
    assert (r.label, r.start, r.end, r.emotion) == (31, 10, 19, 1)
    assert r.keypoint.shape == (1, 10, 137, 2) and r.keypoint_score.shape == (1, 10, 137)
    assert r.keypoint.dtype == np.float32 and r.img_shape == (720, 1280)
    kps = table.reshape(20, 137, 3).astype(np.float32)
    np.testing.assert_allclose(r.keypoint[0], kps[10:20, :, :2], atol=1e-3)
    np.testing.assert_allclose(r.keypoint_score[0], kps[10:20, :, 2], atol=1e-3)
    assert r.video_path.endswith("0007.mp4") and r.meta["split"] == "train"
    r.validate()


def test_find_videos_and_release(tmp_path: Path) -> None:
    _make_video(tmp_path, "train", "0002", 8, [(1, 0, 3)])
    _make_video(tmp_path, "train", "0001", 8, [(2, 0, 3)], suffix=".csv")
    _make_video(tmp_path, "test", "0003", 8, [(5, 1, 2)])
    (tmp_path / "test" / "0003" / "0003_label.csv").write_text(",1,2\n")
    write_emotion_labels(tmp_path / "emotion_labels.csv", [("0001", "train", "lose")])
    vids = find_videos(tmp_path, "train")
    assert [v.video_id for v in vids] == ["0001", "0002"]
    assert vids[0].table.suffix == ".csv" and vids[1].table.suffix == ".xlsx"
    assert find_videos(tmp_path, "validate") == []
    recs = list(read_release(tmp_path))
    assert [r.name for r in recs] == ["0001_0", "0002_0", "0003_0"]
    assert [r.emotion for r in recs] == [0, None, None]
    assert recs[2].label == UNKNOWN_LABEL and recs[2].meta["split"] == "test"


def test_folder_without_table(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "0009"
    folder.mkdir(parents=True)
    with pytest.raises(FormatError, match="0009"):
        read_video_folder(folder)


def test_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    """Files saved by Excel on Windows: UTF-8 BOM and CRLF line ends."""
    labels = tmp_path / "l.csv"
    labels.write_bytes(b"\xef\xbb\xbf3,0,4\r\n99,5,6\r\n")
    assert read_label_csv(labels) == [(2, 0, 4), (31, 5, 6)]
    table = make_table(3)
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(csv_lines(table)).encode() + b"\r\n")
    np.testing.assert_allclose(read_openpose_table(path), table.astype(np.float32), atol=1e-3)
