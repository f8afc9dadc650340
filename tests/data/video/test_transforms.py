"""Tests for ``migalab.data.video.transforms`` (person box, crop + resize, clip transform)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from migalab.data.video.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    VideoClipTransform,
    crop_resize,
    denormalize,
    person_box,
    scale_box,
)


def _grid_keypoints(
    x_range: tuple[float, float], y_range: tuple[float, float], m: int = 1, t: int = 5, v: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """(M, T, V, 2) keypoints spread over a rectangle (corners included), all valid."""
    rng = np.random.default_rng(0)
    kp = np.empty((m, t, v, 2), dtype=np.float32)
    kp[..., 0] = rng.uniform(*x_range, size=(m, t, v))
    kp[..., 1] = rng.uniform(*y_range, size=(m, t, v))
    kp[0, 0, 0] = (x_range[0], y_range[0])
    kp[0, 0, 1] = (x_range[1], y_range[1])
    return kp, np.ones((m, t, v), dtype=np.float32)


def _pattern(t: int, h: int, w: int) -> np.ndarray:
    """(T, H, W, 3) uint8 smooth colour pattern (resizing-friendly)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack(
        [
            128 + 100 * np.sin(x / 9.0),
            128 + 100 * np.cos(y / 7.0),
            128 + 60 * np.sin((x + y) / 13.0),
        ],
        axis=-1,
    )
    return np.broadcast_to(img.round().astype(np.uint8), (t, h, w, 3)).copy()


# --------------------------------------------------------------------------------------------
# person_box / scale_box
# --------------------------------------------------------------------------------------------
def test_person_box_known_extent_margin_and_square() -> None:
    kp, sc = _grid_keypoints((100, 300), (50, 450))
    # missing keypoints far away must be ignored
    kp[0, 1, 3] = (5000, 5000)
    sc[0, 1, 3] = 0
    kp[0, 2, 4] = (0, 0)
    sc[0, 2, 4] = 0
    box = person_box(kp, sc, (720, 1280), margin=0.1, square=False, quantile=0.0, min_size=0)
    # extent in pixel edges: x [100.5, 300.5] (w 200), y [50.5, 450.5] (h 400)
    np.testing.assert_allclose(box, [80.5, 10.5, 320.5, 490.5], atol=1e-4)
    assert box.dtype == np.float64 and box.shape == (4,)

    sq = person_box(kp, sc, (720, 1280), margin=0.1, square=True, quantile=0.0, min_size=0)
    # side = max(240, 480) = 480 around centre (200.5, 250.5)
    np.testing.assert_allclose(sq, [-39.5, 10.5, 440.5, 490.5], atol=1e-4)


def test_person_box_multiple_persons_union() -> None:
    kp, sc = _grid_keypoints((100, 200), (100, 200), m=2)
    kp[1] = kp[0] + 300.0  # second person to the lower right (corners included)
    box = person_box(kp, sc, (720, 1280), margin=0.0, square=False, quantile=0.0, min_size=0)
    np.testing.assert_allclose(box, [100.5, 100.5, 500.5, 500.5], atol=1e-4)


def test_person_box_quantile_ignores_glitch() -> None:
    kp, sc = _grid_keypoints((400, 600), (100, 400), t=20, v=25)  # 500 points
    clean = person_box(kp, sc, (720, 1280), margin=0.0, square=False)
    kp[0, 7, 3] = (1270, 710)  # one glitched keypoint in the far corner
    glitch = person_box(kp, sc, (720, 1280), margin=0.0, square=False)
    exact = person_box(kp, sc, (720, 1280), margin=0.0, square=False, quantile=0.0)
    assert exact[2] == pytest.approx(1270.5) and exact[3] == pytest.approx(710.5)
    assert glitch[2] < 620 and glitch[3] < 420
    np.testing.assert_allclose(glitch, clean, atol=5.0)
    # robust extent stays close to the true body extent
    np.testing.assert_allclose(clean, [400.5, 100.5, 600.5, 400.5], atol=10.0)


def test_person_box_all_missing_is_centred_square() -> None:
    kp, sc = _grid_keypoints((100, 300), (50, 450))
    box = person_box(kp, np.zeros_like(sc), (720, 1280))
    np.testing.assert_allclose(box, [280, 0, 1000, 720])
    box = person_box(kp, np.zeros_like(sc), (400, 300))  # portrait frame
    np.testing.assert_allclose(box, [0, 50, 300, 350])


