"""Multimodal samples: RGB frames at the skeleton's instants, shared flips, prepared vs raw
video, missing videos and clips past the end of their video."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest
import torch

from migalab.data.cache import SkeletonCache
from migalab.data.datasets import ClipLoadError, SkeletonClipDataset
from migalab.data.representations.multimodal import (
    MultiModalPipeline,
    VideoSource,
    build_clip_jobs,
    clip_person_box,
    video_options,
)
from migalab.data.video.prepared_clips import prepare_clips
from migalab.data.video.readers import ClipRangeError
from migalab.data.video.transforms import normalize_clips
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_video_overrides


class RecordingSource:
    """A VideoSource stand-in that returns frames whose pixels encode the absolute frame index."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, np.ndarray]] = []

    def has_video(self, record) -> bool:
        return True

    def read(self, record, offsets):
        self.calls.append((record.name, np.asarray(offsets)))
        frames = np.zeros((len(offsets), 48, 48, 3), np.uint8)
        frames[:] = (record.start + np.asarray(offsets))[:, None, None, None] % 256
        return frames, None


@pytest.fixture(scope="module")
def cache(tiny_video_cache: Path) -> SkeletonCache:
    return SkeletonCache(tiny_video_cache)


@pytest.fixture(scope="module")
def prepared(cache: SkeletonCache, tmp_path_factory: pytest.TempPathFactory) -> Path:
    jobs, problems = build_clip_jobs(cache, "imigue22", ["train", "validate", "test"])
    assert not problems and len(jobs) == len(cache)
    out = tmp_path_factory.mktemp("clips")
    prepare_clips(jobs, out, size=40, gop=8, progress=False)
    return out


def test_rgb_frames_are_the_skeleton_instants(cache: SkeletonCache) -> None:
    src = RecordingSource()
    pipe = MultiModalPipeline(["rgb", "joint"], "imigue22", num_frames=8, train=True, video=src,
                              video_frames=4, video_size=32)  # fmt: skip
    record = cache.load_clip(0)
    out = pipe(record)["x"]
    assert out["rgb"].shape == (3, 4, 32, 32) and out["joint"].shape == (3, 8, 22, 1)
    ((name, offsets),) = src.calls
    assert name == record.name
    # the skeleton's sampled frames, every 2nd: RGB frame i is skeleton frame 2i
    assert np.all(np.diff(offsets) > 0) and offsets.min() >= 0
    assert offsets.max() <= record.end - record.start
    pipe_eval = MultiModalPipeline(["rgb", "joint"], "imigue22", num_frames=8, video=src,
                                   video_frames=8, video_size=32)  # fmt: skip
    pipe_eval(record)
    full = src.calls[-1][1]
    from migalab.data.skeleton.transforms import uniform_frame_indices

    np.testing.assert_array_equal(full, uniform_frame_indices(record.num_frames, 8))


def test_rgb_flips_exactly_when_the_skeleton_flips(cache: SkeletonCache) -> None:
    record = cache.load_clip(1)
    flips = []
    for p, expected in ((1.0, True), (0.0, False)):
        pipe = MultiModalPipeline(["rgb", "joint"], "imigue22", num_frames=8, train=True,
                                  video=RecordingSource(), video_frames=4, video_size=32,
                                  augment={"flip": {"p": p}, "affine": None})  # fmt: skip
        seen = {}

        def spy(frames, box=None, flip=False, _seen=seen):
            _seen["flip"] = flip
            return torch.zeros(3, len(frames), 32, 32)

        pipe.rgb = spy
        pipe(record)
        flips.append(seen["flip"])
        assert seen["flip"] is expected
    assert flips == [True, False]


def test_streams_share_sampling_and_augmentation(cache: SkeletonCache) -> None:
    record = cache.load_clip(2)
    pipe = MultiModalPipeline(["joint", "bone"], "imigue22", num_frames=8)
    out = pipe(record)["x"]
    assert set(out) == {"joint", "bone"}  # no RGB: no "present" entry
    from migalab.data.skeleton.transforms import build_skeleton_pipeline

    for stream in ("joint", "bone"):
        ref = build_skeleton_pipeline("imigue22", 8, stream=stream)(record)
        np.testing.assert_allclose(out[stream], ref, atol=1e-6)


