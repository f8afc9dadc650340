"""The inputs of online recognition as a user names them: a file, a flat folder, a release
split folder (one ``<vid>/`` folder per video, laid out as the releases unpack) or a release
root, which is refused with the split folders to name instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from migalab.data.formats.sequence_files import files_by_video, skeleton_tables, video_paths


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    return path


def _miga2025_split(folder: Path, vids: list[str]) -> None:
    """A MiGA 2025 split: ``<vid>/<vid>_openpose.xlsx``, ``<vid>_label.csv``, ``<vid>.mp4``."""
    for vid in vids:
        for name in (f"{vid}_openpose.xlsx", f"{vid}_label.csv", f"{vid}.mp4"):
            _touch(folder / vid / name)


def test_a_file_is_itself(tmp_path: Path) -> None:
    table = _touch(tmp_path / "0001_openpose.csv")
    assert skeleton_tables(table) == [table]
    assert video_paths(_touch(tmp_path / "a.mp4")) == [tmp_path / "a.mp4"]
    assert files_by_video(tmp_path / "0001_openpose.csv", "_openpose.csv", "x") == {"0001": table}


def test_a_flat_folder_gives_its_tables_but_not_labels_or_predictions(tmp_path: Path) -> None:
    tables = [_touch(tmp_path / f"{v}_openpose.csv") for v in ("0002", "0001")]
    _touch(tmp_path / "0001_label.csv")
    _touch(tmp_path / "0001_prediction.csv")
    _touch(tmp_path / ".0003_openpose.csv")  # hidden (e.g. a macOS resource fork)
    _touch(tmp_path / "0001.json")  # migalab-pose's frame size, not a table
    assert skeleton_tables(tmp_path) == sorted(tables)
    assert files_by_video(tmp_path, "_label.csv", "online.labels") == {
        "0001": tmp_path / "0001_label.csv"
    }


def test_a_miga2025_split_folder_gives_one_table_per_video(tmp_path: Path) -> None:
    split = tmp_path / "imigue_data_phase1" / "datasets" / "imigue_skeleton_validate"
    _miga2025_split(split, ["0102", "0101"])
    _touch(split / ".DS_Store" / "x")
    assert skeleton_tables(split) == [
        split / "0101" / "0101_openpose.xlsx", split / "0102" / "0102_openpose.xlsx",
    ]  # fmt: skip
    assert files_by_video(split, "_label.csv", "online.labels") == {
        v: split / v / f"{v}_label.csv" for v in ("0101", "0102")
    }
    assert video_paths(split) == [split / v / f"{v}.mp4" for v in ("0101", "0102")]


def test_a_35_joint_split_folder_and_videos_without_a_table(tmp_path: Path) -> None:
    """MiGA 2024-2026 tables (``<vid>_light_hand.csv``); a video folder without a table (or
    without labels, as in a test split) is left out rather than failing the split."""
    split = tmp_path / "test"
    _touch(split / "0201" / "0201_light_hand.csv")
    _touch(split / "0202" / "0202.mp4")
    assert skeleton_tables(split) == [split / "0201" / "0201_light_hand.csv"]
    with pytest.raises(FileNotFoundError, match=r"online.labels=.*test: no <vid>_label.csv"):
        files_by_video(split, "_label.csv", "online.labels")


@pytest.mark.parametrize("layout", ["suite", "official"])
def test_a_release_root_is_refused_with_its_split_folders(tmp_path: Path, layout: str) -> None:
    _touch(tmp_path / "emotion_labels.csv")  # a release root's own table (synthetic, real)
    if layout == "suite":
        _miga2025_split(tmp_path / "validate", ["0101"])
        expected = tmp_path / "validate"
    else:
        expected = tmp_path / "imigue_data_phase2" / "imigue_skeleton_test"
        _miga2025_split(expected, ["0301"])
    for call in (lambda: skeleton_tables(tmp_path, "skeleton"),
                 lambda: files_by_video(tmp_path, "_label.csv", "online.labels")):  # fmt: skip
        with pytest.raises(FileNotFoundError, match="is a release root") as err:
            call()
        assert str(expected) in str(err.value)


def test_an_empty_or_missing_path_names_itself(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"skeleton=.*empty: no skeleton table"):
        skeleton_tables(tmp_path / "empty", "skeleton")
    with pytest.raises(FileNotFoundError, match=r"video=.*empty: no video"):
        video_paths(tmp_path / "empty", "video")
    with pytest.raises(FileNotFoundError, match=r"skeleton=.*nowhere: no such file or folder"):
        skeleton_tables(tmp_path / "nowhere", "skeleton")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        files_by_video(tmp_path / "nowhere", "_label.csv", "online.labels")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        video_paths(tmp_path / "nowhere")


def test_a_flat_folder_of_freely_named_tables(tmp_path: Path) -> None:
    """Tables named otherwise (``interview.csv``) are taken when the folder holds no per-video
    table and is no release; a named table wins over them."""
    free = _touch(tmp_path / "interview.csv")
    _touch(tmp_path / "emotion_labels.csv")
    assert skeleton_tables(tmp_path) == [free]
    named = _touch(tmp_path / "talk_openpose.csv")
    assert skeleton_tables(tmp_path) == [named]


def test_table_video_id_strips_every_table_suffix() -> None:
    from migalab.data.formats.sequence_files import table_video_id

    for name in ("0101_openpose.xlsx", "0101_openpose.csv", "0101_light_hand.csv",
                 "0101_light.csv", "0101.csv"):  # fmt: skip
        assert table_video_id(Path("x") / name) == "0101", name
    assert table_video_id(Path("interview_openpose_v2.csv")) == "interview_openpose_v2"