def test_person_box_min_size() -> None:
    kp = np.zeros((1, 3, 4, 2), dtype=np.float32)
    sc = np.zeros((1, 3, 4), dtype=np.float32)
    kp[0, 1, 2] = (640, 360)
    sc[0, 1, 2] = 0.8
    box = person_box(kp, sc, (720, 1280), min_size=0.2)
    side = 0.2 * 720
    np.testing.assert_allclose(
        box, [640.5 - side / 2, 360.5 - side / 2, 640.5 + side / 2, 360.5 + side / 2]
    )
    # not square: each side grown separately to the minimum
    kp2, sc2 = _grid_keypoints((100, 400), (100, 110))
    b = person_box(kp2, sc2, (720, 1280), margin=0.0, square=False, quantile=0.0, min_size=0.2)
    assert b[2] - b[0] == pytest.approx(300.0) and b[3] - b[1] == pytest.approx(144.0)


def test_scale_box() -> None:
    np.testing.assert_allclose(
        scale_box(np.array([0, 0, 1280, 720]), (720, 1280), (180, 320)), [0, 0, 320, 180]
    )
    np.testing.assert_allclose(
        scale_box([100, 200, 300, 400], (720, 1280), (180, 320)), [25, 50, 75, 100]
    )
    np.testing.assert_allclose(scale_box([10, 10, 20, 20], (100, 100), (200, 50)), [5, 20, 10, 40])


# --------------------------------------------------------------------------------------------
# crop_resize
# --------------------------------------------------------------------------------------------
def test_crop_resize_partly_outside_pads_with_zeros() -> None:
    frames = _pattern(3, 100, 160)
    box = np.array([-20.0, 10.0, 80.0, 110.0])  # 100 x 100, leaves the frame left and bottom
    out = crop_resize(frames, box, 50)
    assert out.shape == (3, 3, 50, 50) and out.dtype == torch.uint8 and out.is_contiguous()

    # box -> output scale 0.5: in-frame part is x [0, 80) -> cols [10, 50), y [10, 100) -> [0, 45)
    assert (out[:, :, :, :10] == 0).all()
    assert (out[:, :, 45:, :] == 0).all()
    assert (out[:, :, :45, 10:] > 0).float().mean() > 0.95

    # hand-made reference: pad the crop at full resolution, then resize (float, antialias)
    canvas = np.zeros((3, 100, 100, 3), dtype=np.uint8)
    canvas[:, 0:90, 20:100] = frames[:, 10:100, 0:80]
    ref = TF.resize(torch.from_numpy(canvas).permute(0, 3, 1, 2).float(), [50, 50], antialias=True)
    # compare away from the padding seam (where the reference blurs in the black border)
    diff = (out[:, :, :43, 12:].float() - ref[:, :, :43, 12:]).abs()
    assert diff.max() <= 3.0, diff.max()

    # torch input gives the same result; rectangular output size
    np.testing.assert_array_equal(crop_resize(torch.from_numpy(frames), box, 50), out)
    assert crop_resize(frames, box, (40, 30)).shape == (3, 3, 40, 30)


def test_crop_resize_in_frame_matches_resized_crop_and_outside_is_black() -> None:
    frames = _pattern(2, 100, 160)
    out = crop_resize(frames, [30, 20, 130, 70], (25, 50))
    ref = TF.resized_crop(
        torch.from_numpy(frames).permute(0, 3, 1, 2).float(),
        20,
        30,
        50,
        100,
        [25, 50],
        antialias=True,
    )
    assert (out.float() - ref).abs().max() <= 2.0
    # fully outside -> all black; read-only input works
    frames.setflags(write=False)
    assert (crop_resize(frames, [200, 200, 300, 300], 16) == 0).all()
    assert crop_resize(frames, [0, 0, 160, 100], 32).shape == (2, 3, 32, 32)


def test_crop_resize_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="T, H, W, 3"):
        crop_resize(np.zeros((2, 3, 8, 8), np.uint8), [0, 0, 8, 8], 4)
    with pytest.raises(ValueError, match="uint8"):
        crop_resize(np.zeros((2, 8, 8, 3), np.float32), [0, 0, 8, 8], 4)


