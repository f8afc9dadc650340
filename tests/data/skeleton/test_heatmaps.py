"""PoseC3D pseudo-heatmaps: pyskl semantics, vectorised == reference == torch, transform, module."""

import math

import numpy as np
import pytest
import torch

from migalab.data.record import ClipRecord
from migalab.data.skeleton import heatmaps as hm
from migalab.data.skeleton.heatmaps import (
    GeneratePoseTarget,
    HeatmapRenderer,
    heatmap_channels,
    joint_heatmaps,
    joint_heatmaps_reference,
    joint_heatmaps_torch,
    limb_heatmaps,
    limb_heatmaps_reference,
    limb_heatmaps_torch,
)
from migalab.data.skeleton.layouts import get_layout

SIGMA = 0.6

# a symmetric toy layout: 0 head, 1/2 left/right shoulder, 3/4 left/right hand
TOY_FLIP = np.array([0, 2, 1, 4, 3])
TOY_LIMBS = [(0, 1), (0, 2), (1, 3), (2, 4)]
TOY_LIMB_FLIP = np.array([1, 0, 3, 2])  # limb l maps to limb TOY_LIMB_FLIP[l] under the flip


def one_point(x: float, y: float, s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A single keypoint as (M=1, T=1, V=1, 2) coordinates and (1, 1, 1) score."""
    return np.array([[[[x, y]]]], np.float32), np.array([[[s]]], np.float32)


def gauss(d2: np.ndarray | float, sigma: float = SIGMA) -> np.ndarray:
    return np.exp(-np.asarray(d2, np.float64) / (2 * sigma**2))


def random_clip(
    rng: np.random.Generator, m: int, t: int, v: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints spread over (and a bit beyond) the canvas; ~15 % missing, a few NaN / low."""
    h, w = size
    kp = rng.uniform([-4, -4], [w + 3, h + 3], size=(m, t, v, 2)).astype(np.float32)
    # some short limbs / near-duplicate points so the degenerate branch is exercised
    kp[:, :, 1] = kp[:, :, 0] + rng.uniform(-0.6, 0.6, size=(m, t, 2))
    sc = rng.uniform(0.05, 1.0, size=(m, t, v)).astype(np.float32)
    missing = rng.random((m, t, v)) < 0.15
    sc[missing], kp[missing] = 0.0, 0.0
    sc[rng.random((m, t, v)) < 0.02] = 5e-5  # below eps
    kp[rng.random((m, t, v)) < 0.02] = np.nan
    return kp, sc


def random_limbs(rng: np.random.Generator, v: int, n: int) -> list[tuple[int, int]]:
    pairs = [tuple(int(i) for i in rng.integers(0, v, 2)) for _ in range(n)]
    return [(0, 1), (1, 0), (2, 2), *pairs]


# --------------------------------------------------------------------------------------------
# joint maps: pyskl values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [joint_heatmaps, joint_heatmaps_reference])
def test_peak_at_keypoint(fn):
    kp, sc = one_point(20.0, 30.0, 0.8)
    vol = fn(kp, sc, (48, 40))
    assert vol.shape == (1, 1, 48, 40) and vol.dtype == np.float32
    assert np.unravel_index(vol[0, 0].argmax(), (48, 40)) == (30, 20)
    assert vol[0, 0, 30, 20] == pytest.approx(0.8, abs=1e-7)
    kp, sc = one_point(20.3, 29.6, 1.0)
    vol = fn(kp, sc, (48, 40))
    assert np.unravel_index(vol[0, 0].argmax(), (48, 40)) == (30, 20)  # rounded keypoint


def test_subpixel_matches_closed_form_inside_pyskl_window():
    x, y, s = 10.5, 7.25, 0.7
    vol = joint_heatmaps(*one_point(x, y, s), (20, 24))[0, 0]
    xs, ys = np.arange(24), np.arange(20)
    expected = s * gauss((xs[None, :] - x) ** 2 + (ys[:, None] - y) ** 2)
    # pyskl window: [int(m - 3 sigma), int(m + 3 sigma) + 1) -> x in [8, 13), y in [5, 10)
    win = np.zeros((20, 24), bool)
    win[5:10, 8:13] = True
    np.testing.assert_allclose(vol[win], expected[win], rtol=1e-6, atol=1e-7)
    assert (vol[~win] == 0).all()
    # the truncated window is asymmetric: x = 8 (2.5 px left) is drawn, x = 13 (2.5 px right) not
    assert vol[7, 8] > 0 and vol[7, 13] == 0


def test_score_weighting_missing_and_eps():
    kp = np.array([[[[12.3, 9.8], [5.0, 5.0], [7.0, 7.0], [np.nan, 3.0]]]], np.float32)
    sc = np.array([[[0.5, 0.0, 5e-5, 1.0]]], np.float32)
    vol = joint_heatmaps(kp, sc, (16, 16))
    full = joint_heatmaps(kp, np.ones_like(sc), (16, 16))
    np.testing.assert_allclose(vol[0], 0.5 * full[0], rtol=1e-6)
    assert not vol[1:].any()  # score 0, below eps, NaN coordinate -> nothing
    assert full[1].any() and full[2].any() and not full[3].any()


def test_window_truncation_near_and_outside_canvas():
    size = (12, 12)
    # x = -2.3: int(-4.1) = -4 -> 0, int(-0.5) + 1 = 1 -> column 0 is drawn (pyskl truncation)
    vol = joint_heatmaps(*one_point(-2.3, 5.0), size)[0, 0]
    assert vol[:, 1:].max() == 0
    assert vol[5, 0] == pytest.approx(gauss(2.3**2), rel=1e-5)
    # x = -3.0: int(-1.2) + 1 = 0 -> empty window
    assert not joint_heatmaps(*one_point(-3.0, 5.0), size).any()
    # right / bottom edges: the window is clipped to the canvas
    vol = joint_heatmaps(*one_point(11.4, 12.9), size)[0, 0]
    assert vol[11, 11] == pytest.approx(gauss(0.4**2 + 1.9**2), rel=1e-5)
    assert vol[:9].max() == 0 and vol[:, :9].max() == 0
    assert not joint_heatmaps(*one_point(40.0, 5.0), size).any()
    assert not joint_heatmaps(*one_point(5.0, -50.0), size).any()


# --------------------------------------------------------------------------------------------
# limb maps
# --------------------------------------------------------------------------------------------
def limb_clip(a, b, sa=1.0, sb=1.0) -> tuple[np.ndarray, np.ndarray]:
    kp = np.array([[[a, b]]], np.float32)  # (1, 1, 2, 2)
    return kp, np.array([[[sa, sb]]], np.float32)


@pytest.mark.parametrize("fn", [limb_heatmaps, limb_heatmaps_reference])
def test_limb_line_value_and_falloff(fn):
    kp, sc = limb_clip((10.0, 20.0), (30.0, 20.0), 0.9, 0.7)
    vol = fn(kp, sc, [(0, 1)], (40, 40))[0, 0]
    np.testing.assert_allclose(vol[20, 10:31], 0.7, rtol=1e-6)  # min of the two scores
    assert (vol[21, 10:31] < vol[20, 10:31]).all() and (vol[22, 10:31] < vol[21, 10:31]).all()
    np.testing.assert_allclose(vol[21, 10:31], 0.7 * gauss(1.0), rtol=1e-5)
    assert vol[20, 31] == pytest.approx(0.7 * gauss(1.0), rel=1e-5)  # beyond end b: distance to b
    assert vol[20, 8] == pytest.approx(0.7 * gauss(4.0), rel=1e-5)  # before end a
    # diagonal segment through integer pixels
    kp, sc = limb_clip((10.0, 10.0), (20.0, 20.0), 0.6, 0.8)
    vol = fn(kp, sc, [(0, 1)], (32, 32))[0, 0]
    diag = vol[np.arange(10, 21), np.arange(10, 21)]
    np.testing.assert_allclose(diag, 0.6, rtol=1e-6)
    assert vol[12, 14] == pytest.approx(0.6 * gauss(2.0), rel=1e-5)  # 2 / sqrt(2) px off the line


@pytest.mark.parametrize("fn", [limb_heatmaps, limb_heatmaps_reference])
def test_degenerate_limb_is_point_of_end_a(fn):
    kp, sc = limb_clip((15.2, 15.1), (15.6, 15.4), 0.9, 0.5)
    vol = fn(kp, sc, [(0, 1)], (32, 32))[0]
    point = joint_heatmaps(kp[:, :, :1], sc[:, :, :1], (32, 32))[0]  # end a with score_a
    np.testing.assert_allclose(vol, point, atol=1e-7)
    kp, sc = limb_clip((15.2, 15.1), (15.2, 15.1), 0.9, 0.0)  # min score < eps -> nothing
    assert not fn(kp, sc, [(0, 1)], (32, 32)).any()


def test_limb_missing_end_gives_nothing():
    kp, sc = limb_clip((5.0, 5.0), (0.0, 0.0), 1.0, 0.0)
    assert not limb_heatmaps(kp, sc, [(0, 1), (1, 0)], (16, 16)).any()
    assert not limb_heatmaps_torch(
        torch.from_numpy(kp), torch.from_numpy(sc), [(0, 1)], (16, 16)
    ).any()


def test_max_over_two_persons():
    rng = np.random.default_rng(1)
    kp = rng.uniform(8, 14, size=(2, 3, 4, 2)).astype(np.float32)  # overlapping people
    sc = rng.uniform(0.2, 1.0, size=(2, 3, 4)).astype(np.float32)
    limbs = [(0, 1), (1, 2), (2, 3)]
    for fn, extra in ((joint_heatmaps, ()), (limb_heatmaps, (limbs,))):
        both = fn(kp, sc, *extra, (24, 24))
        each = [fn(kp[p : p + 1], sc[p : p + 1], *extra, (24, 24)) for p in range(2)]
        np.testing.assert_array_equal(both, np.maximum(*each))
        assert (both > each[0]).any() and (both > each[1]).any()


# --------------------------------------------------------------------------------------------
# vectorised == reference == torch
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(56, 56), (64, 48), (17, 23)])
@pytest.mark.parametrize("m", [1, 2])
def test_vectorised_equals_reference(size, m):
    rng = np.random.default_rng(hash((size, m)) % 2**32)
    kp, sc = random_clip(rng, m, 6, 7, size)
    np.testing.assert_allclose(
        joint_heatmaps(kp, sc, size), joint_heatmaps_reference(kp, sc, size), atol=1e-6, rtol=0
    )
    limbs = random_limbs(rng, 7, 8)
    np.testing.assert_allclose(
        limb_heatmaps(kp, sc, limbs, size),
        limb_heatmaps_reference(kp, sc, limbs, size),
        atol=1e-6,
        rtol=0,
    )
    np.testing.assert_allclose(
        joint_heatmaps(kp, None, size, sigma=1.3),
        joint_heatmaps_reference(kp, None, size, sigma=1.3),
        atol=1e-6,
        rtol=0,
    )


