import numpy as np
import pytest
import torch

from migalab.data.record import ClipRecord
from migalab.data.skeleton.heatmap_transforms import (
    CenterCrop,
    Flip,
    FormatHeatmapKeypoints,
    MultiView,
    PoseCompact,
    RandomResizedCrop,
    Resize,
    SelectPersons,
    build_heatmap_pipeline,
)
from migalab.data.skeleton.heatmaps import (
    HeatmapRenderer,
    joint_heatmaps_reference,
    limb_heatmaps_reference,
)
from migalab.data.skeleton.layouts import get_layout
from migalab.data.skeleton.transforms import uniform_frame_indices

H, W = 720, 1280


def make_record(
    layout: str = "openpose137", m: int = 1, t: int = 30, seed: int = 0, p_missing: float = 0.1
) -> ClipRecord:
    """A person-sized cloud of keypoints in a 1280x720 frame, some joints missing."""
    v = get_layout(layout).num_joints
    rng = np.random.default_rng(seed)
    kp = rng.uniform([500.0, 150.0], [800.0, 600.0], size=(m, 1, v, 2))
    kp = kp + rng.normal(0.0, 3.0, size=(m, t, v, 2))
    sc = rng.uniform(0.3, 1.0, size=(m, t, v))
    miss = rng.random((m, t, v)) < p_missing
    kp = np.where(miss[..., None], 0.0, kp).astype(np.float32)
    sc = np.where(miss, 0.0, sc).astype(np.float32)
    return ClipRecord("0001_2", "0001", 5, 5 + t - 1, 3, kp, sc, (H, W), layout=layout)


def points_record(pts, scores=None, img_shape=(H, W), layout="imigue22") -> ClipRecord:
    """One person, one frame; the first len(pts) joints at ``pts``, the rest missing."""
    v = get_layout(layout).num_joints
    kp = np.zeros((1, 1, v, 2), np.float32)
    sc = np.zeros((1, 1, v), np.float32)
    pts = np.asarray(pts, np.float32)
    kp[0, 0, : len(pts)] = pts
    sc[0, 0, : len(pts)] = 1.0 if scores is None else scores
    return ClipRecord("pts", "0001", 0, 0, 0, kp, sc, img_shape, layout=layout)


def all_missing(rec: ClipRecord) -> ClipRecord:
    return rec.replace(
        keypoint=np.zeros_like(rec.keypoint), keypoint_score=np.zeros_like(rec.keypoint_score)
    )


def limb_flip_index(layout) -> np.ndarray:
    """(L,) the limb each limb becomes under mirroring."""
    f = layout.flip_index
    pos = {frozenset(ab): i for i, ab in enumerate(layout.limbs)}
    return np.array([pos[frozenset((f[a], f[b]))] for a, b in layout.limbs])


# ------------------------------------------------------------------ PoseCompact
def test_pose_compact_square_box_contains_points():
    rec = points_record([[100, 200], [300, 260], [180, 240], [0, 0]], scores=[1, 1, 1, 0])
    out = PoseCompact()(rec)
    x0, y0, x1, y1 = out.meta["compact_box"]
    assert out.meta["compact"] == "crop" and out.img_shape == (y1 - y0, x1 - x0)
    assert x1 - x0 == y1 - y0  # square (hw_ratio=1)
    # width 200 * 1.25 = 250 around centre (200, 230): x in [75, 325], square -> y in [105, 355]
    assert (x0, x1) == (75, 325) and (y0, y1) == (105, 355)
    np.testing.assert_allclose(out.keypoint[0, 0, :3], [[25, 95], [225, 155], [105, 135]])
    assert np.all(out.keypoint[0, 0, 3:] == 0) and np.all(out.keypoint_score[0, 0, 3:] == 0)
    h, w = out.img_shape
    valid = out.keypoint_score > 0
    assert np.all(out.keypoint[valid] >= 0) and np.all(out.keypoint[valid] <= [w, h])
    assert rec.img_shape == (H, W) and rec.keypoint[0, 0, 1, 0] == 300  # input untouched


