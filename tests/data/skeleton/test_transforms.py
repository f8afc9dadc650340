import copy

import numpy as np
import pytest
import torch

from migalab.data.record import ClipRecord
from migalab.data.skeleton import layouts as layouts_mod
from migalab.data.skeleton.layouts import JointLayout, get_layout
from migalab.data.skeleton.transforms import (
    STREAMS,
    Compose,
    FormatGCNInput,
    InterpolateMissing,
    NormalizeSkeleton,
    RandomAffine,
    RandomFlip,
    SelectLayout,
    ToBone,
    ToMotion,
    UniformSample,
    ValidateClip,
    build_skeleton_pipeline,
    uniform_frame_indices,
    validate_clip,
)

H, W = 720, 1280


def make_record(
    layout: str = "imigue22", m: int = 1, t: int = 20, seed: int = 0, name: str = "0001_3"
) -> ClipRecord:
    """A plausible upper body: neck (640, 300) + 80 px per shoulder, jittered joints."""
    lay = get_layout(layout)
    rng = np.random.default_rng(seed)
    names = lay.names
    base = rng.uniform([450.0, 150.0], [830.0, 650.0], size=(m, 1, lay.num_joints, 2))
    offset = np.arange(m)[:, None, None, None] * np.array([30.0, 10.0])
    base[:, :, names.index("neck")] = [640.0, 300.0]
    base[:, :, names.index("r_shoulder")] = [560.0, 300.0]
    base[:, :, names.index("l_shoulder")] = [720.0, 300.0]
    kp = base + offset + rng.normal(0.0, 2.0, size=(m, t, lay.num_joints, 2))
    sc = rng.uniform(0.5, 1.0, size=(m, t, lay.num_joints))
    return ClipRecord(
        name=name,
        video_id="0001",
        start=10,
        end=10 + max(t, 1) - 1,
        label=3,
        keypoint=kp.astype(np.float32),
        keypoint_score=sc.astype(np.float32),
        img_shape=(H, W),
        layout=layout,
    )


def with_missing(rec: ClipRecord, mask: np.ndarray) -> ClipRecord:
    """Zero the keypoints/scores where ``mask`` (M, T, V) is True (OpenPose style)."""
    kp = np.where(mask[..., None], 0.0, rec.keypoint).astype(np.float32)
    sc = np.where(mask, 0.0, rec.keypoint_score).astype(np.float32)
    return rec.replace(keypoint=kp, keypoint_score=sc)


def snapshot(rec: ClipRecord):
    return rec.keypoint.copy(), rec.keypoint_score.copy(), copy.deepcopy(rec.meta)


def assert_unchanged(rec: ClipRecord, snap) -> None:
    np.testing.assert_array_equal(rec.keypoint, snap[0])
    np.testing.assert_array_equal(rec.keypoint_score, snap[1])
    assert rec.meta.keys() == snap[2].keys()


def idx(name: str, layout: str = "imigue22") -> int:
    return get_layout(layout).names.index(name)


# ------------------------------------------------------------------ SelectLayout
def test_select_layout_from_openpose():
    rec = make_record("openpose137", m=2, t=5)
    snap = snapshot(rec)
    for name, v in [("imigue22", 22), ("mg36", 36)]:
        out = SelectLayout(name)(rec)
        assert out.keypoint.shape == (2, 5, v, 2) and out.keypoint_score.shape == (2, 5, v)
        assert out.layout == name
        ind = list(get_layout(name).indices)
        np.testing.assert_array_equal(out.keypoint, rec.keypoint[:, :, ind])
    assert_unchanged(rec, snap)


def test_select_layout_noop_and_missing_joints():
    rec = make_record("imigue22")
    out = SelectLayout("imigue22")(rec)
    assert out is not rec and out.layout == "imigue22"
    np.testing.assert_array_equal(out.keypoint, rec.keypoint)
    with pytest.raises(ValueError, match="lacks joints"):
        SelectLayout("mg36")(rec)


# ------------------------------------------------------------------ UniformSample
def test_uniform_sample_test_mode_deterministic_and_covering():
    rec = make_record(t=100)
    a = UniformSample(10, test_mode=True)(rec)
    b = UniformSample(10, test_mode=True)(rec)
    inds = a.meta["frame_inds"]
    np.testing.assert_array_equal(inds, b.meta["frame_inds"])
    np.testing.assert_array_equal(inds, np.arange(5, 100, 10))
    assert a.keypoint.shape == (1, 10, 22, 2)
    np.testing.assert_array_equal(a.keypoint, rec.keypoint[:, inds])
    assert "frame_inds" not in rec.meta


