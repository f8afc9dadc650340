"""ClipDataModule / SkeletonClipDataset on the tiny synthetic release."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from migalab.data.cache import SkeletonCache
from migalab.data.datamodule import ClipDataModule, overfit_selection
from migalab.data.datasets import ClipLoadError, SkeletonClipDataset
from migalab.data.skeleton.transforms import build_skeleton_pipeline
from tests.conftest import TINY_SYNTH


def _dm(release: Path, cache: Path, **kw: object) -> ClipDataModule:
    args = dict(release_root=str(release), cache_dir=str(cache), synthetic=TINY_SYNTH,
                num_frames=16, batch_size=4, num_workers=0)  # fmt: skip
    args.update(kw)
    return ClipDataModule(**args)


@pytest.mark.parametrize(("layout", "stream", "v"), [("imigue22", "joint", 22),
                                                     ("mg36", "bone", 36)])  # fmt: skip
def test_batches_have_gcn_shape(
    tiny_release: Path, tiny_cache: Path, layout: str, stream: str, v: int
) -> None:
    dm = _dm(tiny_release, tiny_cache, layout=layout, stream=stream)
    dm.prepare_data()  # release and cache are current: nothing is regenerated
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (4, 3, 16, v, 1)
    assert batch["x"].dtype == torch.float32
    assert batch["label"].dtype == torch.long
    assert torch.isfinite(batch["x"]).all()
    val = next(iter(dm.val_dataloader()))
    assert val["index"].tolist() == list(range(len(val["index"])))
    assert dm.has_labels("val") and dm.has_labels("test")


def test_class_counts_and_balanced_sampler(tiny_release: Path, tiny_cache: Path) -> None:
    dm = _dm(tiny_release, tiny_cache, sampler="class_balanced")
    dm.setup("fit")
    counts = dm.class_counts
    assert counts.shape == (32,) and counts.sum() == len(dm.datasets["train"])
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, torch.utils.data.WeightedRandomSampler)
    with pytest.raises(ValueError, match="sampler"):
        _dm(tiny_release, tiny_cache, sampler="bogus")


def test_eval_items_are_deterministic(tiny_cache: Path) -> None:
    pipe = build_skeleton_pipeline("imigue22", 16, train=False)
    ds = SkeletonClipDataset(SkeletonCache(tiny_cache), "validate", pipe, layout="imigue22")
    a, b = ds[0], ds[0]
    assert torch.equal(a["x"], b["x"])
    assert ds.clip_name(0).count("_") == 1


def test_bad_clip_error_names_the_clip(tiny_cache: Path) -> None:
    def broken(record):  # noqa: ANN001, ANN202
        raise ValueError("boom")

    ds = SkeletonClipDataset(SkeletonCache(tiny_cache), "train", broken, layout="imigue22")
    with pytest.raises(ClipLoadError, match=r"clip \d{4}_\d+ .*boom"):
        ds[0]


def test_missing_real_release_is_a_clear_error(tmp_path: Path) -> None:
    dm = ClipDataModule(release_root=str(tmp_path / "nope"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match="nope"):
        dm.prepare_data()


def test_stale_cache_is_rebuilt(tiny_release: Path, tmp_path: Path) -> None:
    import os
    import shutil

    from migalab.data.prepare import is_cache_current

    release = tmp_path / "release"
    shutil.copytree(tiny_release, release)
    cache = tmp_path / "cache"
    dm = _dm(release, cache)
    dm.prepare_data()
    assert is_cache_current(release, cache)
    before = (cache / "meta.json").stat().st_mtime_ns
    label = next(release.glob("train/*/*_label.csv"))
    st = label.stat()
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not is_cache_current(release, cache)
    dm.prepare_data()
    assert is_cache_current(release, cache)
    assert (cache / "meta.json").stat().st_mtime_ns != before


HEATMAP = {"size_train": 24, "size_eval": 28, "test_clips": 2, "test_flip": True}


@pytest.mark.parametrize(("layout", "stream", "c"), [("imigue22", "joint", 22),
                                                     ("body_face41", "limb", 44)])  # fmt: skip
def test_heatmap_batches_single_and_multi_view(
    tiny_release: Path, tiny_cache: Path, layout: str, stream: str, c: int
) -> None:
    dm = _dm(tiny_release, tiny_cache, layout=layout, stream=stream, representation="heatmap",
             heatmap=HEATMAP, interpolate=True)  # fmt: skip
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["x"].shape == (4, c, 16, 24, 24) and "views" not in train
    assert float(train["x"].max()) <= 1.0 and float(train["x"].max()) > 0.1
    val = next(iter(dm.val_dataloader()))
    assert val["x"].shape == (4, c, 16, 28, 28) and "views" not in val
    test = next(iter(dm.test_dataloader()))
    assert test["x"].shape == (4, 4, c, 16, 28, 28)  # 2 clips x flip
    assert test["views"].tolist() == [4] * 4


def test_device_rendering_matches_loader_rendering(tiny_release: Path, tiny_cache: Path) -> None:
    kw = dict(layout="body_face41", stream="limb", representation="heatmap", interpolate=True)
    cpu = _dm(tiny_release, tiny_cache, heatmap=HEATMAP, **kw)
    dev = _dm(tiny_release, tiny_cache, heatmap={**HEATMAP, "render": "device"}, **kw)
    for dm in (cpu, dev):
        dm.setup("test")
    ref = next(iter(cpu.test_dataloader()))
    shipped = next(iter(dev.test_dataloader()))
    assert shipped["x"].shape == (4, 4, 1, 16, 41, 3)  # keypoints (N, K, M, T, V, 3)
    rendered = dev.on_after_batch_transfer(shipped, 0)
    assert "canvas" not in rendered
    torch.testing.assert_close(rendered["x"], ref["x"], atol=1e-5, rtol=0)
    assert torch.equal(rendered["views"], ref["views"])


def test_heatmap_options_are_checked(tiny_release: Path, tiny_cache: Path) -> None:
    with pytest.raises(ValueError, match="unknown heatmap options"):
        _dm(tiny_release, tiny_cache, representation="heatmap", heatmap={"sigm": 1})
    with pytest.raises(ValueError, match="heatmap streams"):
        _dm(tiny_release, tiny_cache, representation="heatmap", stream="bone")
    with pytest.raises(ValueError, match="representation"):
        _dm(tiny_release, tiny_cache, representation="voxels")


def test_train_splits_train_on_train_and_val(tiny_release: Path, tiny_cache: Path) -> None:
    args = dict(release_root=str(tiny_release), cache_dir=str(tiny_cache), synthetic=TINY_SYNTH,
                num_frames=16, batch_size=4, num_workers=0)  # fmt: skip
    plain = ClipDataModule(**args)
    plain.setup("fit")
    both = ClipDataModule(**args, train_splits=["train", "validate"])
    both.setup("fit")
    n_train, n_val = len(plain.datasets["train"]), len(plain.datasets["val"])
    assert len(both.datasets["train"]) == n_train + n_val
    assert both.datasets["train"].split == "train+validate"
    assert len(both.datasets["val"]) == n_val  # validation still runs (not held out)
    assert both.class_counts.sum() == n_train + n_val
    with pytest.raises(ValueError, match="train_splits is for gesture"):
        ClipDataModule(**args, target="emotion", train_splits=["train", "validate"])


# -- data.overfit_clips: the overfit check's fixed clips ---------------------------------------
def test_overfit_selection_is_round_robin_over_classes() -> None:
    labels = np.array([3, 3, 1, -1, 1, 2, 3])
    # round 1: the first clip of 3, 1, 2 (order of first appearance); round 2: 3, then 1
    assert overfit_selection(labels, 3).tolist() == [0, 2, 5]
    assert overfit_selection(labels, 4).tolist() == [0, 1, 2, 5]
    assert overfit_selection(labels, 5).tolist() == [0, 1, 2, 4, 5]
    assert overfit_selection(labels, 99).tolist() == [0, 1, 2, 4, 5, 6]  # never the unlabelled
    assert overfit_selection(labels, 1).tolist() == [0]
    with pytest.raises(ValueError, match="at least 1 clip"):
        overfit_selection(labels, 0)
    with pytest.raises(ValueError, match="no labelled clip"):
        overfit_selection(np.array([-1, -1]), 2)


def test_overfit_clips_are_fixed_eval_clips_validated_as_trained(
    tiny_release: Path, tiny_cache: Path
) -> None:
    augment = {"flip": {"p": 1.0}, "affine": {"scale": [0.5, 2.0], "rotate_deg": 90.0, "p": 1.0}}
    dm = _dm(tiny_release, tiny_cache, overfit_clips=6, augment=augment)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert set(dm.datasets) == {"train", "val"} and dm.datasets["val"] is train
    assert not dm.has_labels("test") and dm.has_labels("val")
    # 6 clips of 6 different classes (the split has more), from the training split, index order
    dm_full = _dm(tiny_release, tiny_cache)
    dm_full.setup("fit")
    whole = dm_full.datasets["train"]
    assert len(train) == 6 and len(set(train.labels.tolist())) == 6
    assert len(set(whole.labels.tolist())) > 6
    assert set(train.rows.tolist()) <= set(whole.rows.tolist())
    assert train.rows.tolist() == sorted(train.rows.tolist())
    assert dm.class_counts.sum() == 6
    # deterministic: the same clips in a new datamodule, the same input at every read, and the
    # evaluation transform (no augmentation although augment is set)
    again = _dm(tiny_release, tiny_cache, overfit_clips=6, augment=augment)
    again.setup("fit")
    assert again.datasets["train"].rows.tolist() == train.rows.tolist()
    evaluation = build_skeleton_pipeline("imigue22", 16, train=False)
    for i in range(len(train)):
        record = train.cache.load_clip(int(train.rows[i]), layout="imigue22")
        assert torch.equal(train[i]["x"], train[i]["x"])
        assert torch.equal(train[i]["x"], torch.from_numpy(evaluation(record)))
    # the training loader (epoch sampler, drop_last) and the validation loader see those clips
    batches = list(dm.train_dataloader())
    assert [len(b["label"]) for b in batches] == [4]  # 6 clips, batch 4: drop_last
    val = torch.cat([b["index"] for b in dm.val_dataloader()])
    assert val.tolist() == list(range(6))


def test_overfit_clips_beyond_the_split_take_all_with_a_warning(
    tiny_release: Path, tiny_cache: Path
) -> None:
    plain = _dm(tiny_release, tiny_cache)
    plain.setup("fit")
    n = len(plain.datasets["train"])
    dm = _dm(tiny_release, tiny_cache, overfit_clips=n + 1)
    with pytest.warns(UserWarning, match=rf"overfit_clips={n + 1} .* has {n} labelled clips"):
        dm.setup("fit")
    assert dm.datasets["train"].rows.tolist() == plain.datasets["train"].rows.tolist()
    exact = _dm(tiny_release, tiny_cache, overfit_clips=n)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*overfit_clips")
        exact.setup("fit")  # exactly the split: no warning
    assert len(exact.datasets["train"]) == n


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "16"])
def test_overfit_clips_must_be_a_positive_count(
    tiny_release: Path, tiny_cache: Path, bad: object
) -> None:
    with pytest.raises(ValueError, match=r"data.overfit_clips must be a positive number of clips"):
        _dm(tiny_release, tiny_cache, overfit_clips=bad)
    with pytest.raises(ValueError, match="not for pretraining"):
        _dm(tiny_release, tiny_cache, overfit_clips=4, unlabelled={"window": 16})


def test_overfit_heatmaps_one_view_at_the_eval_canvas(tiny_release: Path, tiny_cache: Path) -> None:
    multi = {**HEATMAP, "val_clips": 2, "val_flip": True}  # multi-view validation otherwise
    dm = _dm(tiny_release, tiny_cache, representation="heatmap", heatmap=multi, overfit_clips=4)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["x"].shape == (4, 22, 16, 28, 28) and "views" not in train  # size_eval
    val = next(iter(dm.val_dataloader()))
    assert "views" not in val
    ds = dm.datasets["train"]
    assert torch.equal(val["x"], torch.stack([ds[i]["x"] for i in range(4)]))  # deterministic


def test_overfit_emotion_clips_hold_both_outcomes(tiny_release: Path, tiny_cache: Path) -> None:
    dm = _dm(tiny_release, tiny_cache, target="emotion", overfit_clips=4)
    dm.setup("fit")  # train and val share their videos: no leakage refusal
    ds = dm.datasets["train"]
    assert sorted(ds.labels.tolist()) == [0, 0, 1, 1]
    assert ds.video_ids == sorted({ds.clip_name(i).split("_")[0] for i in range(len(ds))})
    for i in range(len(ds)):
        assert ds.clip_name(i).startswith(ds.video_ids[int(ds[i]["video"])])
    balance = dm.emotion_balance
    assert set(balance) == {"train", "val"} and balance["val"] == balance["train"]
    assert balance["train"]["clips"] == 4 and balance["train"]["videos"] == len(ds.video_ids)


def test_subset_keeps_labels_videos_and_names(tiny_cache: Path) -> None:
    pipe = build_skeleton_pipeline("imigue22", 16, train=False)
    ds = SkeletonClipDataset(SkeletonCache(tiny_cache), "train", pipe, layout="imigue22",
                             target="emotion")  # fmt: skip
    last = len(ds) - 1
    sub = ds.subset([last, 0])
    assert len(sub) == 2 and len(ds) > 2  # the original is untouched
    assert [sub.clip_name(0), sub.clip_name(1)] == [ds.clip_name(last), ds.clip_name(0)]
    assert sub.labels.tolist() == [ds.labels[last], ds.labels[0]]
    assert sub.video_ids == sorted({ds.video_ids[ds.videos[last]], ds.video_ids[ds.videos[0]]})
    assert sub[0]["index"] == 0 and torch.equal(sub[0]["x"], ds[last]["x"])
    with pytest.raises(IndexError, match="subset positions"):
        ds.subset([len(ds)])


@pytest.mark.slow  # prepares the person and face crops of the video release (~10 s)
def test_overfit_rgb_and_face_clips_are_deterministic(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    """RGB (centre crop, fixed frames) and face crops of the overfit clips: the same tensors at
    every read, in training and in validation."""
    import hydra

    from migalab.utils.hydra import compose_config
    from tests.conftest import tiny_video_overrides

    overrides = [*tiny_video_overrides(tiny_video_release, tiny_video_cache),
                 "data.modalities=[rgb,face,joint]", "data.face.num_frames=2",
                 "data.face.size=32", "data.prepare_workers=1", "data.overfit_clips=4",
                 f"data.face.prepared_dir={tmp_path / 'faces'}"]  # fmt: skip
    dm = hydra.utils.instantiate(compose_config("train", overrides, output_dir=tmp_path).data)
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert len(ds) == 4 and dm.datasets["val"] is ds
    first, again = ds[0]["x"], ds[0]["x"]
    for key in ("rgb", "face", "face_visible", "joint"):
        assert torch.equal(first[key], again[key]), key
    train = next(iter(dm.train_dataloader()))  # batch 4: the four clips, shuffled
    val = next(iter(dm.val_dataloader()))
    order = train["index"].argsort()
    assert val["index"].tolist() == [0, 1, 2, 3]
    for key in ("rgb", "face", "joint"):
        assert torch.equal(train["x"][key][order], val["x"][key]), key