def test_pose_compact_random_clip_and_options():
    rec = make_record(m=2, t=12, seed=3)
    out = PoseCompact(padding=0.0)(rec)
    h, w = out.img_shape
    assert h == w
    valid = out.keypoint_score > 0
    assert np.all(out.keypoint[valid] >= 0) and np.all(out.keypoint[valid, 0] <= w)
    assert np.all(out.keypoint[valid, 1] <= h) and np.all(out.keypoint[~valid] == 0)
    # near the frame border: padding would cross it; allow_imgpad=False clips to the frame
    edge = points_record([[5, 5], [105, 45]])
    pad = PoseCompact()(edge)
    assert pad.meta["compact_box"][0] < 0 and pad.img_shape[0] == pad.img_shape[1]
    clipped = PoseCompact(allow_imgpad=False)(edge)
    x0, y0, x1, y1 = clipped.meta["compact_box"]
    assert x0 >= 0 and y0 >= 0 and clipped.img_shape == (y1 - y0, x1 - x0)
    assert PoseCompact(hw_ratio=None)(edge).img_shape != pad.img_shape  # not squared
    small = PoseCompact()(points_record([[100, 100], [105, 150]]))  # 5 px wide < threshold
    assert small.meta["compact"] == "too_small" and small.img_shape == (H, W)


def test_pose_compact_all_missing_uses_full_frame():
    rec = all_missing(make_record(t=4))
    out = PoseCompact()(rec)
    assert out.meta["compact"] == "full_frame" and out.img_shape == (H, W)
    assert np.all(out.keypoint == 0)


# ------------------------------------------------------------------ Resize / crops
def test_resize_geometry():
    rec = points_record([[640, 360], [1279, 0]], layout="imigue22")
    short = Resize(64)(rec)  # short side 64 keeping the ratio: 720x1280 -> 64x114
    assert short.img_shape == (64, 114)
    np.testing.assert_allclose(short.keypoint[0, 0, 0], [640 * 114 / 1280, 360 * 64 / 720])
    assert Resize((-1, 64))(rec).img_shape == (64, 114)
    assert Resize((64, 200))(rec).img_shape == (64, 114)  # fits short <= 64, long <= 200
    assert Resize((64, 100))(rec).img_shape == (56, 100)  # the long side limits
    fixed = Resize((56, 56), keep_ratio=False)(rec)
    assert fixed.img_shape == (56, 56)
    np.testing.assert_allclose(fixed.keypoint[0, 0, 1], [1279 * 56 / 1280, 0.0], rtol=1e-6)
    assert np.all(fixed.keypoint[0, 0, 2:] == 0)
    assert Resize(32, keep_ratio=False)(rec).img_shape == (32, 32)


def test_center_crop_geometry():
    rec = points_record([[50, 40], [10, 10]], img_shape=(100, 120))
    out = CenterCrop(60)(rec)
    assert out.img_shape == (60, 60) and out.meta["crop_box"] == (30, 20, 90, 80)
    np.testing.assert_allclose(out.keypoint[0, 0, :2], [[20, 20], [-20, -10]])  # kept off-canvas
    assert np.all(out.keypoint[0, 0, 2:] == 0)
    assert CenterCrop((50, 80))(rec).meta["crop_box"] == (20, 25, 100, 75)


def test_random_resized_crop():
    rec = points_record([[30, 40], [60, 20]], img_shape=(64, 80))
    a = RandomResizedCrop(seed=5)
    b = RandomResizedCrop(seed=5)
    for _ in range(20):
        ra, rb = a(rec), b(rec)
        assert ra.meta["crop_box"] == rb.meta["crop_box"]
        x0, y0, x1, y1 = ra.meta["crop_box"]
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 64
        assert ra.img_shape == (y1 - y0, x1 - x0)
        assert 0.5 <= (x1 - x0) * (y1 - y0) / (64 * 80) <= 1.0
        assert 0.7 <= (x1 - x0) / (y1 - y0) <= 1.4 or (x1 - x0, y1 - y0) == (64, 64)
        np.testing.assert_allclose(ra.keypoint[0, 0, 0], [30 - x0, 40 - y0])
        assert np.all(ra.keypoint[0, 0, 2:] == 0)
    # impossible aspect ratios -> the centred square
    out = RandomResizedCrop(aspect_ratio_range=(20.0, 30.0), seed=0)(rec)
    assert out.meta["crop_box"] == (8, 0, 72, 64)
    with pytest.raises(ValueError):
        RandomResizedCrop(area_range=(0.0, 1.0))


