"""pyskl annotation pickle: round trip and errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats.errors import FormatError
from migalab.data.formats.pyskl import infer_layout, read_pyskl, write_pyskl
from migalab.data.record import UNKNOWN_LABEL, ClipRecord


def rec(name: str, v: int = 22, t: int = 7, label: int = 3, **kw) -> ClipRecord:
    rng = np.random.default_rng(len(name))
    return ClipRecord(
        name=name,
        video_id=name.split("_")[0],
        start=10,
        end=10 + t - 1,
        label=label,
        keypoint=rng.uniform(0, 500, (1, t, v, 2)).astype(np.float32),
        keypoint_score=rng.uniform(0, 1, (1, t, v)).astype(np.float32),
        img_shape=(720, 1280),
        layout=infer_layout(v),
        **kw,
    )


def test_round_trip(tmp_path: Path) -> None:
    train = [rec("0001_0", emotion=1, video_path="/v/0001.mp4"), rec("0001_1", label=31)]
    test = [rec("0002_0", v=137, label=UNKNOWN_LABEL)]
    path = write_pyskl(tmp_path / "ann.pkl", {"train": train, "test": test})
    with open(path, "rb") as f:
        raw = pickle.load(f)
    assert set(raw) == {"split", "annotations"} and raw["split"]["train"] == ["0001_0", "0001_1"]
    ann = raw["annotations"][0]
    assert ann["keypoint"].shape == (1, 7, 22, 2) and ann["total_frames"] == 7
    got = read_pyskl(path)
    assert list(got) == ["train", "test"]
    for a, b in zip(got["train"] + got["test"], train + test, strict=True):
        assert (a.name, a.video_id, a.start, a.end, a.label) == (
            b.name, b.video_id, b.start, b.end, b.label,
        )  # fmt: skip
        assert (a.layout, a.img_shape, a.emotion, a.video_path) == (
            b.layout, b.img_shape, b.emotion, b.video_path,
        )  # fmt: skip
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.keypoint_score, b.keypoint_score)
    assert got["test"][0].layout == "openpose137" and got["train"][0].meta["split"] == "train"
    assert not list(tmp_path.glob(".*tmp"))


def test_plain_pyskl_annotation(tmp_path: Path) -> None:
    """A pickle as pyskl writes it (no extras): layout from V, start 0, end T-1."""
    ann = {
        "frame_dir": "0003_5",
        "label": 2,
        "img_shape": (720, 1280),
        "total_frames": 4,
        "keypoint": np.zeros((1, 4, 36, 2), np.float32),
        "keypoint_score": np.ones((1, 4, 36), np.float32),
    }
    path = tmp_path / "a.pkl"
    with open(path, "wb") as f:
        pickle.dump({"split": {"val": ["0003_5"]}, "annotations": [ann]}, f)
    (r,) = read_pyskl(path)["val"]
    assert (r.layout, r.video_id, r.start, r.end, r.label) == ("mg36", "0003", 0, 3, 2)
    # a layout is checked against the data: a known one with another joint count, or an
    # unknown name, is refused naming the annotation
    with pytest.raises(FormatError, match=r"0003_5\): layout 'imigue22' has 22 joints but .*V=36"):
        read_pyskl(path, layout="imigue22")
    with pytest.raises(FormatError, match="unknown joint layout 'custom'"):
        read_pyskl(path, layout="custom")


def test_labels_are_range_checked(tmp_path: Path) -> None:
    """A raw release id (99) or any id past the classes is refused, naming the annotation."""
    for bad in (99, 32, -2):
        path = write_pyskl(tmp_path / "ann.pkl", {"train": [rec("0001_0", label=bad)]})
        with pytest.raises(
            FormatError, match=rf"annotation 0 \(0001_0\): label {bad} outside 0..31"
        ):
            read_pyskl(path)
    path = write_pyskl(tmp_path / "ann.pkl", {"test": [rec("0001_0", label=-1)]})
    assert read_pyskl(path)["test"][0].label == -1  # unknown (hidden test labels)


def test_three_channel_keypoints(tmp_path: Path) -> None:
    """(M, T, V, 3) without keypoint_score: (x, y, score) is read; (x, y, z) is refused, never
    read with z as a confidence."""
    kp = np.random.default_rng(1).uniform(0, 500, (1, 4, 22, 3)).astype(np.float32)
    kp[..., 2] = 0.7
    ann = {"frame_dir": "0003_5", "label": 2, "img_shape": (720, 1280), "total_frames": 4,
           "keypoint": kp}  # fmt: skip
    path = tmp_path / "a.pkl"
    path.write_bytes(pickle.dumps({"annotations": [ann]}))
    (r,) = read_pyskl(path)["all"]
    np.testing.assert_allclose(r.keypoint_score, 0.7)
    kp[..., 2] = np.random.default_rng(2).uniform(-300, 300, (1, 4, 22))  # a depth axis
    path.write_bytes(pickle.dumps({"annotations": [ann]}))
    with pytest.raises(FormatError, match="3-D skeletons .* are not supported"):
        read_pyskl(path)


def test_missing_key_names_index(tmp_path: Path) -> None:
    path = write_pyskl(tmp_path / "a.pkl", {"train": [rec("0001_0"), rec("0001_1")]})
    with open(path, "rb") as f:
        obj = pickle.load(f)
    del obj["annotations"][1]["img_shape"]
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    with pytest.raises(FormatError) as exc:
        read_pyskl(path)
    msg = str(exc.value)
    assert "a.pkl" in msg and "annotation 1" in msg and "img_shape" in msg


def test_missing_frame_dir_and_annotations(tmp_path: Path) -> None:
    path = tmp_path / "a.pkl"
    with open(path, "wb") as f:
        pickle.dump({"split": {}, "annotations": [{"label": 1}]}, f)
    with pytest.raises(FormatError, match=r"annotation 0 .*frame_dir"):
        read_pyskl(path)
    with open(path, "wb") as f:
        pickle.dump({"split": {}}, f)
    with pytest.raises(FormatError, match=r"a\.pkl.*'annotations'"):
        read_pyskl(path)
    path.write_bytes(b"junk")
    with pytest.raises(FormatError, match=r"a\.pkl.*unreadable pickle"):
        read_pyskl(path)


def test_split_names_unknown_clip(tmp_path: Path) -> None:
    path = write_pyskl(tmp_path / "a.pkl", {"train": [rec("0001_0")]})
    with open(path, "rb") as f:
        obj = pickle.load(f)
    obj["split"]["train"].append("0009_9")
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    with pytest.raises(FormatError, match="0009_9"):
        read_pyskl(path)


def test_infer_layout() -> None:
    assert [infer_layout(v) for v in (22, 36, 137)] == ["imigue22", "mg36", "openpose137"]
    with pytest.raises(ValueError):
        infer_layout(5)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_numpy_scalars_and_old_protocols_load(tmp_path: Path, protocol: int) -> None:
    """pyskl's own pickles (NumPy scalars, protocol 2 from older tooling) are plain data."""
    kp = np.random.default_rng(0).uniform(0, 500, (1, 5, 22, 2)).astype(np.float32)
    ann = {"frame_dir": "0003_5", "label": np.int64(2), "img_shape": (np.int64(720), 1280),
           "total_frames": np.int64(5), "keypoint": kp,
           "keypoint_score": np.ones((1, 5, 22), np.float16)}  # fmt: skip
    path = tmp_path / "ann.pkl"
    path.write_bytes(pickle.dumps({"split": {"xsub_val": ["0003_5"]}, "annotations": [ann]},
                                  protocol=protocol))  # fmt: skip
    (got,) = read_pyskl(path)["xsub_val"]
    assert got.label == 2 and got.end == 4
    np.testing.assert_array_equal(got.keypoint, kp)


def test_pickle_that_carries_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "ann.pkl"
    path.write_bytes(pickle.dumps({"split": {}, "annotations": [], "x": _RunsCode(marker)}))
    with pytest.raises(FormatError, match=r"ann\.pkl: unreadable pickle .*posix\.system"):
        read_pyskl(path)
    assert not marker.exists()