def test_low_scores_follow_pyskl_cutoff():
    """pyskl's GeneratePoseTarget draws nothing below EPS = 1e-3, judging a limb by its weaker
    end; checked side by side with pyskl's own class (scores U(0, 1e-2), sub-pixel limbs
    included: identical joints, limbs within 1.2e-7). Here the cases that decide it."""
    assert hm.SCORE_EPS == 1e-3
    kp = np.array([[[[4.0, 4.0], [10.0, 10.0], [10.3, 10.2]]]], np.float32)  # joint 2 ~ joint 1
    sc = np.array([[[5e-4, 2e-3, 0.9]]], np.float32)
    vol = joint_heatmaps(kp, sc, (16, 16))
    assert not vol[0].any() and vol[1].max() == pytest.approx(2e-3, rel=0.1)
    # a sub-pixel limb from a strong end (0.9) to a weak one (5e-4) draws nothing (pyskl: the
    # weaker end decides, before the sub-pixel point is drawn with the first end's score)
    sc = np.array([[[0.9, 5e-4, 0.9]]], np.float32)
    assert not limb_heatmaps(kp, sc, [(2, 1)], (16, 16)).any()
    assert not limb_heatmaps_reference(kp, sc, [(2, 1)], (16, 16)).any()
    assert not limb_heatmaps_torch(torch.from_numpy(kp), torch.from_numpy(sc), [(2, 1)],
                                   (16, 16)).any()  # fmt: skip
    sc[0, 0, 1] = 2e-3  # above the cutoff: the joint map of end a at its own score
    point_a = joint_heatmaps(kp[:, :, 2:3], sc[:, :, 2:3], (16, 16))
    np.testing.assert_allclose(limb_heatmaps(kp, sc, [(2, 1)], (16, 16)), point_a, atol=1e-7)