def test_flip_and_persons_and_format():
    rec = Resize((56, 56), keep_ratio=False)(PoseCompact()(make_record("imigue22", m=3, t=5)))
    once = Flip()(rec)
    lay = get_layout("imigue22")
    f = lay.flip_index
    valid = rec.keypoint_score[:, :, f] > 0
    np.testing.assert_allclose(once.keypoint[..., 0][valid], (55 - rec.keypoint[:, :, f, 0])[valid])
    np.testing.assert_allclose(Flip()(once).keypoint, rec.keypoint, atol=1e-4)
    sc = rec.keypoint_score.copy()
    sc[1] *= 0.1
    rec = rec.replace(keypoint_score=sc)
    assert SelectPersons(2)(rec).keypoint.shape == (2, 5, 22, 2)
    np.testing.assert_array_equal(SelectPersons(2)(rec).keypoint[1], rec.keypoint[2])
    x = FormatHeatmapKeypoints(num_persons=2)(rec)
    assert x.shape == (2, 5, 22, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[1, ..., :2], rec.keypoint[2])
    np.testing.assert_array_equal(x[1, ..., 2], rec.keypoint_score[2])
    y = FormatHeatmapKeypoints(num_persons=4)(rec)
    assert y.shape == (4, 5, 22, 3) and np.all(y[3] == 0)


# ------------------------------------------------------------------ pipelines
@pytest.mark.parametrize("layout,v,n_limbs", [("imigue22", 22, 21), ("body_face41", 41, 44)])
@pytest.mark.parametrize("stream", ["joint", "limb"])
def test_train_pipeline_shapes(layout, v, n_limbs, stream):
    rec = make_record(t=70)
    snap = rec.keypoint.copy()
    x = build_heatmap_pipeline(layout, 48, stream, train=True, seed=0)(rec)
    c = v if stream == "joint" else n_limbs
    assert x.shape == (c, 48, 56, 56) and x.dtype == np.float32
    assert x.max() > 0.3 and x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(rec.keypoint, snap)
    pts = build_heatmap_pipeline(layout, 48, stream, train=True, render="device", seed=0)(rec)
    assert pts.shape == (1, 48, v, 3) and pts.dtype == np.float32
    e = build_heatmap_pipeline(layout, 48, stream)(rec)
    assert e.shape == (c, 48, 64, 64)


def test_train_pipeline_seeded():
    rec = make_record(t=70)
    a = build_heatmap_pipeline("imigue22", 16, train=True, render="device", seed=1)(rec)
    b = build_heatmap_pipeline("imigue22", 16, train=True, render="device", seed=1)(rec)
    c = build_heatmap_pipeline("imigue22", 16, train=True, render="device", seed=2)(rec)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    names = [type(t).__name__ for t in build_heatmap_pipeline("imigue22", train=True).transforms]
    assert names == ["ValidateClip", "SelectLayout", "UniformSample", "PoseCompact", "Resize",
                     "RandomResizedCrop", "Resize", "RandomFlip", "SelectPersons",
                     "GeneratePoseTarget"]  # fmt: skip


@pytest.mark.parametrize("train", [True, False])
def test_all_missing_clip_gives_zero_heatmaps(train):
    rec = all_missing(make_record(t=10))
    x = build_heatmap_pipeline("body_face41", 48, "limb", train=train, seed=0)(rec)
    assert x.shape == (44, 48, 56 if train else 64, 56 if train else 64) and np.all(x == 0)
    pts = build_heatmap_pipeline("imigue22", 8, num_clips=2, flip_test=True, render="device")(rec)
    assert pts.shape == (4, 1, 8, 22, 3) and np.all(pts == 0)


def test_one_frame_clip_repeats():
    rec = make_record(t=1, p_missing=0.0)
    for train in (True, False):
        x = build_heatmap_pipeline("imigue22", 48, train=train, seed=0)(rec)
        assert x.shape[1] == 48 and x.max() > 0
        np.testing.assert_array_equal(x, np.broadcast_to(x[:, :1], x.shape))