@pytest.mark.parametrize("total", [1, 5, 31, 32, 33, 63, 64, 250])
def test_uniform_indices_train_one_per_segment(total):
    n = 32
    rng = np.random.default_rng(0)
    for _ in range(5):
        inds = uniform_frame_indices(total, n, rng)
        assert inds.shape == (n,) and inds.min() >= 0 and inds.max() < total
        assert np.all(np.diff(inds) >= 0)
        if total >= n:  # one distinct frame per integer bin
            bids = (np.arange(n + 1) * total) // n
            assert np.all((inds >= bids[:-1]) & (inds < bids[1:]))
    test = uniform_frame_indices(total, n)
    assert test[0] <= total // n and test[-1] >= total - 1 - total // n  # spans the clip


def test_uniform_sample_short_clip_repeats_evenly():
    inds = uniform_frame_indices(5, 12)
    np.testing.assert_array_equal(np.unique(inds), np.arange(5))
    counts = np.bincount(inds)
    assert counts.max() - counts.min() <= 1


def test_uniform_sample_seeded_and_composed_frame_inds():
    rec = make_record(t=60)
    a = UniformSample(16, seed=1)(rec).meta["frame_inds"]
    b = UniformSample(16, seed=1)(rec).meta["frame_inds"]
    np.testing.assert_array_equal(a, b)
    twice = UniformSample(8, test_mode=True)(UniformSample(16, test_mode=True)(rec))
    first = uniform_frame_indices(60, 16)
    np.testing.assert_array_equal(twice.meta["frame_inds"], first[uniform_frame_indices(16, 8)])


def test_uniform_sample_uses_torch_seed_when_unseeded():
    rec = make_record(t=200)
    torch.manual_seed(123)
    a = UniformSample(16)(rec).meta["frame_inds"]
    torch.manual_seed(123)
    b = UniformSample(16)(rec).meta["frame_inds"]
    torch.manual_seed(124)
    c = UniformSample(16)(rec).meta["frame_inds"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class _SampleDataset(torch.utils.data.Dataset):
    def __init__(self, rec: ClipRecord, transform: UniformSample) -> None:
        self.rec, self.transform = rec, transform

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.transform(self.rec).meta["frame_inds"])


def test_dataloader_workers_get_distinct_reproducible_streams():
    rec = make_record(t=300)
    transform = UniformSample(16)
    transform(rec)  # a draw in the main process must not leak one stream into all workers
    loader = torch.utils.data.DataLoader(
        _SampleDataset(rec, transform), batch_size=1, num_workers=2, multiprocessing_context="fork"
    )

    def epoch() -> np.ndarray:
        return torch.cat(list(loader)).numpy()

    torch.manual_seed(0)
    a, a2 = epoch(), epoch()
    torch.manual_seed(0)
    b = epoch()
    np.testing.assert_array_equal(a, b)  # reproducible from the torch seed
    assert not np.array_equal(a, a2)  # a new stream every epoch
    assert not np.array_equal(a[0], a[1])  # items 0 and 1 come from different workers


# ------------------------------------------------------------------ NormalizeSkeleton
def test_normalize_centres_neck_and_scales_by_shoulders():
    rec = make_record(m=2, t=12)
    kp = rec.keypoint.copy()
    kp[:, :, idx("neck")] = [640.0, 300.0]
    kp[:, :, idx("r_shoulder")] = [540.0, 300.0]
    kp[:, :, idx("l_shoulder")] = [740.0, 300.0]
    rec = rec.replace(keypoint=kp)
    snap = snapshot(rec)
    out = NormalizeSkeleton()(rec)
    assert out.keypoint.dtype == np.float32 and out.meta["space"] == "body"
    np.testing.assert_allclose(out.keypoint[:, :, idx("neck")], 0.0, atol=1e-6)
    width = np.linalg.norm(
        out.keypoint[:, :, idx("l_shoulder")] - out.keypoint[:, :, idx("r_shoulder")], axis=-1
    )
    np.testing.assert_allclose(width, 1.0, rtol=1e-5)
    np.testing.assert_allclose(out.meta["norm_scale"], [200.0, 200.0])
    assert out.meta["norm_scale_source"] == ("shoulder", "shoulder")
    expected = (rec.keypoint - np.array([640.0, 300.0])) / 200.0
    np.testing.assert_allclose(out.keypoint, expected, rtol=1e-5, atol=1e-6)
    assert_unchanged(rec, snap)