@pytest.mark.parametrize("m", [1, 2])
def test_low_scores_vectorised_equals_reference_and_torch(m):
    rng = np.random.default_rng(11 + m)
    size = (56, 56)
    kp, _ = random_clip(rng, m, 6, 7, size)
    sc = rng.uniform(0, 1e-2, kp.shape[:3]).astype(np.float32)
    limbs = random_limbs(rng, 7, 8)
    ref_j = joint_heatmaps_reference(kp, sc, size)
    ref_l = limb_heatmaps_reference(kp, sc, limbs, size)
    np.testing.assert_allclose(joint_heatmaps(kp, sc, size), ref_j, atol=1e-9, rtol=0)
    np.testing.assert_allclose(limb_heatmaps(kp, sc, limbs, size), ref_l, atol=1e-8, rtol=0)
    tk, ts = torch.from_numpy(kp), torch.from_numpy(sc)
    np.testing.assert_allclose(joint_heatmaps_torch(tk, ts, size).numpy(), ref_j, atol=1e-7)
    np.testing.assert_allclose(limb_heatmaps_torch(tk, ts, limbs, size).numpy(), ref_l, atol=1e-7)


def test_empty_inputs():
    kp, sc = np.zeros((1, 0, 3, 2), np.float32), np.zeros((1, 0, 3), np.float32)
    assert joint_heatmaps(kp, sc, (8, 8)).shape == (3, 0, 8, 8)
    assert limb_heatmaps(kp, sc, [], (8, 8)).shape == (0, 0, 8, 8)
    kp, sc = np.zeros((1, 2, 3, 2), np.float32), np.zeros((1, 2, 3), np.float32)
    assert not joint_heatmaps(kp, sc, (8, 8)).any()


