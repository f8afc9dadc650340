"""The face modality: face jobs from the cache, prepared face crops (once, skip-and-report),
samples and flags through the pipeline and the datamodule."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import numpy as np
import pytest
import torch

from migalab.data.cache import SkeletonCache
from migalab.data.representations import FaceOptions, build_representation
from migalab.data.representations.base import ClipOptions
from migalab.data.representations.multimodal import (
    MultiModalPipeline,
    VideoSource,
    build_face_jobs,
    clip_face_track,
)
from migalab.data.video.prepared_clips import PreparedClips, clips_are_current, prepare_clips
from migalab.data.video.readers import VideoReadError
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_video_overrides

SPLITS = ["train", "validate", "test"]


@pytest.fixture(scope="module")
def cache(tiny_video_cache: Path) -> SkeletonCache:
    return SkeletonCache(tiny_video_cache)


@pytest.fixture(scope="module")
def faces(cache: SkeletonCache, tmp_path_factory: pytest.TempPathFactory) -> Path:
    jobs, problems = build_face_jobs(cache, SPLITS)
    assert not problems and len(jobs) == len(cache)
    out = tmp_path_factory.mktemp("faces")
    res = prepare_clips(jobs, out, size=32, gop=8, progress=False)
    assert res.written == len(jobs) and not res.problems
    return out


def test_face_jobs_follow_the_face_keypoints(cache: SkeletonCache) -> None:
    record = cache.load_clip(0)  # the cache's own joints: all 137
    assert record.layout == "openpose137"
    track = clip_face_track(record)
    n = record.end - record.start + 1
    assert track.boxes.shape == (n, 4) and track.visible.shape == (n,)
    assert track.visible.mean() > 0.5  # the synthetic subject faces the camera
    (job,), _ = build_face_jobs(_one_clip(cache, 0), ["train"])
    assert job.boxes.shape == (n, 4) and job.flags.shape == (n,)
    # video pixels: the 320x180 rendering of 1280x720 keypoints
    np.testing.assert_allclose(job.boxes, track.boxes * 0.25)
    face_pts = record.keypoint[0, :, 25:95]
    ok = record.keypoint_score[0, :, 25:95] > 0.3
    t = int(np.flatnonzero(ok.sum(1) >= 10)[0])
    x0, y0, x1, y1 = track.boxes[t]
    pts = face_pts[t][ok[t]] + 0.5
    assert (pts[:, 0] > x0).mean() > 0.9 and (pts[:, 0] < x1).mean() > 0.9
    assert (pts[:, 1] > y0).mean() > 0.9 and (pts[:, 1] < y1).mean() > 0.9
    assert x1 - x0 == pytest.approx(y1 - y0)
    assert x1 - x0 < 0.25 * record.img_shape[0]  # a face, not the person


class _OneClip:
    """A cache view with one clip (the first rows of the index)."""

    def __init__(self, cache: SkeletonCache, i: int) -> None:
        self.index = cache.index.iloc[i : i + 1]
        self._cache, self._i = cache, i

    def load_clip(self, i: int, layout=None):
        return self._cache.load_clip(self._i, layout=layout)


def _one_clip(cache: SkeletonCache, i: int) -> _OneClip:
    return _OneClip(cache, i)


def test_face_crops_are_current_and_not_rewritten(cache: SkeletonCache, faces: Path) -> None:
    jobs, _ = build_face_jobs(cache, SPLITS)
    assert clips_are_current(faces, jobs, 32, 8, 20)
    clips = PreparedClips(faces)
    name = jobs[0].name
    np.testing.assert_array_equal(clips.flags(name), jobs[0].flags)
    frames = clips.read(name, [0, 1])
    assert frames.shape == (2, 32, 32, 3) and frames.dtype == np.uint8
    # other face options: other boxes, not current
    wider, _ = build_face_jobs(cache, SPLITS, FaceOptions(margin=0.5))
    assert not clips_are_current(faces, wider, 32, 8, 20)


def test_broken_video_is_skipped_and_reported(cache: SkeletonCache, tmp_path: Path) -> None:
    jobs, _ = build_face_jobs(cache, ["test"])
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    jobs[0].video_path = str(bad)
    res = prepare_clips(jobs[:2], tmp_path / "out", size=16, on_error="skip", progress=False)
    assert res.skipped >= 1 and any("broken.mp4" in p for p, _ in res.problems)
    meta = json.loads((tmp_path / "out" / "clips_meta.json").read_text())
    assert meta["counts"]["skipped"] == res.skipped
    with pytest.raises(VideoReadError, match="broken.mp4"):
        prepare_clips(jobs[:1], tmp_path / "out2", size=16, progress=False)


def test_face_samples_at_the_skeleton_instants(cache: SkeletonCache, faces: Path) -> None:
    src = VideoSource("prepared", prepared_dir=faces, backend="pyav")
    pipe = MultiModalPipeline(["face", "joint"], "imigue22", num_frames=8, face=src,
                              face_frames=4, face_size=32)  # fmt: skip
    record = cache.load_clip(1, layout="imigue22")
    x = pipe(record)["x"]
    assert x["face"].shape == (4, 3, 32, 32) and x["face"].dtype == torch.uint8
    assert x["face_visible"].shape == (4,) and x["face_visible"].dtype == torch.bool
    assert x["present"] == {"face": bool(x["face_visible"].any())}
    assert x["joint"].shape == (3, 8, 22, 1)
    from migalab.data.skeleton.transforms import uniform_frame_indices

    offsets = uniform_frame_indices(record.num_frames, 8)[::2]
    np.testing.assert_array_equal(x["face"].permute(0, 2, 3, 1).numpy(),
                                  src.clips.read(record.name, offsets))  # fmt: skip
    flags = src.clips.flags(record.name)
    np.testing.assert_array_equal(x["face_visible"].numpy(), flags[offsets])
    # flipped with the skeleton in training
    flip = MultiModalPipeline(["face", "joint"], "imigue22", num_frames=8, face=src,
                              face_frames=8, face_size=32, train=True,
                              augment={"flip": {"p": 1.0}, "affine": None})  # fmt: skip
    same = MultiModalPipeline(["face", "joint"], "imigue22", num_frames=8, face=src,
                              face_frames=8, face_size=32, train=True,
                              augment={"flip": None, "affine": None})  # fmt: skip
    torch.manual_seed(0)
    a = flip(record)["x"]["face"]
    torch.manual_seed(0)
    b = same(record)["x"]["face"]
    assert a.shape == b.shape == (8, 3, 32, 32)
    assert torch.equal(a, b.flip(-1))


def test_missing_face_crops_give_zeros_and_flags(cache: SkeletonCache, faces: Path) -> None:
    src = VideoSource("prepared", prepared_dir=faces, backend="pyav")
    pipe = MultiModalPipeline(["face"], "imigue22", num_frames=8, face=src, face_frames=8,
                              face_size=32)  # fmt: skip
    record = cache.load_clip(0, layout="imigue22").replace(name="no_such_clip")
    x = pipe(record)["x"]
    assert x["present"] == {"face": False}
    assert x["face"].shape == (8, 3, 32, 32) and torch.count_nonzero(x["face"]) == 0
    assert not x["face_visible"].any()
    with pytest.raises(ValueError, match="multiple"):
        MultiModalPipeline(["face"], "imigue22", num_frames=8, face=src, face_frames=3)
    with pytest.raises(ValueError, match="prepared VideoSource"):
        MultiModalPipeline(["face"], "imigue22", num_frames=8)
    with pytest.raises(ValueError, match="unknown face options"):
        build_representation("gcn", ClipOptions(), modalities=["face"], face={"sise": 3})
    with pytest.raises(ValueError, match="on_error"):
        FaceOptions(on_error="ignore")


@pytest.mark.slow  # prepares face crops of a video release (~5 s)
def test_datamodule_face_modality(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    overrides = tiny_video_overrides(tiny_video_release, tiny_video_cache)
    overrides += ["data.modalities=[face,joint]", "data.face.size=32", "data.face.num_frames=4",
                  f"data.face.prepared_dir={tmp_path / 'faces'}"]  # fmt: skip
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    csv = tmp_path / "faces" / "clips.csv"
    stamp = csv.stat().st_mtime_ns
    dm.prepare_data()  # current: nothing rewritten
    assert csv.stat().st_mtime_ns == stamp
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    x = batch["x"]
    assert set(x) == {"face", "face_visible", "joint", "present"}
    assert x["face"].shape == (4, 4, 3, 32, 32) and x["face"].dtype == torch.uint8
    assert x["face_visible"].shape == (4, 4) and x["face_visible"].dtype == torch.bool
    assert x["present"]["face"].shape == (4,) and x["present"]["face"].dtype == torch.bool
    assert torch.equal(x["present"]["face"], x["face_visible"].any(1))
    assert x["joint"].shape == (4, 3, 8, 22, 1)
    val = next(iter(dm.val_dataloader()))
    assert val["x"]["face"].shape[1:] == (4, 3, 32, 32)
