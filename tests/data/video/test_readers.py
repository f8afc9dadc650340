"""Video readers: torchcodec, decord and PyAV give the same, frame-accurate frames; broken files fail
loudly with the file name; clip range checks; the reader pool."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import av
import numpy as np
import pytest

from migalab.data.video import readers
from migalab.data.video.readers import (
    BACKENDS,
    ClipRangeError,
    PyAVReader,
    ReaderPool,
    VideoReadError,
    open_video,
)
from migalab.data.video.writer import write_video

H, W = 48, 64
#: centres of the 8 bit blocks (16x16, a 4x2 grid over the top 32 rows), relative to (H, W)
_BLOCKS = [((b // 4) * 16 + 8, (b % 4) * 16 + 8) for b in range(8)]


def index_frames(num: int, shift: int = 0) -> np.ndarray:
    """(num, 48, 64, 3) uint8 frames whose frame i shows i: eight 16x16 blocks on top, white
    for a set bit of i, black otherwise, plus a red square moving along the bottom band."""
    frames = np.zeros((num, H, W, 3), np.uint8)
    frames[:, 32:] = (40, 80, 40)
    for i in range(num):
        for b, (r, c) in enumerate(_BLOCKS):
            if (i >> b) & 1:
                frames[i, r - 8 : r + 8, c - 8 : c + 8] = 255
        x = (3 * i + shift) % (W - 16)
        frames[i, 34:46, x : x + 12] = (230, 20, 20)
    return frames


def decode_index(frame: np.ndarray) -> int:
    """The frame index drawn by :func:`index_frames`, read back from a frame of any size showing
    the whole (possibly resized) picture."""
    h, w = frame.shape[:2]
    value = 0
    for b, (r, c) in enumerate(_BLOCKS):
        y, x = int(r * h / H), int(c * w / W)
        if frame[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].mean() > 127:
            value |= 1 << b
    return value


def make_video(path: Path, num: int = 60, gop: int = 10, shift: int = 0) -> Path:
    """Write an index video (25 fps, H.264, keyframe every ``gop`` frames) to ``path``."""
    write_video(path, index_frames(num, shift), fps=25, gop=gop)
    return path


def remux(src: Path, dst: Path, fmt: str = "mp4", options: dict[str, str] | None = None) -> Path:
    """Copy the video packets of ``src`` into a new container (no re-encoding)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt, options=options or {}) as out:
        stream = inp.streams.video[0]
        ostream = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:  # the flush packet
                continue
            packet.stream = ostream
            out.mux(packet)
    return dst


def faststart_copy(src: Path, dst: Path) -> Path:
    """Remux ``src`` with the moov atom (index) in front, as downloaded videos usually are."""
    return remux(src, dst, "mp4", {"movflags": "faststart"})


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "0001.mp4")


@pytest.fixture(autouse=True)
def _torchcodec_where_it_loads(request: pytest.FixtureRequest) -> None:
    """A torchcodec case runs where torchcodec can decode (FFmpeg's libraries installed) and is
    skipped elsewhere, unless MIGALAB_REQUIRE_TORCHCODEC is set (CI installs FFmpeg)."""
    callspec = getattr(request.node, "callspec", None)
    if not callspec or callspec.params.get("backend") != "torchcodec":
        return
    problem = readers.torchcodec_problem()
    if problem and os.environ.get("MIGALAB_REQUIRE_TORCHCODEC"):
        pytest.fail(f"MIGALAB_REQUIRE_TORCHCODEC is set: {problem}")
    if problem:
        pytest.skip(problem)


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata(video: Path, backend: str) -> None:
    with open_video(video, backend) as r:
        assert (r.num_frames, r.fps, r.height, r.width) == (60, 25.0, H, W)
        assert r.path == str(video)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_frame_count_in_header(video: Path, tmp_path: Path, backend: str) -> None:
    mkv = remux(video, tmp_path / "0001.mkv", "matroska")
    with av.open(str(mkv)) as c:
        assert c.streams.video[0].frames == 0  # PyAV counts packets instead
    with open_video(mkv, backend) as r:
        assert (r.num_frames, r.fps) == (60, 25.0)
        idx = [59, 0, 33, 10, 9, 58, 20, 20]
        assert [decode_index(f) for f in r.read(idx)] == idx


def _usable_backends() -> list[str]:
    if readers.torchcodec_problem() and not os.environ.get("MIGALAB_REQUIRE_TORCHCODEC"):
        return [b for b in BACKENDS if b != "torchcodec"]
    return list(BACKENDS)