def test_interpolate_option():
    rec = make_record(t=20)
    kp = rec.keypoint.copy()
    kp[0, 3, 4] = np.nan
    rec = rec.replace(keypoint=kp)
    with pytest.raises(ValueError, match="NaN"):
        build_heatmap_pipeline("imigue22", 8)(rec)
    pipe = build_heatmap_pipeline("imigue22", 20, interpolate=True, render="device")
    assert [type(t).__name__ for t in pipe.transforms][:3] == [
        "ValidateClip", "SelectLayout", "InterpolateMissing",
    ]  # fmt: skip
    pts = pipe(rec)
    assert np.isfinite(pts).all() and np.all(pts[0, :, 4, 2] > 0)  # the r_wrist gap is filled


@pytest.mark.parametrize("stream", ["joint", "limb"])
def test_eval_multiview_mirror_and_determinism(stream):
    rec = make_record(t=90, seed=4)
    lay = get_layout("body_face41")
    pipe = build_heatmap_pipeline(lay, 16, stream, num_clips=3, flip_test=True)
    x = pipe(rec)
    c = 41 if stream == "joint" else 44
    assert x.shape == (6, c, 16, 64, 64) and x.dtype == np.float32
    np.testing.assert_array_equal(x, pipe(rec))  # deterministic
    perm = lay.flip_index if stream == "joint" else limb_flip_index(lay)
    # odd views mirror the even ones, up to pyskl's asymmetric 3-sigma window truncation
    # ([int(mu - 3s), int(mu + 3s)]: a pixel 1.8 px = 3 sigma away may be cut on one side only)
    cut = np.exp(-4.5) + 1e-4
    for k in range(0, 6, 2):
        mirror = np.flip(x[k], axis=-1)[perm]
        np.testing.assert_allclose(x[k + 1], mirror, atol=cut)
        assert abs(x[k + 1].sum() - mirror.sum()) < 5e-3 * mirror.sum()
    assert not np.allclose(x[0], x[2])  # different temporal samplings
    single = build_heatmap_pipeline(lay, 16, stream)(rec)
    np.testing.assert_array_equal(x[0], single)  # clip 0 = the single-view eval sampling
    no_flip = build_heatmap_pipeline(lay, 16, stream, num_clips=3)(rec)
    np.testing.assert_array_equal(no_flip, x[::2])


def test_multiview_indices():
    mv = MultiView(48, [], FormatHeatmapKeypoints(), num_clips=4, flip=False, seed=1234)
    inds = mv.clip_indices(200)
    np.testing.assert_array_equal(inds[0], uniform_frame_indices(200, 48))
    np.testing.assert_array_equal(inds, mv.clip_indices(200))
    assert len({tuple(r) for r in inds}) == 4
    rec = make_record("imigue22", t=200)
    out = mv(rec)
    assert out.shape == (4, 1, 48, 22, 3)
    np.testing.assert_array_equal(out[2, 0, :, :, :2], rec.keypoint[0, inds[2]])


@pytest.mark.parametrize("stream", ["joint", "limb"])
@pytest.mark.parametrize("train", [False, True])
def test_device_render_matches_cpu(stream, train):
    rec = make_record(m=2, t=40, seed=7)
    lay = get_layout("body_face41")
    kw = dict(stream=stream, train=train, num_persons=2, seed=3)
    cpu = build_heatmap_pipeline(lay, 8, **kw)(rec)
    pts = build_heatmap_pipeline(lay, 8, render="device", **kw)(rec)
    size = cpu.shape[-2:]
    if stream == "joint":
        ref = joint_heatmaps_reference(pts[..., :2], pts[..., 2], size, 0.6)
    else:
        ref = limb_heatmaps_reference(pts[..., :2], pts[..., 2], lay.limbs, size, 0.6)
    np.testing.assert_allclose(cpu, ref, atol=1e-5)
    renderer = HeatmapRenderer(stream, lay.limbs if stream == "limb" else None, sigma=0.6)
    dev = renderer(torch.from_numpy(pts), size).numpy()
    np.testing.assert_allclose(dev, cpu, atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="stream"):
        build_heatmap_pipeline("imigue22", stream="bone")
    with pytest.raises(ValueError, match="render"):
        build_heatmap_pipeline("imigue22", render="gpu")
    rec = make_record("imigue22", t=3).replace(img_shape=(0, 0))
    with pytest.raises(ValueError, match="img_shape"):
        Resize(64)(rec)
