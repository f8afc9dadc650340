"""Every range check of the data layer tested exactly at its boundary (flipping a comparison
makes one of these fail): class ids, label intervals, keypoint coordinates and scores, and the
heatmap score cutoff (pyskl's convention: a point is skipped when ``value < eps``)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from migalab.data.datamodule import ClipDataModule
from migalab.data.formats.errors import FormatError, class_id
from migalab.data.formats.miga2025 import read_label_csv
from migalab.data.prepare.release import COORD_TOLERANCE, check_coordinates
from migalab.data.record import ClipRecord
from migalab.data.skeleton.heatmaps import (
    SCORE_EPS,
    joint_heatmaps,
    joint_heatmaps_reference,
    limb_heatmaps,
    limb_heatmaps_reference,
)
from migalab.data.skeleton.transforms.validation import validate_clip

K = 32


@pytest.mark.parametrize(("label", "ok"), [(K - 1, True), (K, False), (-1, True), (-2, False)])
def test_class_id(label: int, ok: bool) -> None:
    if ok:
        assert class_id("f.pkl", "sample 0", label, K) == label
    else:
        with pytest.raises(FormatError, match="outside 0..31"):
            class_id("f.pkl", "sample 0", label, K)


class _Labels:
    def __init__(self, labels: list[int]) -> None:
        self.labels = np.asarray(labels)

    def clip_name(self, i: int) -> str:
        return f"clip_{i}"


@pytest.mark.parametrize(
    ("split", "label", "ok"),
    [("train", K - 1, True), ("train", K, False), ("train", -1, False), ("train", 0, True),
     ("val", K - 1, True), ("val", K, False), ("val", -1, True), ("val", -2, False),
     ("test", -2, False), ("train", -2, False)],
)  # fmt: skip
def test_datamodule_check_labels(split: str, label: int, ok: bool) -> None:
    """ClipDataModule.check_labels (run at setup): ids >= K or < -1 in any split, -1 in
    training."""
    dm = SimpleNamespace(datasets={split: _Labels([0, label])}, num_classes=K, cache_dir="c")
    if ok:
        ClipDataModule.check_labels(dm)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match=rf"clip_1 \(label {label}\)"):
            ClipDataModule.check_labels(dm)  # type: ignore[arg-type]


@pytest.mark.parametrize(("end", "ok"), [(9, True), (10, False)])
def test_label_interval_ends_on_the_last_table_row(tmp_path: Path, end: int, ok: bool) -> None:
    """A 10-frame table: an interval ending on frame 9 (the last row) is fine, frame 10 is one
    past the table."""
    path = tmp_path / "0001_label.csv"
    path.write_text(f"1,0,{end}\n")
    if ok:
        assert read_label_csv(path, num_frames=10) == [(0, 0, end)]
    else:
        with pytest.raises(FormatError, match="past the last frame 9"):
            read_label_csv(path, num_frames=10)


def _table(value: float, column: int) -> np.ndarray:
    table = np.zeros((2, 411), np.float32)
    table[1, column] = value
    return table


@pytest.mark.parametrize("axis", [0, 1])
def test_coordinates_at_the_bounds(axis: int) -> None:
    """x (column 0) / y (column 1) exactly at -tolerance x size and (1 + tolerance) x size pass;
    the next float32 outside does not."""
    h, w = 720, 1280
    size = (w, h)[axis]
    lo, hi = np.float32(-COORD_TOLERANCE * size), np.float32((1 + COORD_TOLERANCE) * size)
    for ok in (lo, hi):
        check_coordinates("t.csv", _table(ok, axis), (h, w))
    for bad in (np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))):
        with pytest.raises(FormatError, match="row 2"):
            check_coordinates("t.csv", _table(bad, axis), (h, w))


def _record(score: float) -> ClipRecord:
    sc = np.ones((1, 3, 22), np.float32)
    sc[0, 1, 4] = score
    return ClipRecord(name="c", video_id="v", start=0, end=2, label=0,
                      keypoint=np.full((1, 3, 22, 2), 10, np.float32), keypoint_score=sc,
                      img_shape=(720, 1280), layout="imigue22")  # fmt: skip


def test_scores_at_zero() -> None:
    validate_clip(_record(0.0))
    with pytest.raises(ValueError, match="negative keypoint scores"):
        validate_clip(_record(-np.finfo(np.float32).smallest_subnormal))


@pytest.mark.parametrize(
    ("score", "drawn"),
    [(np.float32(SCORE_EPS), True), (np.nextafter(np.float32(SCORE_EPS), np.float32(0)), False)],
)
def test_heatmap_score_cutoff(score: np.float32, drawn: bool) -> None:
    """A point scoring exactly the cutoff is drawn, one just below is not (pyskl skips
    ``value < eps``), in the vectorised and the reference renderer, for joints and limbs."""
    kp = np.array([[[[8.0, 8.0], [12.0, 8.0]]]], np.float32)  # (M=1, T=1, V=2, 2)
    sc = np.array([[[score, score]]], np.float32)
    for render in (joint_heatmaps, joint_heatmaps_reference):
        vol = render(kp, sc, (16, 16))
        assert (vol.max() > 0) == drawn, render.__name__
    for render in (limb_heatmaps, limb_heatmaps_reference):
        vol = render(kp, sc, [(0, 1)], (16, 16))
        assert (vol.max() > 0) == drawn, render.__name__


def test_class_id_messages_name_the_file_and_the_conversion() -> None:
    with pytest.raises(FormatError) as err:
        class_id("f.pkl", "sample 3", 99, K)
    assert str(err.value) == (
        "f.pkl: sample 3: label 99 outside 0..31 (-1 = unknown); raw release ids (1-based, 99) "
        "must be converted (k -> k-1, 99 -> 31)"
    )
    with pytest.raises(FormatError) as err:
        class_id("f.pkl", "sample 3", "x1", K)
    assert str(err.value) == "f.pkl: sample 3: label 'x1' is not an integer"
    assert class_id("f.pkl", "sample 3", "7", K) == 7 and class_id("f", "s", 3.0, K) == 3