def test_backends_agree_and_are_frame_accurate(video: Path) -> None:
    # unsorted, duplicates, across GOP boundaries (9|10, 19|20, 49|50), the last frames
    idx = [59, 3, 3, 0, 25, 11, 58, 12, 40, 9, 59, 10, 19, 20, 21, 49, 50, 30, 0, 57]
    out = {}
    for backend in _usable_backends():
        with open_video(video, backend) as r:
            frames = r.read(idx)
            assert frames.dtype == np.uint8 and frames.shape == (len(idx), H, W, 3)
            assert [decode_index(f) for f in frames] == idx
            out[backend] = frames
            full = r.read(np.arange(60))
            assert [decode_index(f) for f in full] == list(range(60))
            assert r.read([]).shape == (0, H, W, 3)
    for backend in [b for b in out if b != "pyav"]:
        diff = np.abs(out[backend].astype(np.int16) - out["pyav"].astype(np.int16))
        assert diff.mean() <= 2.0, backend


def test_pyav_consecutive_reads_and_far_jumps(video: Path) -> None:
    with PyAVReader(video) as r:
        chunks = [[4, 5, 6], [7, 8, 15], [16], [55, 2], [2], [58, 59], [30, 31]]
        for chunk in chunks:
            assert [decode_index(f) for f in r.read(chunk)] == chunk
        for i, frame in r.iter_frames([1, 2, 33, 34, 35, 50]):
            assert decode_index(frame) == i


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_range_errors(video: Path, backend: str) -> None:
    with open_video(video, backend) as r:
        clip = r.read_clip(50, 59)
        assert [decode_index(f) for f in clip] == list(range(50, 60))
        got = r.read_clip(10, 20, offsets=np.array([10, 0, 5]))
        assert [decode_index(f) for f in got] == [20, 10, 15]
        with pytest.raises(ClipRangeError, match=r"clip 0001_3 frames 50-60: .*0001\.mp4 has 60"):
            r.read_clip(50, 60, name="0001_3")
        with pytest.raises(ClipRangeError, match=r"frames -1-5: .*0001\.mp4 has 60 frames"):
            r.read_clip(-1, 5)
        with pytest.raises(ClipRangeError, match="0001.mp4"):
            r.read_clip(0, 5, offsets=np.array([6]))
        with pytest.raises(IndexError, match="has 60 frames"):
            r.read([0, 60])


def test_missing_file(tmp_path: Path) -> None:
    for backend in (*_usable_backends(), "auto"):
        with pytest.raises(FileNotFoundError, match="nope.mp4"):
            open_video(tmp_path / "nope.mp4", backend)


