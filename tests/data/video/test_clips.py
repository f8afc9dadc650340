"""The prepared clip cache: crops, sizes, frame accuracy, error handling, currency."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from migalab.data.video.prepared_clips import (
    ClipJob,
    PreparedClips,
    clips_are_current,
    prepare_clips,
)
from migalab.data.video.readers import ClipRangeError, VideoReadError, open_video
from tests.data.video.test_readers import decode_index, make_video

SIZE = 64


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("src")
    return make_video(root / "0001.mp4", num=60), make_video(root / "0002.mp4", num=40, shift=7)


def _jobs(v0: Path, v1: Path) -> list[ClipJob]:
    return [
        ClipJob("0001_0", str(v0), 5, 20, (-8.0, -6.0, 24.0, 26.0), "train"),  # partly outside
        ClipJob("0001_1", str(v0), 15, 34, (10.0, 4.0, 42.0, 36.0), "train"),  # overlaps 0001_0
        ClipJob("0002_0", str(v1), 0, 11, (0.0, 0.0, 64.0, 48.0), "val"),
        ClipJob("0002_1", str(v1), 28, 39, (0.0, 0.0, 64.0, 48.0), "val"),  # to the last frame
    ]


def _by_hand(video: Path, job: ClipJob, size: int) -> np.ndarray:
    """Crop (zero-padded) and resize the source frames with NumPy + PIL."""
    with open_video(video, "pyav") as r:
        frames = r.read_clip(job.start, job.end)
    x0, y0, x1, y1 = (int(np.floor(job.box[0])), int(np.floor(job.box[1])),
                      int(np.ceil(job.box[2])), int(np.ceil(job.box[3])))  # fmt: skip
    pad = max(0, -x0, -y0, x1 - r.width, y1 - r.height)
    padded = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    crops = padded[:, y0 + pad : y1 + pad, x0 + pad : x1 + pad]
    return np.stack(
        [np.asarray(Image.fromarray(c).resize((size, size), Image.BILINEAR)) for c in crops]
    )


@pytest.fixture(scope="module")
def prepared(videos: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clips")
    res = prepare_clips(_jobs(*videos), out, size=SIZE, gop=4, crf=18, progress=False)
    assert (res.written, res.skipped, res.problems) == (4, 0, [])
    return out


def test_clip_files(prepared: Path, videos: tuple[Path, Path]) -> None:
    jobs = _jobs(*videos)
    with open(prepared / "clips.csv", newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert list(rows) == [j.name for j in jobs]
    for job in jobs:
        row = rows[job.name]
        assert row["file"] == f"{job.split}/{job.name}.mp4"
        assert (int(row["start"]), int(row["end"]), int(row["frames"]), int(row["size"])) == (
            job.start, job.end, job.end - job.start + 1, SIZE)  # fmt: skip
        with open_video(prepared / row["file"], "pyav") as r:
            assert (r.num_frames, r.height, r.width) == (job.end - job.start + 1, SIZE, SIZE)
            frames = r.read(np.arange(r.num_frames))
        source = videos[0] if job.name.startswith("0001") else videos[1]
        expected = _by_hand(source, job, SIZE)
        diff = np.abs(frames.astype(np.int16) - expected.astype(np.int16))
        assert diff.mean() < 4.0, (job.name, diff.mean())
    # the padded corner of the partly-outside box stays black
    with open_video(prepared / "train/0001_0.mp4", "pyav") as r:
        assert r.read([0])[0, :3, :3].mean() < 20
    meta = json.loads((prepared / "clips_meta.json").read_text())
    assert meta["counts"] == {"jobs": 4, "videos": 2, "written": 4, "skipped": 0}
    assert (meta["size"], meta["gop"], meta["crf"]) == (SIZE, 4, 18)


def test_clips_are_current(prepared: Path, videos: tuple[Path, Path]) -> None:
    jobs = _jobs(*videos)
    assert clips_are_current(prepared, jobs, SIZE, 4, 18)
    assert not clips_are_current(prepared, jobs, 16, 4, 18)
    assert not clips_are_current(prepared, jobs, SIZE, 8, 18)
    assert not clips_are_current(prepared, jobs[:3], SIZE, 4, 18)
    moved = [ClipJob(j.name, j.video_path, j.start, j.end, j.box, j.split) for j in jobs]
    moved[0].box = (-8.0, -6.0, 24.0, 28.0)
    assert not clips_are_current(prepared, moved, SIZE, 4, 18)
    assert not clips_are_current(prepared.parent / "nowhere", jobs, SIZE, 4, 18)


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_prepared_clips_read(prepared: Path, backend: str) -> None:
    clips = pickle.loads(pickle.dumps(PreparedClips(prepared)))
    assert clips.has("0002_1") and not clips.has("nope") and len(clips) == 4
    assert clips.path("0002_1") == prepared / "val/0002_1.mp4"
    assert clips.box("0001_0") == (-8.0, -6.0, 24.0, 26.0)
    offsets = np.array([11, 0, 5, 5, 10])
    frames = clips.read("0002_1", offsets, backend=backend)
    assert frames.shape == (5, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert [decode_index(f) for f in frames] == (28 + offsets).tolist()
    frames = clips.read("0002_0", np.arange(12), backend=backend)
    assert [decode_index(f) for f in frames] == list(range(12))
    with pytest.raises(ClipRangeError, match=r"0002_1.*val/0002_1\.mp4 has 12 frames"):
        clips.read("0002_1", np.array([3, 12]), backend=backend)
    with pytest.raises(ClipRangeError, match="0002_1"):
        clips.read("0002_1", np.array([-1]), backend=backend)
    with pytest.raises(KeyError, match="nope"):
        clips.read("nope", np.array([0]))


def test_prepared_clips_read_with_pool(prepared: Path) -> None:
    from migalab.data.video.readers import ReaderPool

    clips, pool = PreparedClips(prepared), ReaderPool(max_open=2, backend="pyav")
    for offsets in ([0, 1], [2, 3], [11]):
        frames = clips.read("0002_1", np.array(offsets), pool=pool)
        assert [decode_index(f) for f in frames] == [28 + o for o in offsets]
    assert pool.opens == 1


def test_bad_videos_skip_or_raise(videos: tuple[Path, Path], tmp_path: Path) -> None:
    corrupt = tmp_path / "0003.mp4"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, np.uint8).tobytes())
    jobs = [
        *_jobs(*videos)[2:],
        ClipJob("0003_0", str(corrupt), 0, 9, (0, 0, 32, 32), "test"),
        ClipJob("0002_9", str(videos[1]), 35, 45, (0, 0, 32, 32), "val"),  # past the end
    ]
    out = tmp_path / "out"
    res = prepare_clips(jobs, out, size=16, on_error="skip", progress=False)
    assert (res.written, res.skipped) == (2, 2)
    problems = dict(res.problems)
    assert set(problems) == {str(corrupt), str(videos[1])}
    assert "0003.mp4" in problems[str(corrupt)]
    assert "clip 0002_9 frames 35-45" in problems[str(videos[1])]
    assert "0002.mp4 has 40 frames" in problems[str(videos[1])]
    clips = PreparedClips(out)
    assert clips.names == ["0002_0", "0002_1"]
    assert not (out / "test/0003_0.mp4").exists() and not (out / "val/0002_9.mp4").exists()
    meta = json.loads((out / "clips_meta.json").read_text())
    assert meta["counts"]["skipped"] == 2 and len(meta["problems"]) == 2
    assert clips_are_current(out, jobs, 16, 16, 20)

    with pytest.raises(VideoReadError, match="0003.mp4"):
        prepare_clips(jobs[2:3], tmp_path / "out2", size=16, progress=False)
    assert not (tmp_path / "out2/clips_meta.json").exists()
    with pytest.raises(ClipRangeError, match="0002.mp4 has 40 frames"):
        prepare_clips(jobs[3:], tmp_path / "out3", size=16, progress=False)


def test_truncated_video_keeps_finished_clips(videos: tuple[Path, Path], tmp_path: Path) -> None:
    import av

    from tests.data.video.test_readers import faststart_copy

    fast_path = faststart_copy(videos[0], tmp_path / "fast.mp4")
    with av.open(str(fast_path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[30]
    cut = tmp_path / "0009.mp4"  # header says 60 frames, data ends after ~30
    cut.write_bytes(fast_path.read_bytes()[: pos + size])
    jobs = [
        ClipJob("a", str(cut), 2, 20, (0, 0, 64, 48), "x"),
        ClipJob("b", str(cut), 15, 50, (0, 0, 64, 48), "x"),
        ClipJob("c", str(cut), 52, 59, (0, 0, 64, 48), "x"),
    ]
    for backend in ("pyav", "decord"):
        out = tmp_path / backend
        res = prepare_clips(jobs, out, size=16, on_error="skip", progress=False, backend=backend)
        assert (res.written, res.skipped) == (1, 2), backend
        ((path, message),) = res.problems
        assert path == str(cut) and "0009.mp4" in message and "truncated" in message
        assert PreparedClips(out).names == ["a"]
        assert sorted(p.name for p in (out / "x").iterdir()) == ["a.mp4"]  # no temp files left
        with pytest.raises(VideoReadError, match="0009.mp4"):
            prepare_clips(jobs, tmp_path / "raise", size=16, progress=False, backend=backend)


def test_crop_resize_matches_pil() -> None:
    """The prepare step's per-frame crop is the load-time crop (transforms.crop_resize); inside
    the frame it matches PIL's bilinear resize; outside the frame it is black."""
    from migalab.data.video.prepared_clips import crop_resize

    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    for box in [(10, 4, 42, 36), (0, 0, 64, 48), (30, 10, 62, 42)]:
        crop = np.ascontiguousarray(frame[box[1] : box[3], box[0] : box[2]])
        for size in (16, 64):
            expected = np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))
            got = crop_resize(frame, box, size)
            assert got.shape == (size, size, 3) and got.dtype == np.uint8
            assert np.abs(got.astype(np.int16) - expected).max() <= 1
    got = crop_resize(frame, (-16, -16, 16, 16), 32)  # the top-left quarter lies outside
    assert (got[:16, :] == 0).all() and (got[:, :16] == 0).all()
    assert got[16:, 16:].any()


def test_validation(videos: tuple[Path, Path], tmp_path: Path) -> None:
    jobs = _jobs(*videos)
    with pytest.raises(ValueError, match="even"):
        prepare_clips(jobs, tmp_path, size=31, progress=False)
    with pytest.raises(ValueError, match="duplicate"):
        prepare_clips([jobs[0], jobs[0]], tmp_path, progress=False)
    with pytest.raises(ValueError, match="on_error"):
        prepare_clips(jobs, tmp_path, on_error="ignore", progress=False)


@pytest.mark.slow
def test_process_pool(videos: tuple[Path, Path], tmp_path: Path, prepared: Path) -> None:
    jobs = _jobs(*videos)
    res = prepare_clips(jobs, tmp_path, size=SIZE, gop=4, crf=18, workers=2, progress=False)
    assert (res.written, res.skipped, res.problems) == (4, 0, [])
    assert clips_are_current(tmp_path, jobs, SIZE, 4, 18)
    for job in jobs:
        n = np.arange(job.end - job.start + 1)
        a = PreparedClips(tmp_path).read(job.name, n).astype(np.int16)
        b = PreparedClips(prepared).read(job.name, n).astype(np.int16)
        assert np.abs(a - b).mean() < 1.0