def test_normalize_keeps_missing_at_zero():
    rec = make_record(t=10)
    mask = np.random.default_rng(3).random(rec.keypoint_score.shape) < 0.3
    rec = with_missing(rec, mask)
    out = NormalizeSkeleton()(rec)
    assert np.all(out.keypoint[mask] == 0.0) and np.all(out.keypoint_score[mask] == 0.0)
    assert np.all(out.keypoint_score[~mask] > 0)
    assert np.isfinite(out.keypoint).all()


def test_normalize_center_is_weighted_median_robust_to_outliers():
    rec = make_record(t=9)
    kp = rec.keypoint.copy()
    kp[:, :, idx("neck")] = [640.0, 300.0]
    kp[:, 0, idx("neck")] = [5000.0, -4000.0]  # one wild frame
    out = NormalizeSkeleton()(rec.replace(keypoint=kp))
    np.testing.assert_allclose(out.meta["norm_center"][0], [640.0, 300.0])


def test_normalize_fallbacks_without_shoulders():
    rec = make_record(t=6)
    mask = np.zeros(rec.keypoint_score.shape, bool)
    mask[:, :, [idx("l_shoulder"), idx("r_shoulder"), idx("neck")]] = True
    out = NormalizeSkeleton()(with_missing(rec, mask))
    assert out.meta["norm_scale_source"] == ("pairwise",)
    assert out.meta["norm_scale"][0] > 0 and np.isfinite(out.keypoint).all()
    # a single visible joint per frame: no pair distance -> image height
    mask = np.ones(rec.keypoint_score.shape, bool)
    mask[:, :, idx("nose")] = False
    out = NormalizeSkeleton()(with_missing(rec, mask))
    assert out.meta["norm_scale_source"] == ("image",)
    assert out.meta["norm_scale"][0] == H
    # the centre falls back to the (weighted median) of the visible joints
    nose = out.keypoint[0, :, idx("nose")]
    np.testing.assert_allclose(np.median(nose, axis=0), 0.0, atol=5.0 / H)
    np.testing.assert_allclose(
        nose * H + out.meta["norm_center"][0], rec.keypoint[0, :, idx("nose")], rtol=1e-5
    )


def test_normalize_all_missing_gives_zeros():
    rec = make_record(t=4)
    rec = with_missing(rec, np.ones(rec.keypoint_score.shape, bool))
    out = NormalizeSkeleton()(rec)
    assert np.all(out.keypoint == 0.0) and np.all(out.keypoint_score == 0.0)