def _read_all(path: Path, backend: str) -> None:
    with open_video(path, backend) as r:
        r.read(np.arange(r.num_frames))


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupt_files(video: Path, tmp_path: Path, backend: str) -> None:
    rng = np.random.default_rng(0)
    data = video.read_bytes()
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    # the writer puts the index (moov) last: a valid ftyp header, garbage after it
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(data[:64] + rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    # index first (faststart), every frame's data replaced by garbage
    fast = faststart_copy(video, tmp_path / "fast.mp4").read_bytes()
    mdat = fast.index(b"mdat") + 4
    bad_data = tmp_path / "bad_data.mp4"
    bad_data.write_bytes(fast[:mdat] + rng.integers(0, 256, len(fast) - mdat, np.uint8).tobytes())
    for path in (noise, garbage, bad_data):
        with pytest.raises(VideoReadError, match=path.name):
            _read_all(path, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_files(video: Path, tmp_path: Path, backend: str) -> None:
    data = video.read_bytes()
    half = tmp_path / "half.mp4"  # index at the end: gone
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoReadError, match="half.mp4"):
        _read_all(half, backend)

    fast_path = faststart_copy(video, tmp_path / "fast.mp4")
    fast = fast_path.read_bytes()
    fast_half = tmp_path / "fast_half.mp4"  # index intact, the frame data cut mid-packet
    fast_half.write_bytes(fast[: len(fast) // 2])
    with pytest.raises(VideoReadError, match="fast_half.mp4"):
        with open_video(fast_half, backend) as r:
            r.read([55, 59])

    # cut exactly after packet 30: demuxing just ends, no decoder error
    with av.open(str(fast_path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = packets[30]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(fast[: pos + size])
    with open_video(cut, backend) as r:
        assert r.num_frames == 60  # what the header declares
        assert [decode_index(f) for f in r.read([0, 5])] == [0, 5]
        with pytest.raises(VideoReadError, match=r"cut\.mp4.*truncated") as err:
            r.read([55, 59])
        assert not isinstance(err.value, ClipRangeError)


def _child_reads(pool: ReaderPool, video: Path, parent_reader_id: int, out) -> None:
    reader = pool.get(video)
    out.put((id(reader) != parent_reader_id, pool.opens,
             [decode_index(f) for f in reader.read([5, 20, 41])]))  # fmt: skip


def test_reader_pool_in_a_forked_worker_opens_its_own_readers(video: Path) -> None:
    """A DataLoader worker forked after the main process read a clip must not share the
    parent's open reader (same file offset, same decoder state: corrupt frames); it opens its
    own on its first ``get`` and leaves the parent's open."""
    import multiprocessing as mp

    pool = ReaderPool(max_open=2, backend="pyav")
    parent = pool.get(video)
    assert [decode_index(f) for f in parent.read([1, 2])] == [1, 2]
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_reads, args=(pool, video, id(parent), out))
    child.start()
    fresh, opens, frames = out.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and fresh and opens == 1 and frames == [5, 20, 41]
    assert pool.get(video) is parent and pool.opens == 1  # the parent's reader, still open
    assert [decode_index(f) for f in parent.read([30, 31])] == [30, 31]


def test_reader_pool(video: Path, tmp_path: Path) -> None:
    other = [make_video(tmp_path / f"v{i}.mp4", num=12, gop=4) for i in range(2)]
    pool = ReaderPool(max_open=2, backend="pyav")
    r = pool.get(video)
    assert pool.get(str(video)) is r and pool.opens == 1
    assert [decode_index(f) for f in pool.get(video).read_clip(3, 5)] == [3, 4, 5]
    first = pool.get(other[0])
    pool.get(video)  # video is now the most recently used
    second = pool.get(other[1])  # evicts (and closes) other[0]
    assert pool.opens == 3 and len(pool) == 2
    assert video in pool and other[0] not in pool and first._container is None
    assert pool.get(video) is r and pool.opens == 3
    decord_r = pool.get(video, backend="decord")  # keyed by (path, backend); evicts other[1]
    assert decord_r is not r and pool.opens == 4 and second._container is None
    assert r._container is not None

    clone = pickle.loads(pickle.dumps(pool))
    assert len(clone) == 0 and clone.opens == 0 and clone.max_open == 2
    assert [decode_index(f) for f in clone.get(video).read([7])] == [7]
    assert clone.opens == 1 and len(pool) == 2
    pool.close()
    assert len(pool) == 0 and r._container is None


class _NoFFmpeg:
    """An import hook that makes ``import torchcodec`` fail as it does where FFmpeg's shared
    libraries are missing (its core library cannot be loaded)."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "torchcodec" or name.startswith("torchcodec."):
            raise OSError("libavutil.so.59: cannot open shared object file: No such file or "
                          "directory\n(more lines of torchcodec's own message)")  # fmt: skip
        return None


def test_without_ffmpeg_torchcodec_falls_back_in_one_line(
    video: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    for name in [n for n in sys.modules if n == "torchcodec" or n.startswith("torchcodec.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_NoFFmpeg(), *sys.meta_path])
    readers.torchcodec_problem.cache_clear()
    readers._log_fallback_once.cache_clear()
    try:
        problem = readers.torchcodec_problem()
        assert problem is not None and "apt-get install ffmpeg" in problem
        assert "libavutil.so.59" in problem and "\n" not in problem
        with pytest.raises(readers.VideoBackendUnavailable, match="backend=torchcodec: torchcodec "
                           "cannot load FFmpeg's shared libraries"):  # fmt: skip
            open_video(video, "torchcodec")
        with caplog.at_level("WARNING", logger=readers.__name__):
            for _ in range(3):
                with open_video(video, "auto") as r:
                    assert r.backend in ("decord", "pyav") and r.read([7]).shape == (1, H, W, 3)
        lines = [rec.getMessage() for rec in caplog.records if rec.name == readers.__name__]
        assert len(lines) == 1 and "decoding with" in lines[0]
    finally:
        readers.torchcodec_problem.cache_clear()
        readers._log_fallback_once.cache_clear()


def test_torchcodec_that_imports_without_ffmpeg_is_not_taken(
    video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchcodec >= 0.17 imports where FFmpeg's libraries are missing (its image decoders need
    none), with ``ffmpeg_major_version`` None, and fails only at the first ``VideoDecoder``:
    the probe must see that, or ``auto`` picks a decoder that cannot decode."""
    import torchcodec

    monkeypatch.setattr(torchcodec, "ffmpeg_major_version", None)
    readers.torchcodec_problem.cache_clear()
    try:
        problem = readers.torchcodec_problem()
        assert problem is not None and "apt-get install ffmpeg" in problem
        assert f"torchcodec {torchcodec.__version__}" in problem and "\n" not in problem
        with pytest.raises(readers.VideoBackendUnavailable, match="backend=torchcodec"):
            open_video(video, "torchcodec")
        with open_video(video, "auto") as r:
            assert r.backend in ("decord", "pyav") and [decode_index(f) for f in r.read([7])] == [7]
    finally:
        readers.torchcodec_problem.cache_clear()


def test_auto_decodes_on_this_machine(video: Path) -> None:
    """Whatever FFmpeg this machine has (none, or one torchcodec loads), ``auto`` opens a
    backend that decodes: the probe agrees with what torchcodec really does here."""
    readers.torchcodec_problem.cache_clear()
    with open_video(video, "auto") as r:
        assert [decode_index(f) for f in r.read([0, 31, 59])] == [0, 31, 59]


def test_auto_takes_torchcodec_where_it_loads(video: Path) -> None:
    if readers.torchcodec_problem() is not None:
        pytest.skip(readers.torchcodec_problem())
    with open_video(video, "auto") as r:
        assert r.backend == "torchcodec"