# --------------------------------------------------------------------------------------------
# VideoClipTransform
# --------------------------------------------------------------------------------------------
def test_eval_transform_shape_determinism_and_roundtrip() -> None:
    frames = _pattern(4, 90, 120)
    box = np.array([10.0, -5.0, 90.0, 75.0])
    tr = VideoClipTransform(size=32)
    a, b = tr(frames, box), VideoClipTransform(size=32, seed=5)(frames, box)
    assert a.shape == (3, 4, 32, 32) and a.dtype == torch.float32 and a.is_contiguous()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, tr(frames, box), rtol=0, atol=0)

    # box=None on frames already at the output size: exact round trip through denormalize
    crop = _pattern(3, 32, 32)
    x = tr(crop)
    back = denormalize(x)
    assert back.dtype == np.uint8 and back.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(back, crop)


def test_normalisation_mean_colour_is_zero() -> None:
    mean_rgb = np.round(np.array(KINETICS_MEAN) * 255).astype(np.uint8)
    frames = np.broadcast_to(mean_rgb, (2, 40, 60, 3)).copy()
    x = VideoClipTransform(size=16)(frames)
    assert x.abs().max() < 0.5 / 255 / min(KINETICS_STD) + 1e-4
    white = VideoClipTransform(size=16)(np.full((1, 8, 8, 3), 255, np.uint8))
    expected = (1 - torch.tensor(KINETICS_MEAN)) / torch.tensor(KINETICS_STD)
    torch.testing.assert_close(white[:, 0, 0, 0], expected)


def test_flip_equals_mirrored_output() -> None:
    frames = _pattern(3, 60, 80)
    box = np.array([5.0, 0.0, 65.0, 60.0])
    tr = VideoClipTransform(size=24)
    torch.testing.assert_close(tr(frames, box, flip=True), tr(frames, box).flip(-1), rtol=0, atol=0)


def test_train_crop_is_temporally_consistent_and_seeded() -> None:
    frames = _pattern(5, 80, 100)  # identical frames
    box = np.array([10.0, 0.0, 90.0, 80.0])
    tr = VideoClipTransform(size=24, train=True, seed=123)
    outs = [tr(frames, box) for _ in range(3)]
    for x in outs:
        for t in range(1, 5):
            torch.testing.assert_close(x[:, t], x[:, 0], rtol=0, atol=0)
    assert not torch.equal(outs[0], outs[1])  # a new crop per call

    tr2 = VideoClipTransform(size=24, train=True, seed=123)
    for x in outs:
        torch.testing.assert_close(tr2(frames, box), x, rtol=0, atol=0)

    # seed=None follows torch's seed (DataLoader workers / seed_everything)
    torch.manual_seed(7)
    a = VideoClipTransform(size=24, train=True)(frames, box)
    torch.manual_seed(7)
    torch.testing.assert_close(
        VideoClipTransform(size=24, train=True)(frames, box), a, rtol=0, atol=0
    )


def test_train_crop_stays_inside_box() -> None:
    rng = np.random.default_rng(0)
    frames = np.empty((2, 90, 120, 3), dtype=np.uint8)
    frames[:] = (255, 0, 255)  # unique colour outside the box
    x0, y0, x1, y1 = 30, 10, 100, 70
    frames[:, y0:y1, x0:x1] = rng.integers(0, 51, size=(2, y1 - y0, x1 - x0, 3))
    box = np.array([x0, y0, x1, y1], dtype=np.float64)
    tr = VideoClipTransform(
        size=20, train=True, area_range=(0.1, 1.0), ratio_range=(0.5, 2.0), seed=0
    )
    for _ in range(30):
        sub = tr.sample_crop(box)
        assert sub[0] >= x0 and sub[1] >= y0 and sub[2] <= x1 and sub[3] <= y1
        area = (sub[2] - sub[0]) * (sub[3] - sub[1]) / ((x1 - x0) * (y1 - y0))
        assert 0.1 - 1e-9 <= area <= 1.0 + 1e-9
        img = denormalize(tr(frames, box, flip=bool(rng.integers(2))))
        assert img.max() <= 51  # any bleed of the 255-valued outside colour would show


def test_transform_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="area_range"):
        VideoClipTransform(area_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="box"):
        VideoClipTransform(size=8)(np.zeros((1, 8, 8, 3), np.uint8), np.array([0, 0, np.nan, 8]))
