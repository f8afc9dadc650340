"""Face tracks from the skeleton (boxes, fallback, flags, smoothing) and per-frame-box clip jobs."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from migalab.data.video.faces import (
    SOURCE_FACE,
    SOURCE_HEAD,
    SOURCE_NONE,
    face_track,
    keypoints137,
    smooth_missing,
)
from migalab.data.video.prepared_clips import (
    CSV_COLUMNS,
    ClipJob,
    PreparedClips,
    clips_are_current,
    clips_fingerprint,
    prepare_clips,
)
from tests.data.video.test_readers import decode_index, make_video

IMG = (720, 1280)


def _face_frame(cx: float, cy: float, half: float, conf: float = 0.9) -> np.ndarray:
    """(137, 3) keypoints with the 70 face landmarks on a square of side 2*half around (cx, cy)
    (corners included) and no body points."""
    kp = np.zeros((137, 3))
    ang = np.linspace(0, 2 * np.pi, 66, endpoint=False)
    pts = np.stack([cx + half * np.sign(np.cos(ang)) * np.minimum(1, np.abs(np.cos(ang)) * 2),
                    cy + half * np.sign(np.sin(ang)) * np.minimum(1, np.abs(np.sin(ang)) * 2)], 1)  # fmt: skip
    pts = np.concatenate([pts, [[cx - half, cy - half], [cx + half, cy + half], [cx, cy],
                                [cx, cy]]])  # fmt: skip
    kp[25:95, :2] = pts
    kp[25:95, 2] = conf
    return kp


def test_face_points_give_a_square_box_with_margin() -> None:
    kp = np.stack([_face_frame(600, 200, 40)] * 6)
    track = face_track(kp, IMG, margin=0.25, smooth=1)
    assert track.boxes.shape == (6, 4) and track.visible.shape == (6,)
    assert track.visible.dtype == bool and track.visible.all()
    assert (track.source == SOURCE_FACE).all()
    x0, y0, x1, y1 = track.boxes[0]
    assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(80 * 1.5)  # extent 80, 25 % each
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((600.5, 200.5))  # pixel centre + 0.5
    inside = kp[0, 25:95, :2] + 0.5
    assert (inside[:, 0] > x0).all() and (inside[:, 0] < x1).all()
    assert (inside[:, 1] > y0).all() and (inside[:, 1] < y1).all()


def test_few_face_points_fall_back_to_nose_eyes_ears() -> None:
    kp = np.stack([_face_frame(600, 200, 40)] * 3)
    kp[1, 25:95, 2] = 0.0  # no landmarks ...
    kp[1, 25:30, 2] = 0.9  # ... but 5 (< min_points), so not enough
    head = {0: (600, 205), 15: (585, 195), 16: (615, 195), 17: (560, 200), 18: (640, 200)}
    for j, (x, y) in head.items():
        kp[1, j] = (x, y, 0.9)
    track = face_track(kp, IMG, margin=0.0, smooth=1, min_points=10, ear_scale=1.0)
    assert list(track.source) == [SOURCE_FACE, SOURCE_HEAD, SOURCE_FACE]
    assert track.visible.all()
    x0, y0, x1, y1 = track.boxes[1]
    assert x1 - x0 == pytest.approx(80.0)  # ear to ear
    mean = np.mean(list(head.values()), 0) + 0.5
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx(tuple(mean))
    # eyes only: the eye distance x eye_scale; a lone nose: centre from it, side interpolated
    kp2 = kp.copy()
    kp2[1, [0, 17, 18], 2] = 0.0
    t2 = face_track(kp2, IMG, margin=0.0, smooth=1, eye_scale=2.5)
    assert t2.boxes[1, 2] - t2.boxes[1, 0] == pytest.approx(75.0)
    kp3 = kp.copy()
    kp3[1, [15, 16, 17, 18], 2] = 0.0
    t3 = face_track(kp3, IMG, margin=0.0, smooth=1)
    assert t3.visible[1] and t3.boxes[1, 2] - t3.boxes[1, 0] == pytest.approx(80.0)
    assert (t3.boxes[1, 0] + t3.boxes[1, 2]) / 2 == pytest.approx(600.5)


def test_no_face_is_flagged_and_the_box_is_interpolated_never_zeros() -> None:
    kp = np.stack([_face_frame(500 + 20 * t, 200, 40) for t in range(5)])
    kp[1:4] = 0.0  # frames 1-3: nothing at all
    track = face_track(kp, IMG, smooth=1)
    assert list(track.visible) == [True, False, False, False, True]
    assert list(track.source) == [SOURCE_FACE, SOURCE_NONE, SOURCE_NONE, SOURCE_NONE, SOURCE_FACE]
    cx = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    np.testing.assert_allclose(cx, 500.5 + 20 * np.arange(5))  # linear between frames 0 and 4
    assert np.isfinite(track.boxes).all() and (track.boxes[:, 2] > track.boxes[:, 0]).all()
    # held before the first / after the last visible frame
    kp_edge = np.stack([_face_frame(500, 200, 40)] * 4)
    kp_edge[[0, 3]] = 0.0
    t_edge = face_track(kp_edge, IMG, smooth=1)
    np.testing.assert_allclose(t_edge.boxes[0], t_edge.boxes[1])
    np.testing.assert_allclose(t_edge.boxes[3], t_edge.boxes[2])
    # low-confidence detections do not count
    low = np.stack([_face_frame(500, 200, 40, conf=0.1)] * 2)
    assert not face_track(low, IMG, threshold=0.3).visible.any()
    # nothing in the whole clip: flagged, a default centred box (not zeros)
    none = face_track(np.zeros((3, 137, 3)), IMG, default_side=0.1, margin=0.0)
    assert not none.visible.any()
    np.testing.assert_allclose(none.boxes[0], [640 - 36, 360 - 36, 640 + 36, 360 + 36])
    with pytest.raises(ValueError, match=r"\(T, 137, 3\)"):
        face_track(np.zeros((3, 22, 3)), IMG)


def test_smoothing_ignores_missing_frames() -> None:
    v = np.array([0.0, 10.0, np.nan, 30.0, 40.0, np.nan, np.nan, 100.0])
    out = smooth_missing(v, 3)
    # centred mean of the known values in the window; gaps then interpolated
    np.testing.assert_allclose(out[[0, 1, 3, 4, 7]], [5.0, 5.0, 35.0, 35.0, 100.0])
    np.testing.assert_allclose(out[[2, 5, 6]], [20.0, 35 + 65 / 3, 35 + 130 / 3])
    np.testing.assert_allclose(smooth_missing(v, 1)[[0, 2, 5]], [0.0, 20.0, 60.0])
    assert np.isnan(smooth_missing(np.full(4, np.nan), 3)).all()
    # a jittery track is smoothed: the frame-to-frame variation drops
    rng = np.random.default_rng(0)
    kp = np.stack([_face_frame(600 + rng.normal(0, 3), 200, 40) for _ in range(50)])
    raw = face_track(kp, IMG, smooth=1).boxes[:, 0]
    smooth = face_track(kp, IMG, smooth=7).boxes[:, 0]
    assert np.abs(np.diff(smooth)).mean() < 0.5 * np.abs(np.diff(raw)).mean()


def test_keypoints137_places_a_layouts_joints() -> None:
    kp = np.arange(2 * 22 * 2, dtype=float).reshape(2, 22, 2) + 1
    sc = np.ones((2, 22))
    full = keypoints137(kp, sc, "imigue22")
    assert full.shape == (2, 137, 3)
    np.testing.assert_allclose(full[:, 0, :2], kp[:, 0])  # nose first in imigue22
    assert full[:, 25:95].sum() == 0  # no face landmarks in imigue22
    # imigue22 has nose, eyes and ears: the head-point fallback works from it
    assert face_track(full, IMG).source.tolist() == [SOURCE_HEAD, SOURCE_HEAD]


# -- per-frame boxes in the clip cache ---------------------------------------------------------
@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("src") / "0001.mp4", num=30)


def test_per_frame_boxes_and_flags(video: Path, tmp_path: Path) -> None:
    n = 12
    boxes = np.tile([0.0, 0.0, 64.0, 48.0], (n, 1))
    boxes[1::2] = [-100.0, -100.0, -50.0, -50.0]  # odd frames: a box outside the frame (black)
    flags = np.arange(n) % 3 != 0
    plain = ClipJob("0001_0", str(video), 2, 13, (0.0, 0.0, 64.0, 48.0), "train")
    face = dataclasses.replace(plain, name="0001_1", boxes=boxes, flags=flags)
    res = prepare_clips([plain, face], tmp_path, size=32, gop=4, crf=18, progress=False)
    assert res.written == 2
    clips = PreparedClips(tmp_path)
    frames = clips.read("0001_1", np.arange(n))
    for k in range(n):
        if k % 2:
            assert frames[k].mean() < 8, k  # black
        else:
            assert decode_index(frames[k]) == 2 + k
    np.testing.assert_array_equal(clips.flags("0001_1"), flags)
    assert clips.flags("0001_0") is None
    assert clips_are_current(tmp_path, [plain, face], 32, 4, 18)
    moved = boxes.copy()
    moved[0] += 1.0
    assert not clips_are_current(
        tmp_path, [plain, dataclasses.replace(face, boxes=moved)], 32, 4, 18
    )
    other_flags = dataclasses.replace(face, flags=~flags)
    assert not clips_are_current(tmp_path, [plain, other_flags], 32, 4, 18)
    with pytest.raises(ValueError, match="boxes must be"):
        prepare_clips([dataclasses.replace(face, boxes=boxes[:3])], tmp_path / "x", size=32,
                      progress=False)  # fmt: skip


def test_person_crop_jobs_write_and_fingerprint_as_before(video: Path, tmp_path: Path) -> None:
    job = ClipJob("0001_0", str(video), 2, 13, (0.0, 0.0, 64.0, 48.0), "train")
    fp = clips_fingerprint([job], 32, 16, 20)
    with_none = dataclasses.replace(job, boxes=None, flags=None)
    assert clips_fingerprint([with_none], 32, 16, 20) == fp
    boxed = dataclasses.replace(job, boxes=np.tile(job.box, (12, 1)))
    assert clips_fingerprint([boxed], 32, 16, 20) != fp
    prepare_clips([job], tmp_path, size=32, progress=False)
    with open(tmp_path / "clips.csv", newline="") as f:
        assert tuple(next(csv.reader(f))) == CSV_COLUMNS  # no flags column