# ------------------------------------------------------------------ RandomAffine
def test_affine_identity_and_similarity():
    rec = NormalizeSkeleton()(make_record(t=5))
    same = RandomAffine(scale=(1.0, 1.0), rotate_deg=0.0, shift=0.0, seed=0)(rec)
    np.testing.assert_allclose(same.keypoint, rec.keypoint, atol=1e-6)
    out = RandomAffine(scale=(1.2, 1.2), rotate_deg=30.0, shift=0.0, seed=0)(rec)
    # rotation + isotropic scale about the origin: norms scale by exactly 1.2
    np.testing.assert_allclose(
        np.linalg.norm(out.keypoint, axis=-1), 1.2 * np.linalg.norm(rec.keypoint, axis=-1),
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    assert out.meta["affine"].shape == (2, 3)
    skipped = RandomAffine(p=0.0, seed=0)(rec)
    np.testing.assert_allclose(skipped.keypoint, rec.keypoint, atol=1e-6)


def test_affine_missing_stay_zero_and_seeded():
    rec = make_record(t=5)
    mask = np.zeros(rec.keypoint_score.shape, bool)
    mask[:, ::2, :5] = True
    rec = with_missing(rec, mask)
    snap = snapshot(rec)
    a = RandomAffine(seed=7)(rec)  # pixel space
    b = RandomAffine(seed=7)(rec)
    np.testing.assert_array_equal(a.keypoint, b.keypoint)
    assert np.all(a.keypoint[mask] == 0.0) and not np.allclose(a.keypoint, rec.keypoint)
    assert_unchanged(rec, snap)


# ------------------------------------------------------------------ RandomFlip
def test_flip_twice_is_identity_and_swaps_wrists():
    rec = NormalizeSkeleton()(make_record(m=2, t=5))
    flip = RandomFlip(p=1.0, seed=0)
    once = flip(rec)
    np.testing.assert_array_equal(flip(once).keypoint, rec.keypoint)
    assert once.meta["flipped"] and not flip(once).meta["flipped"]
    lw, rw = idx("l_wrist"), idx("r_wrist")
    np.testing.assert_array_equal(once.keypoint[:, :, lw, 0], -rec.keypoint[:, :, rw, 0])
    np.testing.assert_array_equal(once.keypoint[:, :, lw, 1], rec.keypoint[:, :, rw, 1])
    np.testing.assert_array_equal(once.keypoint_score[:, :, rw], rec.keypoint_score[:, :, lw])


def test_flip_pixel_space_and_missing():
    rec = make_record(t=4)
    mask = np.zeros(rec.keypoint_score.shape, bool)
    mask[:, 1, idx("r_wrist")] = True
    rec = with_missing(rec, mask)
    once = RandomFlip(p=1.0)(rec)
    lw, rw = idx("l_wrist"), idx("r_wrist")
    np.testing.assert_allclose(once.keypoint[:, 0, lw, 0], W - 1 - rec.keypoint[:, 0, rw, 0])
    assert np.all(once.keypoint[:, 1, lw] == 0.0) and once.keypoint_score[0, 1, lw] == 0.0
    np.testing.assert_allclose(RandomFlip(p=1.0)(once).keypoint, rec.keypoint, atol=1e-4)
    np.testing.assert_array_equal(RandomFlip(p=0.0)(rec).keypoint, rec.keypoint)


# ------------------------------------------------------------------ ToBone / ToMotion
def test_bone_of_hand_made_chain(monkeypatch):
    chain = JointLayout(name="test_chain", indices=(1, 2, 3), edges_op=((2, 1), (3, 2)))
    monkeypatch.setitem(layouts_mod.LAYOUTS, "test_chain", chain)
    kp = np.array([[[[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]]], np.float32)  # (1, 1, 3, 2)
    sc = np.array([[[1.0, 0.9, 0.8]]], np.float32)
    rec = ClipRecord("c", "0001", 0, 0, 0, kp, sc, (H, W), layout="test_chain")
    out = ToBone()(rec)
    np.testing.assert_array_equal(out.keypoint[0, 0], [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(out.keypoint_score[0, 0], [1.0, 0.9, 0.8])
    assert out.meta["stream"] == "bone"
    # a missing middle joint kills both bones touching it
    miss = rec.replace(keypoint=kp * [1, 1], keypoint_score=sc * np.array([1.0, 0.0, 1.0]))
    miss.keypoint[0, 0, 1] = 0.0
    out = ToBone()(miss)
    np.testing.assert_array_equal(out.keypoint_score[0, 0], [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(out.keypoint[0, 0, 1:], 0.0)


def test_bone_on_imigue22_and_missing():
    rec = make_record(t=3)
    mask = np.zeros(rec.keypoint_score.shape, bool)
    mask[:, 0, idx("r_shoulder")] = True
    rec = with_missing(rec, mask)
    out = ToBone()(rec)
    re, rs = idx("r_elbow"), idx("r_shoulder")
    np.testing.assert_allclose(
        out.keypoint[:, 1, re], rec.keypoint[:, 1, re] - rec.keypoint[:, 1, rs]
    )
    assert np.all(out.keypoint[:, 0, [rs, re]] == 0) and np.all(
        out.keypoint_score[:, 0, [rs, re]] == 0
    )
    np.testing.assert_array_equal(out.keypoint[:, :, idx("neck")], 0.0)
    with pytest.raises(ValueError, match="joint stream"):
        ToBone()(out)


def test_motion():
    rec = make_record(t=4)
    mask = np.zeros(rec.keypoint_score.shape, bool)
    mask[:, 2, 0] = True
    rec = with_missing(rec, mask)
    out = ToMotion()(rec)
    np.testing.assert_allclose(out.keypoint[:, 0], rec.keypoint[:, 1] - rec.keypoint[:, 0])
    assert np.all(out.keypoint[:, -1] == 0) and np.all(out.keypoint_score[:, -1] == 0)
    # joint 0 missing at t=2 -> motion 1->2 and 2->3 missing
    assert np.all(out.keypoint[:, 1:3, 0] == 0) and np.all(out.keypoint_score[:, 1:3, 0] == 0)
    assert out.meta["stream"] == "joint_motion"
    assert ToMotion()(ToBone()(rec)).meta["stream"] == "bone_motion"


# ------------------------------------------------------------------ FormatGCNInput
def test_format_gcn_input():
    rec = make_record(m=3, t=6)
    sc = rec.keypoint_score.copy()
    sc[1] *= 0.1  # person 1 is the least confident
    rec = rec.replace(keypoint_score=sc)
    x = FormatGCNInput(num_persons=2)(rec)
    assert x.shape == (3, 6, 22, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[:2, :, :, 0], rec.keypoint[0].transpose(2, 0, 1))
    np.testing.assert_array_equal(x[:2, :, :, 1], rec.keypoint[2].transpose(2, 0, 1))
    np.testing.assert_array_equal(x[2, :, :, 1], rec.keypoint_score[2])
    y = FormatGCNInput(num_persons=4, channels="xy")(rec)
    assert y.shape == (2, 6, 22, 4) and np.all(y[..., 3] == 0)
    with pytest.raises(ValueError):
        FormatGCNInput(channels="xyz")


# ------------------------------------------------------------------ pipeline + bad input
@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("train", [False, True])
def test_pipeline_shapes(stream, train):
    rec = make_record("openpose137", m=2, t=40)
    snap = snapshot(rec)
    pipe = build_skeleton_pipeline("imigue22", 16, stream, train=train, num_persons=2, seed=0)
    assert isinstance(pipe, Compose)
    x = pipe(rec)
    assert x.shape == (3, 16, 22, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert_unchanged(rec, snap)


def test_pipeline_determinism():
    rec = make_record("openpose137", t=50)
    test = build_skeleton_pipeline("mg36", 8, "bone", train=False)
    np.testing.assert_array_equal(test(rec), test(rec))
    a = build_skeleton_pipeline("mg36", 8, train=True, seed=3)(rec)
    b = build_skeleton_pipeline("mg36", 8, train=True, seed=3)(rec)
    c = build_skeleton_pipeline("mg36", 8, train=True, seed=4)(rec)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pipeline_augment_options():
    rec = make_record(t=20)
    plain = build_skeleton_pipeline("imigue22", 8, train=False)(rec)
    no_aug = build_skeleton_pipeline(
        "imigue22", 8, train=True, augment={"flip": None, "affine": False}, seed=0
    )
    assert [type(t).__name__ for t in no_aug.transforms][-2:] == [
        "NormalizeSkeleton",
        "FormatGCNInput",
    ]
    assert no_aug(rec).shape == plain.shape
    pipe = build_skeleton_pipeline("imigue22", 8, train=True, augment={"affine": {"p": 0.5}})
    assert pipe.transforms[-2].p == 0.5 and pipe.transforms[-3].p == 0.5
    with pytest.raises(ValueError, match="unknown augment"):
        build_skeleton_pipeline("imigue22", 8, train=True, augment={"rotate": {}})
    with pytest.raises(ValueError, match="stream"):
        build_skeleton_pipeline("imigue22", 8, stream="velocity")


def test_bad_input_errors_name_the_clip():
    rec = make_record(t=5, name="0042_7")
    empty = rec.replace(
        keypoint=np.zeros((1, 0, 22, 2), np.float32),
        keypoint_score=np.zeros((1, 0, 22), np.float32),
    )
    pipe = build_skeleton_pipeline("imigue22", 8)
    with pytest.raises(ValueError, match="0042_7.*zero frames"):
        pipe(empty)
    with pytest.raises(ValueError, match="zero frames"):
        UniformSample(8)(empty)
    kp = rec.keypoint.copy()
    kp[0, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"0042_7.*NaN"):
        pipe(rec.replace(keypoint=kp))
    sc = rec.keypoint_score.copy()
    sc[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="0042_7.*non-finite keypoint scores"):
        validate_clip(rec.replace(keypoint_score=sc))


def test_all_missing_clip_policy():
    rec = make_record(t=5, name="0042_8")
    missing = with_missing(rec, np.ones(rec.keypoint_score.shape, bool))
    x = build_skeleton_pipeline("imigue22", 8, "bone_motion", train=True, seed=0)(missing)
    assert x.shape == (3, 8, 22, 1) and np.all(x == 0)
    assert ValidateClip()(missing).meta["all_missing"] is True
    assert ValidateClip()(rec).meta["all_missing"] is False
    with pytest.raises(ValueError, match="0042_8.*all keypoints are missing"):
        build_skeleton_pipeline("imigue22", 8, allow_all_missing=False)(missing)


# ------------------------------------------------------------------ InterpolateMissing
def _series_record(x: np.ndarray, sc: np.ndarray) -> ClipRecord:
    """A (1 person, T frames, 1 joint) record with x = y = ``x`` (NaN allowed)."""
    kp = np.stack([x, 2 * x], axis=-1)[None, :, None].astype(np.float32)
    return ClipRecord("s", "0001", 0, len(x) - 1, 0, kp, sc[None, :, None].astype(np.float32),
                      (H, W), layout="imigue22")  # fmt: skip


def test_interpolate_inner_gap_and_ends():
    x = np.array([0, 10, 0, 0, 0, 50, 0, 0], float)
    sc = np.array([0, 0.8, 0, 0, 0, 0.4, 0, 0], float)
    out = InterpolateMissing()(_series_record(x, sc))
    np.testing.assert_allclose(out.keypoint[0, :, 0, 0], [10, 10, 20, 30, 40, 50, 50, 50])
    np.testing.assert_allclose(out.keypoint[0, :, 0, 1], 2 * out.keypoint[0, :, 0, 0])
    np.testing.assert_allclose(
        out.keypoint_score[0, :, 0], [0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.4, 0.4], rtol=1e-6
    )
    assert out.meta["interpolated"] == 6
    assert out.keypoint.dtype == np.float32 and out.keypoint.shape == (1, 8, 1, 2)


def test_interpolate_nan_gap_threshold_and_never_valid():
    x = np.array([1.0, np.nan, 3.0, 4.0])
    sc = np.array([1.0, 1.0, 0.05, 1.0])
    out = InterpolateMissing()(_series_record(x, sc))  # NaN frame is missing, 0.05 is valid
    np.testing.assert_allclose(out.keypoint[0, :, 0, 0], [1, 2, 3, 4])
    assert out.meta["interpolated"] == 1
    out = InterpolateMissing(threshold=0.1)(_series_record(x, sc))  # 0.05 now missing
    np.testing.assert_allclose(out.keypoint[0, :, 0, 0], [1, 2, 3, 4])
    np.testing.assert_allclose(out.keypoint_score[0, :, 0], [1, 1, 1, 1])
    assert out.meta["interpolated"] == 2
    never = InterpolateMissing(threshold=0.5)(_series_record(np.ones(4), np.full(4, 0.2)))
    assert np.all(never.keypoint == 0) and np.all(never.keypoint_score == 0)
    assert never.meta["interpolated"] == 0


def test_interpolate_multi_person_and_joints_independent():
    rec = make_record(m=2, t=10, seed=5)
    mask = np.zeros(rec.keypoint_score.shape, bool)
    mask[0, 3:6, 2] = True  # person 0, r_shoulder: inner gap
    mask[1, :, 4] = True  # person 1, r_wrist: never valid
    mask[1, 7:, 0] = True  # person 1, nose: trailing gap
    snap = snapshot(rec)
    out = InterpolateMissing()(with_missing(rec, mask))
    np.testing.assert_array_equal(out.keypoint[~mask], rec.keypoint[~mask])
    np.testing.assert_array_equal(out.keypoint_score[~mask], rec.keypoint_score[~mask])
    a, b = rec.keypoint[0, 2, 2], rec.keypoint[0, 6, 2]
    np.testing.assert_allclose(out.keypoint[0, 4, 2], a + 0.5 * (b - a), rtol=1e-5)
    assert np.all(out.keypoint[1, :, 4] == 0) and np.all(out.keypoint_score[1, :, 4] == 0)
    np.testing.assert_array_equal(out.keypoint[1, 7:, 0], np.repeat(rec.keypoint[1, 6:7, 0], 3, 0))
    np.testing.assert_array_equal(out.keypoint[0, :, 4], rec.keypoint[0, :, 4])  # untouched
    assert out.meta["interpolated"] == 3 + 3
    assert_unchanged(rec, snap)


@pytest.mark.parametrize("p_missing", [0.2, 0.6, 0.95])
def test_interpolate_matches_np_interp_loop(p_missing):
    rng = np.random.default_rng(int(p_missing * 100))
    rec = make_record(m=2, t=30, seed=1)
    mask = rng.random(rec.keypoint_score.shape) < p_missing
    rec = with_missing(rec, mask)
    out = InterpolateMissing()(rec)
    m, t, v = rec.keypoint_score.shape
    frames = np.arange(t)
    for i in range(m):
        for j in range(v):
            ok = rec.keypoint_score[i, :, j] > 0
            if not ok.any():
                assert np.all(out.keypoint[i, :, j] == 0) and np.all(
                    out.keypoint_score[i, :, j] == 0
                )
                continue
            for c in range(2):
                ref = np.interp(frames, frames[ok], rec.keypoint[i, ok, j, c].astype(float))
                np.testing.assert_allclose(out.keypoint[i, :, j, c], ref, rtol=1e-5, atol=1e-3)
            ref = np.interp(frames, frames[ok], rec.keypoint_score[i, ok, j].astype(float))
            np.testing.assert_allclose(out.keypoint_score[i, :, j], ref, rtol=1e-5, atol=1e-6)
    filled = int((mask & (rec.keypoint_score > 0).any(axis=1, keepdims=True)).sum())
    assert out.meta["interpolated"] == filled


# ------------------------------------------------------------------ NaN policy
def test_validate_nan_missing_policy():
    rec = make_record(m=2, t=5, name="0042_9")
    kp, sc = rec.keypoint.copy(), rec.keypoint_score.copy()
    kp[0, 1, 3, 0] = np.nan
    kp[1, 2, 4] = np.nan
    sc[0, 4, 5] = np.nan
    bad = rec.replace(keypoint=kp, keypoint_score=sc)
    with pytest.raises(ValueError, match="0042_9.*NaN"):
        ValidateClip()(bad)
    out = ValidateClip(nan="missing")(bad)
    assert out.meta["nan_keypoints"] == 3 and out.meta["all_missing"] is False
    for i, f, j in [(0, 1, 3), (1, 2, 4), (0, 4, 5)]:
        assert np.all(out.keypoint[i, f, j] == 0) and out.keypoint_score[i, f, j] == 0
    assert np.isfinite(out.keypoint).all() and np.isfinite(out.keypoint_score).all()
    assert np.isnan(bad.keypoint[0, 1, 3, 0])  # input untouched
    assert ValidateClip(nan="missing")(rec).meta["nan_keypoints"] == 0
    inf = kp.copy()
    inf[0, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match="0042_9.*non-finite"):
        ValidateClip(nan="missing")(rec.replace(keypoint=inf))
    with pytest.raises(ValueError, match="nan must be"):
        ValidateClip(nan="zero")


def test_pipeline_with_interpolation():
    rec = make_record("openpose137", t=30)
    kp = rec.keypoint.copy()
    kp[0, 5:9, 4] = np.nan  # r_wrist lost for 4 frames
    rec = rec.replace(keypoint=kp)
    with pytest.raises(ValueError, match="NaN"):
        build_skeleton_pipeline("imigue22", 30)(rec)
    pipe = build_skeleton_pipeline("imigue22", 30, interpolate=True, normalize=False)
    names = [type(t).__name__ for t in pipe.transforms]
    assert names[:4] == ["ValidateClip", "SelectLayout", "InterpolateMissing", "UniformSample"]
    x = pipe(rec)  # (C, T, V, M) in pixels, all frames (30 of 30 sampled)
    assert x.shape == (3, 30, 22, 1) and np.isfinite(x).all()
    a, b = rec.keypoint[0, 4, 4], rec.keypoint[0, 9, 4]
    np.testing.assert_allclose(x[:2, 6, 4, 0], a + 0.4 * (b - a), rtol=1e-5)
    assert np.all(x[2, :, 4, 0] > 0)
    thr = build_skeleton_pipeline("imigue22", 8, "bone", train=True, interpolate={"threshold": 0.6})
    assert thr.transforms[2].threshold == 0.6 and thr(rec).shape == (3, 8, 22, 1)
    plain = build_skeleton_pipeline("imigue22", 8)
    assert "InterpolateMissing" not in [type(t).__name__ for t in plain.transforms]
    assert plain.transforms[0].nan == "error"
