"""Release -> cache conversion: skipping bad videos, report, atomicity, staleness, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from migalab.data.cache import INDEX_COLUMNS, SkeletonCache
from migalab.data.formats.miga2025 import (
    read_video_folder,
    write_emotion_labels,
    write_label_csv,
    write_openpose_table,
)
from migalab.data.prepare import PrepareError, is_cache_current, main, prepare_release
from migalab.data.prepare import release as prep


def make_release(root: Path, corrupt: bool = True) -> Path:
    """train: 0001 (xlsx), 0002 (csv, with mp4), 0003 (corrupt xlsx); emotion for 0001/0002."""
    rng = np.random.default_rng(0)
    for vid, suffix, frames in (("0001", ".xlsx", 30), ("0002", ".csv", 25), ("0003", ".xlsx", 20)):
        folder = root / "train" / vid
        table = rng.uniform(0, 700, (frames, 411))
        table[:, 2::3] = rng.uniform(0, 1, (frames, 137))
        write_openpose_table(folder / f"{vid}_openpose{suffix}", table)
        write_label_csv(folder / f"{vid}_label.csv", [(5, 0, 9), (99, 10, 19), (12, 3, 4)])
    (root / "train" / "0002" / "0002.mp4").write_bytes(b"")
    if corrupt:
        (root / "train" / "0003" / "0003_openpose.xlsx").write_bytes(b"PK\x03\x04broken")
    write_emotion_labels(
        root / "emotion_labels.csv", [("0001", "train", "win"), ("0002", "train", "lose")]
    )
    return root


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return make_release(tmp_path / "release")


def stray_temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def test_prepare_skips_corrupt_video(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    res = prepare_release(release, out, progress=False)
    assert (res.num_videos, res.num_clips, res.complete) == (2, 6, True)
    assert len(res.skipped) == 1 and "0003_openpose.xlsx" in res.skipped[0][0]
    assert res.missing_splits == ["validate", "test"]
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["num_skipped"] == 1 and "unreadable xlsx" in report["skipped"][0]["error"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["num_videos"] == 2 and meta["num_clips"] == 6 and meta["dtype"] == "float32"
    assert meta["source_root"] == str(release.resolve()) and len(meta["fingerprint"]) == 64

    index = pd.read_csv(out / "index.csv", dtype={"video_id": str}, keep_default_na=False)
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert index["name"].tolist() == ["0001_0", "0001_1", "0001_2", "0002_0", "0002_1", "0002_2"]
    assert index["label"].tolist() == [4, 31, 11] * 2
    assert index["start"].tolist() == [0, 10, 3] * 2 and index["end"].tolist() == [9, 19, 4] * 2
    assert index["video_frames"].tolist() == [30] * 3 + [25] * 3
    assert index["emotion"].tolist() == [1] * 3 + [0] * 3
    assert index["video_path"].tolist()[:3] == [""] * 3
    assert index["video_path"].iloc[3].endswith("0002.mp4")
    assert index["file"].tolist() == ["train/0001.npy"] * 3 + ["train/0002.npy"] * 3
    assert (index[["height", "width"]].to_numpy() == [720, 1280]).all()
    assert np.load(out / "train" / "0001.npy").shape == (30, 137, 3)
    assert not (out / "train" / "0003.npy").exists()
    assert stray_temps(out) == []

    cache = SkeletonCache(out)
    for vid in ("0001", "0002"):
        for rec in read_video_folder(release / "train" / vid):
            got = cache.load_clip(int(np.flatnonzero(cache.index["name"] == rec.name)[0]))
            np.testing.assert_array_equal(got.keypoint, rec.keypoint)
            np.testing.assert_array_equal(got.keypoint_score, rec.keypoint_score)
            assert (got.label, got.start, got.end) == (rec.label, rec.start, rec.end)


def test_parallel_matches_serial(release: Path, tmp_path: Path) -> None:
    a = prepare_release(release, tmp_path / "a", progress=False)
    b = prepare_release(release, tmp_path / "b", workers=2, progress=False)
    assert (b.num_videos, len(b.skipped)) == (a.num_videos, len(a.skipped))
    assert (tmp_path / "a/index.csv").read_text() == (tmp_path / "b/index.csv").read_text()
    for f in ("0001.npy", "0002.npy"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "a/train" / f), np.load(tmp_path / "b/train" / f)
        )


def test_float16(release: Path, tmp_path: Path) -> None:
    prepare_release(release, tmp_path / "c", dtype="float16", progress=False)
    arr = np.load(tmp_path / "c/train/0001.npy")
    assert arr.dtype == np.float16
    rec = SkeletonCache(tmp_path / "c").load_clip(0)
    assert rec.keypoint.dtype == np.float32


def test_strict_raises(release: Path, tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="0003_openpose.xlsx"):
        prepare_release(release, tmp_path / "s", strict=True, progress=False)
    assert not (tmp_path / "s/meta.json").exists()
    assert json.loads((tmp_path / "s/prepare_report.json").read_text())["num_skipped"] == 1


def test_crash_leaves_no_meta(release: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "cache"
    prepare_release(release, out, progress=False)
    assert (out / "meta.json").exists()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # a crash half way (after the .npy files, before the end)

    monkeypatch.setattr(prep, "write_index", boom)
    with pytest.raises(KeyboardInterrupt):
        prepare_release(release, out, progress=False)
    assert not (out / "meta.json").exists()  # the old complete marker was removed first
    assert stray_temps(out) == []
    with pytest.raises(FileNotFoundError, match="incomplete"):
        SkeletonCache(out)
    assert not is_cache_current(release, out)


def test_crash_inside_a_write_leaves_no_temp(release: Path, tmp_path: Path, monkeypatch) -> None:
    def bad_save(f, arr, allow_pickle=False):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(prep.np, "save", bad_save)
    res = prepare_release(release, tmp_path / "cache", progress=False)
    assert res.num_videos == 0 and not res.complete and len(res.skipped) == 3
    assert not (tmp_path / "cache/meta.json").exists()
    assert stray_temps(tmp_path / "cache") == [] and not list((tmp_path / "cache").rglob("*.npy"))


def test_is_cache_current(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    assert not is_cache_current(release, out)
    prepare_release(release, out, progress=False)
    assert is_cache_current(release, out)
    label = release / "train/0001/0001_label.csv"
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    assert not is_cache_current(release, out)
    prepare_release(release, out, progress=False)
    assert is_cache_current(release, out)
    (release / "train/0001/0001.mp4").write_bytes(b"")  # a new source file
    assert not is_cache_current(release, out)


def test_cli(release: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cache"
    assert main([str(release), str(out), "--splits", "train", "--workers", "2"]) == 0
    captured = capsys.readouterr().out
    assert "videos converted" in captured and "skipped (1)" in captured
    assert json.loads((out / "meta.json").read_text())["splits"] == ["train"]
    assert main([str(release), str(out), "--splits", "train"]) == 0
    assert "is current" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:  # a user error: one line, exit 2
        main([str(release), str(out), "--splits", "train", "--strict", "--force"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err  # (after the progress bar)
    assert err.splitlines()[-1].startswith("error: ") and "0003_openpose.xlsx" in err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not (out / "meta.json").exists()


def test_cli_nothing_converted(tmp_path: Path) -> None:
    root = make_release(tmp_path / "r")
    for vid in ("0001", "0002"):
        (root / "train" / vid / f"{vid}_label.csv").write_text("77,0,1\n")
    assert main([str(root), str(tmp_path / "out"), "--quiet"]) == 1
    report = json.loads((tmp_path / "out/prepare_report.json").read_text())
    assert report["num_videos"] == 0 and report["num_skipped"] == 3
    assert any("row 1" in s["error"] and "class id 77" in s["error"] for s in report["skipped"])


def _video(root: Path, split: str, vid: str, labels: list, frames: int = 30) -> Path:
    """One csv-table video folder of ``split`` with the label rows ``labels`` (raw lines)."""
    rng = np.random.default_rng(int(vid))
    folder = root / split / vid
    table = rng.uniform(0, 700, (frames, 411))
    table[:, 2::3] = rng.uniform(0, 1, (frames, 137))
    write_openpose_table(folder / f"{vid}_openpose.csv", table)
    (folder / f"{vid}_label.csv").write_text("".join(f"{line}\n" for line in labels))
    return folder


def test_unlabelled_interval_in_a_labelled_split_is_skipped_and_named(tmp_path: Path) -> None:
    """A ``start,end`` row or an empty class: fine for hidden test labels, not for training."""
    root = tmp_path / "release"
    _video(root, "train", "0001", ["6,0,9", "12,10,19"])  # good
    _video(root, "train", "0002", ["6,0,9", "10,19"])  # two fields: no class
    _video(root, "validate", "0003", ["6,0,9", ",10,19"])  # empty class
    _video(root, "test", "0004", ["6,0,9", "10,19", ",20,25"])  # hidden labels: allowed
    res = prepare_release(root, tmp_path / "cache", progress=False)
    problems = dict(res.skipped)
    assert set(problems) == {str(root / f"{s}/{v}/{v}_label.csv")
                             for s, v in (("train", "0002"), ("validate", "0003"))}  # fmt: skip
    assert "1 interval(s) without a class (0002_1) in the labelled split 'train'" in str(problems)
    assert "0003_1" in str(problems)
    cache = SkeletonCache(tmp_path / "cache")
    labels = dict(zip(cache.index["name"], cache.index["label"], strict=True))
    assert labels == {"0001_0": 5, "0001_1": 11, "0004_0": 5, "0004_1": -1, "0004_2": -1}


def test_absurd_coordinates_are_refused_with_row_and_column(tmp_path: Path) -> None:
    root = tmp_path / "release"
    _video(root, "train", "0001", ["6,0,9"])
    bad = _video(root, "train", "0002", ["6,0,9"])
    table = pd.read_csv(bad / "0002_openpose.csv", header=None).to_numpy()
    table[7, 3 * 4 + 1] = 1e30  # row 8, joint 4's y
    write_openpose_table(bad / "0002_openpose.csv", table)
    slightly_out = _video(root, "train", "0003", ["6,0,9"])  # occluded joints just outside
    table = pd.read_csv(slightly_out / "0003_openpose.csv", header=None).to_numpy()
    table[0, 0], table[1, 1] = -40.0, 900.0
    write_openpose_table(slightly_out / "0003_openpose.csv", table)
    res = prepare_release(root, tmp_path / "cache", progress=False)
    ((file, message),) = res.skipped
    assert file.endswith("0002_openpose.csv") and "row 8" in message
    assert "y=1e+30 is not a pixel of a 1280x720 frame" in message
    assert res.num_videos == 2 and res.num_clips == 2


def test_empty_label_file_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "release"
    _video(root, "train", "0001", ["6,0,9"])
    _video(root, "train", "0002", [])  # empty: no clips
    _video(root, "test", "0003", [""])  # blank line only
    res = prepare_release(root, tmp_path / "cache", progress=False)
    assert (res.num_videos, res.num_clips, res.skipped) == (3, 1, [])
    warned = {Path(f).name: m for f, m in res.warnings}
    assert set(warned) == {"0002_label.csv", "0003_label.csv"}
    assert "video 0002 gives no clips (split 'train' is labelled" in warned["0002_label.csv"]
    report = json.loads((tmp_path / "cache" / "prepare_report.json").read_text())
    assert len(report["warnings"]) == 2


def test_datamodule_names_clips_with_unusable_labels(tmp_path: Path) -> None:
    """A cache written before these checks (or by hand) with -1 / out-of-range training labels
    fails at setup, naming the clips, instead of inside cross_entropy mid-epoch."""
    from migalab.data.datamodule import ClipDataModule

    root = tmp_path / "release"
    _video(root, "train", "0001", ["6,0,9", "12,10,19", "3,20,25"])
    _video(root, "validate", "0002", ["6,0,9"])
    cache = tmp_path / "cache"
    prepare_release(root, cache, progress=False)
    index = pd.read_csv(cache / "index.csv")
    index.loc[index["name"] == "0001_1", "label"] = -1
    index.loc[index["name"] == "0001_2", "label"] = 40
    index.to_csv(cache / "index.csv", index=False)
    dm = ClipDataModule(str(root), str(cache), num_workers=0)
    with pytest.raises(
        ValueError, match=r"2 train clip\(s\).*0001_1 \(label -1\), 0001_2 \(label 40\)"
    ):
        dm.setup("fit")


OFFICIAL = {
    "train": "imigue_data_phase1/datasets/imigue_skeleton_train",
    "validate": "imigue_data_phase1/datasets/imigue_skeleton_validate",
    "test": "imigue_data_phase2/imigue_skeleton_test",
}


def official_layout(release: Path, root: Path) -> Path:
    """Copy a release (``<split>/<vid>/``) into the MiGA 2025 archives' layout as they unpack."""
    import shutil

    for split, rel in OFFICIAL.items():
        if (release / split).is_dir():
            shutil.copytree(release / split, root / rel)
    return root


