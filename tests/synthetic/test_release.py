"""Release layout and file formats of the synthetic iMiGUE (MiGA 2025 layout, exactly)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats.miga2025 import raw_to_class, read_openpose_table, read_release
from migalab.synthetic import (
    CLASS_NAMES,
    SynthConfig,
    generate_release,
    plan_release,
    release_is_current,
)

SPLITS = ("train", "validate", "test")


def tiny(**kw) -> SynthConfig:
    base = dict(
        seed=1,
        num_videos={"train": 3, "validate": 2, "test": 2},
        clips_per_video=(3, 5),
        clip_frames=(16, 30),
        gap_frames=(4, 12),
        table_format="csv",
    )
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, SynthConfig]:
    root = tmp_path_factory.mktemp("synth") / "rel"
    cfg = tiny()
    generate_release(root, cfg, progress=False)
    return root, cfg


def _video_dirs(root: Path) -> list[tuple[str, Path]]:
    return [(s, d) for s in SPLITS for d in sorted((root / s).iterdir())]


def _read_table(path: Path) -> np.ndarray:
    text = path.read_text().splitlines()
    assert text, "empty table"
    first = text[0].split(",")
    assert len(first) == 411
    float(first[0])  # no header row: the first line is numbers
    return np.loadtxt(path, delimiter=",", ndmin=2)


def test_layout(release):
    root, cfg = release
    visible = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    assert visible == sorted([*SPLITS, "emotion_labels.csv", "synth_meta.json"])
    seen = []
    for _split, d in _video_dirs(root):
        vid = d.name
        assert re.fullmatch(r"\d{4}", vid)
        assert sorted(p.name for p in d.iterdir()) == [f"{vid}_label.csv", f"{vid}_openpose.csv"]
        seen.append(vid)
    assert len(seen) == len(set(seen)) == sum(cfg.num_videos.values())
    for split in SPLITS:
        assert len(list((root / split).iterdir())) == cfg.num_videos[split]


def test_table_and_labels(release):
    root, cfg = release
    h, w = cfg.frame_size
    for _, d in _video_dirs(root):
        vid = d.name
        table = _read_table(d / f"{vid}_openpose.csv")
        t = len(table)
        kp = table.reshape(t, 137, 3)
        missing = kp[..., 2] == 0
        # dropped keypoints are exactly (0, 0, 0); present ones are in the frame with conf in (0, 1]
        assert np.all(kp[missing] == 0.0)
        present = kp[~missing]
        assert np.all((present[:, 2] > 0) & (present[:, 2] <= 1))
        assert np.all((present[:, 0] > 0) & (present[:, 0] < w))
        assert np.all((present[:, 1] > 0) & (present[:, 1] < h))
        # a subject is there: neck seen in most frames, legs never
        assert (~missing[:, 1]).mean() > 0.9
        assert missing[:, [10, 11, 13, 14, 19, 20, 21, 22, 23, 24]].all()
        with open(d / f"{vid}_label.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert cfg.clips_per_video[0] <= len(rows) <= cfg.clips_per_video[1]
        prev_end = -1
        for row in rows:
            assert len(row) == 3
            raw, start, end = (int(v) for v in row)  # no header: every row is integers
            assert raw == 99 or 1 <= raw <= 31
            assert 0 <= raw_to_class(raw) < 32
            assert cfg.clip_frames[0] <= end - start + 1 <= cfg.clip_frames[1]
            assert prev_end < start <= end < t  # in the table, no overlaps, in order
            prev_end = end


def test_emotion_labels(release):
    root, _ = release
    lines = (root / "emotion_labels.csv").read_text().splitlines()
    assert lines[0] == "video_id,split,emotion"
    rows = [line.split(",") for line in lines[1:]]
    dirs = {(s, d.name) for s, d in _video_dirs(root)}
    assert {(s, v) for v, s, _ in rows} == dirs
    assert {e for _, _, e in rows} <= {"win", "lose"}
    for split in SPLITS:  # balanced within each split
        emos = [e for _, s, e in rows if s == split]
        assert abs(emos.count("win") - emos.count("lose")) <= 1


def test_meta(release):
    root, cfg = release
    meta = json.loads((root / "synth_meta.json").read_text())
    assert meta["config_hash"] == cfg.config_hash()
    assert SynthConfig.from_dict(meta["config"]).config_hash() == cfg.config_hash()
    counts = meta["counts"]
    for split in SPLITS:
        n_clips = sum(
            len((d / f"{d.name}_label.csv").read_text().splitlines())
            for s, d in _video_dirs(root)
            if s == split
        )
        assert counts["clips"][split] == n_clips
        assert sum(counts["per_class"][split].values()) == n_clips
        assert list(counts["per_class"][split]) == list(CLASS_NAMES)
        assert counts["videos"][split] == cfg.num_videos[split]
    assert release_is_current(root, cfg)


def test_reader_roundtrip(release):
    root, _ = release
    recs = list(read_release(root))
    assert recs and all(r.keypoint.shape[2] == 137 for r in recs)
    assert {r.meta["split"] for r in recs} == set(SPLITS)
    assert all(r.emotion in (0, 1) for r in recs)
    assert all(0 <= r.label < 32 for r in recs)  # test labels are written too


def test_release_is_current(tmp_path):
    cfg = tiny(num_videos={"train": 1, "validate": 1, "test": 1})
    root = tmp_path / "r"
    assert not release_is_current(root, cfg)
    generate_release(root, cfg, progress=False)
    assert release_is_current(root, cfg)
    assert release_is_current(root, tiny(num_videos=cfg.num_videos, workers=4))  # runtime only
    assert not release_is_current(root, tiny(num_videos=cfg.num_videos, seed=2))
    assert not release_is_current(root, tiny(num_videos=cfg.num_videos, noise=0.5))
    table = next((root / "train").iterdir())
    (table / f"{table.name}_openpose.csv").unlink()
    assert not release_is_current(root, cfg)


def test_regenerate_replaces_stale_videos(tmp_path):
    root = tmp_path / "r"
    a = tiny(num_videos={"train": 2, "validate": 1, "test": 1}, seed=3)
    b = tiny(num_videos={"train": 1, "validate": 1, "test": 0}, seed=4)
    generate_release(root, a, progress=False)
    generate_release(root, b, progress=False)
    found = {(s, d.name) for s, d in _video_dirs(root)}
    assert found == {(v.split, v.vid) for v in plan_release(b)}
    assert release_is_current(root, b) and not release_is_current(root, a)


def test_xlsx_matches_csv(tmp_path):
    n = {"train": 1, "validate": 0, "test": 0}
    cfg_x = tiny(num_videos=n, table_format="xlsx", clips_per_video=(2, 2))
    cfg_c = tiny(num_videos=n, table_format="csv", clips_per_video=(2, 2))
    generate_release(tmp_path / "x", cfg_x, progress=False)
    generate_release(tmp_path / "c", cfg_c, progress=False)
    vid = plan_release(cfg_x)[0].vid
    x = read_openpose_table(tmp_path / "x" / "train" / vid / f"{vid}_openpose.xlsx")
    c = read_openpose_table(tmp_path / "c" / "train" / vid / f"{vid}_openpose.csv")
    assert x.shape == c.shape and x.shape[1] == 411
    np.testing.assert_allclose(x, c, atol=1e-6)
    import openpyxl

    ws = openpyxl.load_workbook(tmp_path / "x" / "train" / vid / f"{vid}_openpose.xlsx").active
    first = next(ws.iter_rows(values_only=True))
    assert len(first) == 411 and all(isinstance(v, int | float) for v in first)  # no header


def test_min_video_frames(tmp_path):
    cfg = tiny(num_videos={"train": 1, "validate": 0, "test": 0}, min_video_frames=1500)
    generate_release(tmp_path, cfg, progress=False)
    d = next((tmp_path / "train").iterdir())
    assert len(_read_table(d / f"{d.name}_openpose.csv")) >= 1500


def test_subjects_disjoint_across_splits():
    specs = plan_release(SynthConfig(num_videos={"train": 20, "validate": 6, "test": 6}))
    by_split = {s: {v.subject_id for v in specs if v.split == s} for s in SPLITS}
    assert not (by_split["train"] & by_split["validate"])
    assert not (by_split["train"] & by_split["test"])
    assert not (by_split["validate"] & by_split["test"])
    assert len(by_split["train"]) < 20  # some subjects have several videos
    assert len({v.vid for v in specs}) == 32


def test_refuses_foreign_release(tmp_path):
    (tmp_path / "train" / "0001").mkdir(parents=True)
    (tmp_path / "train" / "0001" / "0001_openpose.xlsx").write_bytes(b"real data")
    with pytest.raises(FileExistsError):
        generate_release(tmp_path, tiny(num_videos={"train": 1}), progress=False)
    assert (tmp_path / "train" / "0001" / "0001_openpose.xlsx").read_bytes() == b"real data"