@pytest.mark.parametrize("lead", [(), (3,), (2, 2)])
def test_torch_equals_numpy(lead, monkeypatch):
    monkeypatch.setattr(hm, "_CHUNK_ELEMENTS_CPU", 5000)  # force several chunks
    rng = np.random.default_rng(len(lead))
    size, m, t, v = (20, 28), 2, 5, 6
    clips = [random_clip(rng, m, t, v, size) for _ in range(math.prod(lead))]
    kp = np.stack([c[0] for c in clips]).reshape(*lead, m, t, v, 2)
    sc = np.stack([c[1] for c in clips]).reshape(*lead, m, t, v)
    limbs = random_limbs(rng, v, 5)
    jt = joint_heatmaps_torch(torch.from_numpy(kp), torch.from_numpy(sc), size)
    lt = limb_heatmaps_torch(torch.from_numpy(kp), torch.from_numpy(sc), limbs, size)
    assert jt.shape == (*lead, v, t, *size) and jt.dtype == torch.float32
    assert lt.shape == (*lead, len(limbs), t, *size)
    kp2, sc2 = kp.reshape(-1, m, t, v, 2), sc.reshape(-1, m, t, v)
    jn = np.stack([joint_heatmaps(k, s, size) for k, s in zip(kp2, sc2, strict=True)])
    ln = np.stack([limb_heatmaps(k, s, limbs, size) for k, s in zip(kp2, sc2, strict=True)])
    np.testing.assert_allclose(jt.reshape(jn.shape).numpy(), jn, atol=1e-5, rtol=0)
    np.testing.assert_allclose(lt.reshape(ln.shape).numpy(), ln, atol=1e-5, rtol=0)