def test_prepared_and_raw_sources_show_the_same_crop(cache: SkeletonCache, prepared: Path) -> None:
    record = cache.load_clip(3, layout="imigue22")
    kw = dict(num_frames=8, video_frames=8, video_size=32)
    raw = MultiModalPipeline(["rgb"], "imigue22", video=VideoSource("raw"), **kw)(record)
    prep = MultiModalPipeline(["rgb"], "imigue22",
                              video=VideoSource("prepared", prepared_dir=prepared), **kw)(record)  # fmt: skip
    a, b = raw["x"]["rgb"], prep["x"]["rgb"]
    assert a.shape == b.shape == (3, 8, 32, 32)
    assert raw["x"]["present"]["rgb"] and prep["x"]["present"]["rgb"]
    # same person box, resampled once (raw) or twice (prepared 40 px, then 32 px) + compression
    assert (a - b).abs().mean() < 0.25, (a - b).abs().mean()
    # and not just any picture: another clip's crop differs more
    other = MultiModalPipeline(["rgb"], "imigue22", video=VideoSource("raw"), **kw)(
        cache.load_clip(len(cache) - 1, layout="imigue22")
    )["x"]["rgb"]
    assert (a - other).abs().mean() > (a - b).abs().mean()


def test_person_box_covers_the_upper_body(cache: SkeletonCache) -> None:
    record = cache.load_clip(0, layout="imigue22")
    x0, y0, x1, y1 = clip_person_box(record, "imigue22")
    valid = record.keypoint_score[0] > 0
    xs, ys = record.keypoint[0][..., 0][valid], record.keypoint[0][..., 1][valid]
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    assert inside.mean() > 0.95
    assert x1 - x0 == pytest.approx(y1 - y0)  # square


def test_clip_past_the_end_of_its_video_names_the_file(cache: SkeletonCache) -> None:
    record = cache.load_clip(0, layout="imigue22")
    src = VideoSource("raw", backend="pyav")
    n = src.pool.get(record.video_path).num_frames
    late = record.replace(start=n - 3, end=n + 10)
    with pytest.raises(ClipRangeError, match=Path(record.video_path).name) as err:
        src.read(late, np.arange(0, 13, 3))
    assert str(n) in str(err.value) and record.name in str(err.value)


