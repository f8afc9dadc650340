"""MiGA 2023/24 npy + pkl release: round trip and errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats.errors import FormatError
from migalab.data.formats.npy2023 import (
    read_npy2023,
    read_npy2023_split,
    split_paths,
    write_npy2023,
)
from migalab.data.record import ClipRecord


def make_records(n: int = 3, t: int = 90) -> list[ClipRecord]:
    rng = np.random.default_rng(1)
    return [
        ClipRecord(
            name=f"0001_{i}",
            video_id="0001",
            start=0,
            end=t - 1,
            label=i,
            keypoint=rng.uniform(0, 1000, (1, t, 22, 2)).astype(np.float32),
            keypoint_score=rng.uniform(0, 1, (1, t, 22)).astype(np.float32),
            img_shape=(1080, 1920),
            layout="imigue22",
        )
        for i in range(n)
    ]


def test_round_trip(tmp_path: Path) -> None:
    recs = make_records()
    data_path, label_path = split_paths(tmp_path, "train")
    write_npy2023(data_path, label_path, recs)
    assert np.load(data_path).shape == (3, 3, 90, 22, 1)
    got = read_npy2023_split(tmp_path, "train")
    assert [r.name for r in got] == [r.name for r in recs]
    for a, b in zip(got, recs, strict=True):
        assert a.layout == "imigue22" and a.label == b.label and a.video_id == "0001"
        assert (a.start, a.end) == (0, 89) and a.meta["split"] == "train"
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.keypoint_score, b.keypoint_score)
        a.validate()
    assert not list(tmp_path.glob(".*tmp"))


def test_channel_order(tmp_path: Path) -> None:
    """x, y, score live on axis 1 of (N, C, T, V, M)."""
    data = np.zeros((1, 3, 90, 22, 1), np.float32)
    data[0, 0, 5, 3, 0], data[0, 1, 5, 3, 0], data[0, 2, 5, 3, 0] = 11, 22, 0.5
    np.save(tmp_path / "d.npy", data)
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["x_0"], [4]), f)
    (r,) = read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")
    assert r.keypoint[0, 5, 3].tolist() == [11, 22] and r.keypoint_score[0, 5, 3] == 0.5


def test_shape_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.zeros((2, 3, 90, 17, 1), np.float32))
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["a", "b"], [0, 1]), f)
    with pytest.raises(FormatError, match=r"d\.npy.*\(2, 3, 90, 17, 1\)"):
        read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")


def test_label_count_mismatch(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.zeros((2, 3, 90, 22, 1), np.float32))
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["a", "b", "c"], [0, 1, 2]), f)
    with pytest.raises(FormatError, match=r"l\.pkl.*3 labels for 2 samples"):
        read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")


def test_labels_are_range_checked(tmp_path: Path) -> None:
    """A raw release id (99) passes no more as class 99: the sample is named."""
    np.save(tmp_path / "d.npy", np.zeros((2, 3, 90, 22, 1), np.float32))
    for bad in (99, 32, -2, "x"):
        with open(tmp_path / "l.pkl", "wb") as f:
            pickle.dump((["a_0", "a_1"], [0, bad]), f)
        with pytest.raises(FormatError, match=r"l\.pkl: sample 1 \(a_1\): label"):
            read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump((["a_0", "a_1"], [31, -1]), f)  # the last class and unknown are fine
    assert [r.label for r in read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")] == [31, -1]


def test_bad_pickle(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.zeros((1, 3, 90, 22, 1), np.float32))
    (tmp_path / "l.pkl").write_bytes(b"not a pickle")
    with pytest.raises(FormatError, match=r"l\.pkl.*unreadable pickle"):
        read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")
    with open(tmp_path / "l.pkl", "wb") as f:
        pickle.dump({"names": []}, f)
    with pytest.raises(FormatError, match=r"l\.pkl.*\(sample_names, labels\) pair"):
        read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")


def test_bad_npy(tmp_path: Path) -> None:
    (tmp_path / "d.npy").write_bytes(b"garbage")
    with pytest.raises(FormatError, match=r"d\.npy.*unreadable npy"):
        read_npy2023(tmp_path / "d.npy", tmp_path / "l.pkl")