def test_torch_score_none_and_float64_input():
    rng = np.random.default_rng(7)
    kp = rng.uniform(0, 16, size=(1, 3, 4, 2))
    out = joint_heatmaps_torch(torch.from_numpy(kp), None, (16, 16))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), joint_heatmaps(kp, None, (16, 16)), atol=1e-5)


# --------------------------------------------------------------------------------------------
# flip symmetry
# --------------------------------------------------------------------------------------------
def flipped(kp: np.ndarray, width: int) -> np.ndarray:
    out = kp[:, :, TOY_FLIP].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def test_flip_symmetry_exact_for_integer_window():
    # with sigma = 1 and integer keypoints pyskl's window [k - 3, k + 3] is symmetric
    rng = np.random.default_rng(3)
    size = (20, 26)
    kp = rng.integers(0, 20, size=(2, 4, 5, 2)).astype(np.float32)
    sc = rng.uniform(0.2, 1, size=(2, 4, 5)).astype(np.float32)
    kp[:, :, 4] = kp[:, :, 2]  # a zero-length limb (2, 4) <-> (1, 3) under the flip
    sc_f = sc[:, :, TOY_FLIP]
    kp_f = flipped(kp, size[1])
    j, jf = joint_heatmaps(kp, sc, size, 1.0), joint_heatmaps(kp_f, sc_f, size, 1.0)
    np.testing.assert_allclose(jf, np.flip(j, -1)[TOY_FLIP], atol=1e-6)
    lm = limb_heatmaps(kp, sc, TOY_LIMBS, size, 1.0)
    lf = limb_heatmaps(kp_f, sc_f, TOY_LIMBS, size, 1.0)
    np.testing.assert_allclose(lf, np.flip(lm, -1)[TOY_LIMB_FLIP], atol=1e-6)


def test_flip_symmetry_subpixel_within_window_edge():
    # pyskl's int() window is not mirror symmetric; the mismatch is bounded by the edge value
    rng = np.random.default_rng(4)
    size = (30, 30)
    kp = rng.uniform(3, 26, size=(1, 6, 5, 2)).astype(np.float32)
    sc = rng.uniform(0.2, 1, size=(1, 6, 5)).astype(np.float32)
    kp_f, sc_f = flipped(kp, size[1]), sc[:, :, TOY_FLIP]
    bound = math.exp(-4.5) + 1e-6  # value at the 3-sigma distance
    j, jf = joint_heatmaps(kp, sc, size), joint_heatmaps(kp_f, sc_f, size)
    diff = np.abs(jf - np.flip(j, -1)[TOY_FLIP])
    assert diff.max() <= bound
    lm, lf = limb_heatmaps(kp, sc, TOY_LIMBS, size), limb_heatmaps(kp_f, sc_f, TOY_LIMBS, size)
    assert np.abs(lf - np.flip(lm, -1)[TOY_LIMB_FLIP]).max() <= bound