def test_dataset_error_names_the_clip_and_video(
    cache: SkeletonCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipe = MultiModalPipeline(["rgb", "joint"], "imigue22", num_frames=8,
                              video=VideoSource("raw"), video_frames=4, video_size=32)  # fmt: skip
    ds = SkeletonClipDataset(cache, "train", pipe, layout="imigue22")
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    original = cache.load_clip

    def load_with_broken_video(i, layout=None):
        return original(i, layout=layout).replace(video_path=str(bad))

    monkeypatch.setattr(ds.cache, "load_clip", load_with_broken_video)
    with pytest.raises(ClipLoadError, match="broken.mp4"):
        ds[0]


def test_missing_video_gives_zeros_and_present_false(cache: SkeletonCache) -> None:
    record = cache.load_clip(0, layout="imigue22").replace(video_path=None)
    pipe = MultiModalPipeline(["rgb", "joint"], "imigue22", num_frames=8,
                              video=VideoSource("raw"), video_frames=4, video_size=32)  # fmt: skip
    x = pipe(record)["x"]
    assert x["present"] == {"rgb": False}
    assert torch.count_nonzero(x["rgb"]) == 0 and x["rgb"].shape == (3, 4, 32, 32)


def test_device_normalisation_gives_the_loader_values_bit_for_bit(cache: SkeletonCache) -> None:
    """``normalize_rgb=False`` clips normalised as a batch (on the training device) equal the
    clips the worker normalises, bit for bit, absent videos (zeros) included."""
    records = [cache.load_clip(i, layout="imigue22") for i in range(3)]
    records[1] = records[1].replace(video_path=None)  # no video: zeros, present False
    kw = dict(num_frames=8, video=VideoSource("raw"), video_frames=4, video_size=32)
    loader = MultiModalPipeline(["rgb", "joint"], "imigue22", **kw)
    device = MultiModalPipeline(["rgb", "joint"], "imigue22", normalize_rgb=False, **kw)
    want = torch.stack([loader(r)["x"]["rgb"] for r in records])
    samples = [device(r)["x"] for r in records]
    clips = torch.stack([x["rgb"] for x in samples])
    present = torch.tensor([x["present"]["rgb"] for x in samples])
    assert clips.dtype == torch.uint8 and present.tolist() == [True, False, True]
    got = normalize_clips(clips, present)
    assert got.dtype == torch.float32 and torch.equal(got, want)
    assert torch.count_nonzero(got[1]) == 0 and torch.count_nonzero(got[0]) > 0
    with pytest.raises(TypeError, match="uint8"):
        normalize_clips(want)
    with pytest.raises(ValueError, match="3, T, S, S"):
        normalize_clips(clips[:, :2])  # two channels
    assert torch.equal(normalize_clips(clips[0]), want[0])  # one clip: 4 dims, the fewest
    with pytest.raises(ValueError, match="3, T, S, S"):
        normalize_clips(clips[0, 0])  # 3 dims


def test_datamodule_normalises_on_the_device_as_the_loader_would(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    """``data.video.normalize=device`` (the default) vs ``loader``: the evaluation batch the
    model sees is the same tensor."""
    batches = {}
    for where in ("device", "loader"):
        overrides = [*tiny_video_overrides(tiny_video_release, tiny_video_cache),
                     f"data.video.normalize={where}"]  # fmt: skip
        cfg = compose_config("train", overrides, output_dir=tmp_path / where)
        dm = hydra.utils.instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        batch = next(iter(dm.val_dataloader()))
        assert batch["x"]["rgb"].dtype == (torch.uint8 if where == "device" else torch.float32)
        batches[where] = dm.on_after_batch_transfer(batch, 0)["x"]["rgb"]
    assert torch.equal(batches["device"], batches["loader"])


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="video.normalize"):
        video_options({"normalize": "gpu"})
    with pytest.raises(ValueError, match="unknown video options"):
        video_options({"fps": 3})
    with pytest.raises(ValueError, match="source"):
        video_options({"source": "youtube"})
    with pytest.raises(ValueError, match="multiple"):
        MultiModalPipeline(["rgb"], "imigue22", num_frames=10, video=RecordingSource(),
                           video_frames=4)  # fmt: skip
    with pytest.raises(ValueError, match="modalities"):
        MultiModalPipeline(["depth"], "imigue22", num_frames=8)


def test_datamodule_prepares_clips_once_and_batches_dicts(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    cfg = compose_config("train", tiny_video_overrides(tiny_video_release, tiny_video_cache),
                         output_dir=tmp_path)  # fmt: skip
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    csv = dm.representation.prepared_video_dir / "clips.csv"
    assert csv.is_file()
    stamp = csv.stat().st_mtime_ns
    dm.prepare_data()  # current: nothing rewritten
    assert csv.stat().st_mtime_ns == stamp
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    x = batch["x"]
    assert x["rgb"].shape == (4, 3, 4, 32, 32)
    assert x["rgb"].dtype == torch.uint8  # data.video.normalize=device: normalised on the device
    assert dm.on_after_batch_transfer(batch, 0)["x"]["rgb"].dtype == torch.float32
    assert x["joint"].shape == (4, 3, 8, 22, 1) and x["bone"].shape == (4, 3, 8, 22, 1)
    assert x["present"]["rgb"].dtype == torch.bool and bool(x["present"]["rgb"].all())
    val = next(iter(dm.val_dataloader()))
    assert val["x"]["rgb"].shape[1:] == (3, 4, 32, 32)
