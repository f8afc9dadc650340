"""ClipDataModule / SkeletonClipDataset on the tiny synthetic release."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from migalab.data.cache import SkeletonCache
from migalab.data.datamodule import ClipDataModule
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