# --------------------------------------------------------------------------------------------
# transform, module, helpers
# --------------------------------------------------------------------------------------------
def make_record(layout: str = "imigue22", m: int = 2, t: int = 8) -> ClipRecord:
    v = get_layout(layout).num_joints
    rng = np.random.default_rng(0)
    kp = rng.uniform(4, 44, size=(m, t, v, 2)).astype(np.float32)
    sc = rng.uniform(0.3, 1, size=(m, t, v)).astype(np.float32)
    sc[:, :, 3] = 0.0
    kp[:, :, 3] = 0.0
    return ClipRecord(
        name="0001_0", video_id="0001", start=0, end=t - 1, label=3, keypoint=kp,
        keypoint_score=sc, img_shape=(48, 56), layout=layout,
    )  # fmt: skip


def test_generate_pose_target_joint_and_limb():
    rec = make_record()
    kp_before = rec.keypoint.copy()
    joint = GeneratePoseTarget("joint")(rec)
    assert joint.shape == (22, 8, 48, 56) and joint.dtype == np.float32
    np.testing.assert_array_equal(joint, joint_heatmaps(rec.keypoint, rec.keypoint_score, (48, 56)))
    assert not joint[3].any()  # missing joint
    limbs = get_layout("imigue22").limbs
    limb = GeneratePoseTarget("limb")(rec)
    assert limb.shape == (len(limbs), 8, 48, 56)
    np.testing.assert_array_equal(
        limb, limb_heatmaps(rec.keypoint, rec.keypoint_score, limbs, (48, 56))
    )
    custom = GeneratePoseTarget("limb", limbs=[(0, 1), (1, 2)], sigma=1.0)(rec)
    assert custom.shape == (2, 8, 48, 56)
    no_score = GeneratePoseTarget("joint", use_score=False)(rec)
    present = (rec.keypoint_score > 0).astype(np.float32)
    np.testing.assert_array_equal(no_score, joint_heatmaps(rec.keypoint, present, (48, 56)))
    assert not no_score[3].any()
    np.testing.assert_array_equal(rec.keypoint, kp_before)
    assert "joint" in repr(GeneratePoseTarget())
    with pytest.raises(ValueError):
        GeneratePoseTarget("bone")


@pytest.mark.parametrize("stream", ["joint", "limb"])
def test_heatmap_renderer_matches_transform(stream):
    rec = make_record()
    limbs = get_layout("imigue22").limbs
    pts = np.concatenate([rec.keypoint, rec.keypoint_score[..., None]], axis=-1)
    batch = torch.from_numpy(np.stack([pts, pts]))  # (B=2, M, T, V, 3)
    renderer = HeatmapRenderer(stream, limbs=limbs if stream == "limb" else None)
    out = renderer(batch, (48, 56))
    c = heatmap_channels(22, stream, limbs)
    assert out.shape == (2, c, 8, 48, 56) and out.dtype == torch.float32
    expected = GeneratePoseTarget(stream, limbs=limbs)(rec)
    np.testing.assert_allclose(out[1].numpy(), expected, atol=1e-5)
    flat = HeatmapRenderer(stream, limbs=limbs, use_score=False)(batch[0], (48, 56))
    assert flat.shape == (c, 8, 48, 56)
    expected = GeneratePoseTarget(stream, limbs=limbs, use_score=False)(rec)
    np.testing.assert_allclose(flat.numpy(), expected, atol=1e-5)


def test_heatmap_channels_and_errors():
    assert heatmap_channels(17, "joint") == 17
    assert heatmap_channels(17, "limb") == 16
    assert heatmap_channels(17, "limb", [(0, 1)] * 19) == 19
    with pytest.raises(ValueError):
        heatmap_channels(17, "bone")
    with pytest.raises(ValueError):
        HeatmapRenderer("limb")
    with pytest.raises(ValueError):
        joint_heatmaps(np.zeros((2, 3, 2)), None, (8, 8))
    with pytest.raises(ValueError):
        limb_heatmaps(np.zeros((1, 2, 3, 2)), None, [(0, 3)], (8, 8))
    with pytest.raises(ValueError):
        joint_heatmaps(np.zeros((1, 2, 3, 2)), np.zeros((1, 2, 4)), (8, 8))
