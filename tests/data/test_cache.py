"""SkeletonCache: clip slicing, layouts, subsets, pickling."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from migalab.data.cache import SkeletonCache
from migalab.data.formats.miga2025 import write_label_csv, write_openpose_table
from migalab.data.prepare import prepare_release
from migalab.data.record import UNKNOWN_LABEL
from migalab.data.skeleton.layouts import get_layout


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("release")
    rng = np.random.default_rng(3)
    tables = {}
    for split, vid, labels in (
        ("train", "0001", [(1, 0, 9), (2, 5, 14)]),
        ("test", "0002", [(-1, 2, 7)]),
    ):
        table = np.round(rng.uniform(0, 700, (16, 411)), 2)
        tables[vid] = table.reshape(16, 137, 3).astype(np.float32)
        write_openpose_table(root / split / vid / f"{vid}_openpose.csv", table)
        folder = root / split / vid
        if labels[0][0] == -1:
            (folder / f"{vid}_label.csv").write_text("".join(f",{s},{e}\n" for _, s, e in labels))
        else:
            write_label_csv(folder / f"{vid}_label.csv", labels)
    out = tmp_path_factory.mktemp("cache")
    prepare_release(root, out, progress=False)
    return out, tables


def test_load_clip(cache_dir) -> None:
    out, tables = cache_dir
    cache = SkeletonCache(out)
    assert len(cache) == 3 and cache.splits == ["train", "test"]
    r = cache.load_clip(1)
    assert (r.name, r.video_id, r.start, r.end, r.label) == ("0001_1", "0001", 5, 14, 1)
    assert r.keypoint.shape == (1, 10, 137, 2) and r.keypoint_score.shape == (1, 10, 137)
    assert r.keypoint.flags["C_CONTIGUOUS"] and r.keypoint.flags["WRITEABLE"]
    np.testing.assert_array_equal(r.keypoint[0], tables["0001"][5:15, :, :2])
    np.testing.assert_array_equal(r.keypoint_score[0], tables["0001"][5:15, :, 2])
    assert r.layout == "openpose137" and r.meta["split"] == "train" and r.emotion is None
    assert r.img_shape == (720, 1280) and r.video_path is None
    r.validate()


def test_layout_selection(cache_dir) -> None:
    out, tables = cache_dir
    cache = SkeletonCache(out)
    r = cache.load_clip(0, layout="imigue22")
    assert r.keypoint.shape == (1, 10, 22, 2) and r.layout == "imigue22"
    idx = list(get_layout("imigue22").indices)
    np.testing.assert_array_equal(r.keypoint[0], tables["0001"][0:10, idx, :2])
    assert cache.load_clip(0, layout="mg36").keypoint.shape == (1, 10, 36, 2)


def test_subset_and_labels(cache_dir) -> None:
    out, _ = cache_dir
    cache = SkeletonCache(out)
    test = cache.subset("test")
    assert len(test) == 1 and test.load_clip(0).label == UNKNOWN_LABEL
    assert not test.has_labels() and cache.subset("train").has_labels()
    assert len(cache.subset("validate")) == 0  # a requested split with no videos
    assert len(SkeletonCache(out, split="train")) == 2
    with pytest.raises(KeyError):
        cache.subset("nope")
    with pytest.raises(IndexError):
        cache.load_clip(7)


def test_pickle_drops_memmaps(cache_dir) -> None:
    out, _ = cache_dir
    cache = SkeletonCache(out)
    a = cache.load_clip(0, layout="imigue22")
    assert cache._mmaps  # opened once and kept
    clone = pickle.loads(pickle.dumps(cache))
    assert clone._mmaps == {}
    b = clone.load_clip(0, layout="imigue22")
    assert b.keypoint.shape == (1, 10, 22, 2)
    np.testing.assert_array_equal(a.keypoint, b.keypoint)


def test_load_is_fast(cache_dir) -> None:
    out, _ = cache_dir
    cache = SkeletonCache(out)
    cache.load_clip(0)
    t0 = time.perf_counter()
    for i in range(300):
        cache.load_clip(i % len(cache), layout="imigue22")
    assert (time.perf_counter() - t0) / 300 < 0.01  # well under 10 ms per clip


def test_windows_cover_every_sequence_without_labels(tiny_cache: Path) -> None:
    cache = SkeletonCache(tiny_cache)
    win = cache.windows(window=40, stride=25)
    files = sorted(set(cache.index["file"]))
    assert sorted(set(win.index["file"])) == files  # every sequence, every split
    assert (win.labels == UNKNOWN_LABEL).all() and set(win.index["split"]) == {"unlabelled"}
    assert (win.index["emotion"] == -1).all()
    for file in files:
        total = cache.video_array(file).shape[-3]
        rows = win.index[win.index["file"] == file]
        assert rows["start"].tolist() == list(range(0, total - 40 + 1, 25))
        assert (rows["end"] - rows["start"] == 39).all()
        # the windows reach past the labelled clips: the whole per-video table
        assert rows["end"].max() >= total - 25
    rec = win.load_clip(3, layout="imigue22")
    assert rec.keypoint.shape == (1, 40, 22, 2) and rec.label == UNKNOWN_LABEL
    assert rec.name == f"{rec.video_id}_w{rec.start}"
    # a split filter, and a sequence shorter than the window: one window of all of it
    val = cache.windows(window=10**6, stride=5, splits=["validate"], split_name="validate")
    val_files = set(cache.index.loc[cache.index["split"] == "validate", "file"])
    assert set(val.index["file"]) == val_files and len(val) == len(val_files)
    assert (val.index["start"] == 0).all()
    with pytest.raises(ValueError, match="window and stride"):
        cache.windows(0, 1)