def test_official_archive_layout_is_found(tiny_release: Path, tmp_path: Path) -> None:
    root = official_layout(tiny_release, tmp_path / "unpacked")
    res = prepare_release(root, tmp_path / "cache", progress=False)
    plain = prepare_release(tiny_release, tmp_path / "plain", progress=False)
    assert res.num_videos == plain.num_videos == 8 and res.num_clips == plain.num_clips
    assert res.missing_splits == [] and res.skipped == []
    index = SkeletonCache(tmp_path / "cache").index
    assert sorted(set(index["split"])) == ["test", "train", "validate"]


def test_train_on_the_official_layout(tiny_release: Path, tmp_path: Path) -> None:
    """prepare -> train fast_dev_run on a release laid out as the archives unpack."""
    from migalab.train import train
    from migalab.utils.hydra import compose_config

    root = official_layout(tiny_release, tmp_path / "unpacked")
    cfg = compose_config(
        "train",
        ["data=imigue", f"data.release_root={root}", f"data.cache_dir={tmp_path / 'cache'}",
         "data.num_workers=0", "data.pin_memory=false", "data.batch_size=8", "debug=fdr",
         "trainer=cpu", "logger=csv", "model.encoder.base_channels=8"],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    payload, trainer = train(cfg)
    assert trainer.state.finished and payload["val"]["num_samples"] > 0


def test_no_videos_is_an_error_that_says_where_it_looked(tmp_path: Path) -> None:
    root = tmp_path / "release"
    (root / "imigue_rgb_train" / "0001").mkdir(parents=True)  # the RGB archive, not skeletons
    (root / "README.txt").write_text("hi")
    with pytest.raises(FileNotFoundError) as err:
        prepare_release(root, tmp_path / "cache", progress=False)
    message = str(err.value)
    assert "no video folders found" in message
    assert "imigue_data_phase1/datasets/imigue_skeleton_train" in message
    assert "imigue_rgb_train/" in message and "README.txt" in message
    with pytest.raises(SystemExit) as exit_:  # a release without videos is a user error
        main([str(root), str(tmp_path / "out"), "--quiet"])
    assert exit_.value.code == 2


def test_a_release_in_two_archives(tiny_release: Path, tmp_path: Path, capsys) -> None:
    """train / validate from one archive, test from another unpacked elsewhere: as a list of
    roots, as a mapping split -> folder (the split folder itself), and with --split-root; the
    same clips as the one-folder release, and what was found is printed before converting."""
    import shutil

    phase1, phase2 = tmp_path / "phase1", tmp_path / "elsewhere" / "phase2"
    for split in ("train", "validate"):
        shutil.copytree(tiny_release / split, phase1 / "imigue_data_phase1" / "datasets" /
                        f"imigue_skeleton_{split}")  # fmt: skip
    shutil.copytree(tiny_release / "test", phase2 / "imigue_skeleton_test")
    plain = SkeletonCache(prepare_release(tiny_release, tmp_path / "plain", progress=False).out_dir)

    res = prepare_release([phase1, phase2], tmp_path / "listed", progress=True)
    assert res.complete and res.missing_splits == []
    assert "test: 2 videos (2 137-point csv) in" in capsys.readouterr().out
    mapped = {"train": phase1, "validate": phase1, "test": phase2 / "imigue_skeleton_test"}
    prepare_release(mapped, tmp_path / "mapped", progress=False)
    for out in ("listed", "mapped"):
        cache = SkeletonCache(tmp_path / out)
        assert cache.index["name"].tolist() == plain.index["name"].tolist()
        np.testing.assert_array_equal(cache.load_clip(-1).keypoint, plain.load_clip(-1).keypoint)
    assert is_cache_current(mapped, tmp_path / "mapped")
    assert not is_cache_current(phase1, tmp_path / "mapped")  # the test split is not there
    assert main([str(phase1), str(tmp_path / "cli"), "--split-root", f"test={phase2}",
                 "--quiet"]) == 0  # fmt: skip
    assert SkeletonCache(tmp_path / "cli").splits == ["train", "validate", "test"]
    # one folder missing: named
    with pytest.raises(FileNotFoundError, match="nope"):
        prepare_release([phase1, tmp_path / "nope"], tmp_path / "x", progress=False)


def test_datamodule_takes_a_mapping_release(tiny_release: Path, tmp_path: Path) -> None:
    from migalab.utils.hydra import compose_config

    cfg = compose_config("train", [
        "data=imigue", f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=0",
        f"data.release_root={{train:{tiny_release},validate:{tiny_release},test:{tiny_release}}}",
    ], output_dir=tmp_path)  # fmt: skip
    import hydra

    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    assert set(dm.datasets) == {"train", "val", "test"} and len(dm.datasets["test"]) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope"], "error: --dataset nope: "),
        (["--split-root", "test"], "error: --split-root test: takes SPLIT=FOLDER"),
        (["--split-root", "test=/no/such/folder"], "error: release folder /no/such/folder is not"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.setenv("MIGALAB_DEBUG", "0")  # restored after --debug sets it
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    (tmp_path / "r").mkdir()
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "r"), str(tmp_path / "out"), "--quiet", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
    # --debug: the same error with its traceback
    with pytest.raises(Exception, match="nope|SPLIT=FOLDER|not a folder") as raised:
        main([str(tmp_path / "r"), str(tmp_path / "out"), "--quiet", "--debug", *args])
    assert not isinstance(raised.value, SystemExit)


def test_cli_refused_pickle_in_strict_mode(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pyskl pickle naming os.system: exit 2 with one line naming the file (strict), or the
    split skipped and reported and exit 1 (nothing converted)."""
    monkeypatch.setenv("MIGALAB_DEBUG", "0")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    path = tmp_path / "ann.pkl"
    path.write_bytes(b"\x80\x02cos\nsystem\n\x8c\x04echo\x85R.")
    with pytest.raises(SystemExit) as exit_:
        main([str(path), str(tmp_path / "s"), "--dataset", "pyskl", "--strict", "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: unreadable pickle")
    assert "os.system" in err[0]
    assert main([str(path), str(tmp_path / "n"), "--dataset", "pyskl", "--quiet"]) == 1
    assert "no video could be converted" in capsys.readouterr().err
