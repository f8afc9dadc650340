"""Frame-accurate video readers with three interchangeable backends (torchcodec, decord, PyAV).

The backends return the same frames: ``read(indices)`` gives a uint8 (len(indices), H, W, 3)
RGB array in the requested order (duplicates and unsorted indices allowed; each distinct frame
is decoded once), ``read_clip(start, end, offsets)`` reads frames of a 0-based inclusive
interval with a range check that names the clip, the file and its frame count.

How decoding avoids re-opening and re-scanning a video:

* :class:`ReaderPool` keeps a small per-process LRU of open readers keyed by (path, backend), so
  consecutive clips of one interview video reuse one open reader instead of opening the file
  again for every clip. The pool is picklable without its open handles, so a Dataset that holds
  one can be sent to DataLoader worker processes, each of which then opens its own readers.
* decord builds its frame index (it demuxes every packet of the file) once per open; a clip is
  then one ``get_batch`` call over its sorted unique frame indices. torchcodec (exact seek
  mode) scans the packets once per open the same way; a clip is one ``get_frames_at`` call.
  ``auto`` takes torchcodec where FFmpeg's shared libraries let it load, else decord, else
  PyAV (:func:`auto_backend`).
* PyAV opens the container once and keeps it. A read seeks to the keyframe at or before the
  first wanted frame only (never to the start of the file), decodes forward, converts only the
  wanted frames to RGB and stops after the last one. A wanted frame far beyond the current
  position (more than ``2 * GOP`` frames, GOP as observed or 250) is reached by a new seek
  rather than decoding through the gap, and a read that starts shortly after the previous read
  ended continues decoding without seeking at all.

The cost of a read is therefore dominated by decoding from the preceding keyframe to the last
wanted frame. Long-GOP 1280x720 interview sources (keyframes every ~250 frames) cost up to a
second per 16-frame clip; for training, prepare the person-cropped short-GOP clip cache once
(:mod:`migalab.data.video.prepared_clips`) and read from that.
"""

from __future__ import annotations

import functools
import logging
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Backend names accepted by :func:`open_video` (plus ``"auto"``).
BACKENDS = ("decord", "pyav", "torchcodec")

#: Frame gap assumed between keyframes before one has been observed (iMiGUE-like sources).
DEFAULT_GOP = 250


class VideoReadError(RuntimeError):
    """A video could not be opened or decoded; the message names the file and the problem."""


class ClipRangeError(VideoReadError, IndexError):
    """Requested frames lie outside the video (past its end or negative); the message names the
    clip/indices, the file and the video's frame count."""


def _check_exists(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video file not found: {path}")


def _as_indices(indices: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(indices)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise TypeError(f"frame indices must be integers, got {arr.dtype}")
    return arr.astype(np.int64)


def _fmt_indices(idx: np.ndarray, limit: int = 8) -> str:
    vals = ", ".join(str(int(v)) for v in idx[:limit])
    return f"[{vals}{', ...' if len(idx) > limit else ''}]"


class VideoReader(ABC):
    """An open video file from which frames are read by 0-based index.

    Attributes:
        path: the video file.
        num_frames: number of frames in the video.
        fps: average frame rate.
        height, width: frame size in pixels.
    """

    path: str
    num_frames: int
    fps: float
    height: int
    width: int
    backend: str = ""

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames ``indices`` as a uint8 (len(indices), H, W, 3) RGB array, in the requested
        order; duplicates and unsorted indices allowed, each distinct frame decoded once.

        Raises:
            ClipRangeError: an index is negative or >= ``num_frames``.
            VideoReadError: decoding failed (corrupt or truncated file).
        """
        idx = _as_indices(indices)
        if idx.size == 0:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.num_frames:
            raise ClipRangeError(
                f"frames {_fmt_indices(idx)}: {self.path} has {self.num_frames} frames"
            )
        uniq, inverse = np.unique(idx, return_inverse=True)
        frames = self._read_sorted(uniq)
        if frames.shape[0] != len(uniq):
            raise VideoReadError(
                f"{self.path}: expected {len(uniq)} frames from {self.backend}, "
                f"got {frames.shape[0]}"
            )
        return frames if len(uniq) == len(idx) and np.array_equal(uniq, idx) else frames[inverse]

    def read_clip(
        self,
        start: int,
        end: int,
        offsets: np.ndarray | None = None,
        name: str | None = None,
    ) -> np.ndarray:
        """Frames ``start + offsets`` of the clip [start, end] (0-based, inclusive) as uint8
        (len(offsets), H, W, 3); ``offsets=None`` reads every frame start..end.

        Raises:
            ClipRangeError: ``start < 0``, ``end >= num_frames``, ``end < start`` or an offset
                outside [0, end - start]; the message names the clip ``name``, the file and
                the frame count.
        """
        start, end = int(start), int(end)
        what = f"clip {name} frames {start}-{end}" if name else f"frames {start}-{end}"
        if start < 0 or end >= self.num_frames or end < start:
            raise ClipRangeError(f"{what}: {self.path} has {self.num_frames} frames")
        if offsets is None:
            return self.read(np.arange(start, end + 1))
        off = _as_indices(offsets)
        if off.size and (off.min() < 0 or off.max() > end - start):
            raise ClipRangeError(
                f"{what}: offsets {_fmt_indices(off)} outside 0..{end - start} "
                f"({self.path} has {self.num_frames} frames)"
            )
        return self.read(start + off)

    def iter_frames(self, indices: Sequence[int] | np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame (H, W, 3) uint8)`` for sorted unique ``indices``, in order.

        Meant for long sequential passes (e.g. preparing every clip of a video): the base
        implementation reads chunks of 64 frames; PyAV streams one decode pass.
        """
        idx = np.unique(_as_indices(indices))
        for i in range(0, len(idx), 64):
            chunk = idx[i : i + 64]
            frames = self.read(chunk)
            yield from zip((int(v) for v in chunk), frames, strict=True)

    @abstractmethod
    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        """Decode sorted, unique, in-range ``indices`` → (len, H, W, 3) uint8."""

    @abstractmethod
    def close(self) -> None:
        """Release the file and decoder."""

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.path!r}, frames={self.num_frames}, fps={self.fps:g}, "
            f"{self.width}x{self.height})"
        )


class DecordReader(VideoReader):
    """decord backend: ``decord.VideoReader`` on the CPU; one ``get_batch`` per read.

    Opening scans the whole file to build decord's frame index (seconds for an hour-long
    video), which is why readers should be kept open (:class:`ReaderPool`).
    """

    backend = "decord"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        import decord

        self.path = os.fspath(path)
        _check_exists(self.path)
        self._errors = _decord_errors()
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=num_threads)
            self._decodable = len(self._vr)
            self.fps = float(self._vr.get_avg_fps())
            if self._decodable > 0:
                h, w = self._vr[0].shape[:2]
                self._vr.seek(0)
            else:
                h = w = 0
        except self._errors as e:
            raise VideoReadError(f"{self.path}: decord cannot open the video: {e}") from e
        self.height, self.width = int(h), int(w)
        # decord's index holds only the packets it could demux: a file cut after its header
        # (moov first) opens "fine" with fewer frames. Compare with the header's count so a
        # truncated file fails loudly, as with PyAV, instead of looking like a short video.
        self.declared_frames = _header_frames(self.path)
        self.num_frames = max(self._decodable, self.declared_frames)

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        if self._vr is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        if int(indices[-1]) >= self._decodable:
            raise VideoReadError(
                f"{self.path}: frame {int(indices[-1])} requested but decord indexed only "
                f"{self._decodable} of the {self.declared_frames} frames the header declares; "
                "the file may be truncated or corrupt"
            )
        try:
            return self._vr.get_batch(indices.tolist()).asnumpy()
        except self._errors as e:
            raise VideoReadError(
                f"{self.path}: decord failed to decode frames {_fmt_indices(indices)}: {e}; "
                "the file may be truncated or corrupt"
            ) from e

    def iter_frames(self, indices: Sequence[int] | np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, (H, W, 3) uint8)`` for sorted unique ``indices`` (``get_batch`` in
        chunks of 64); in a truncated file, every frame before the cut is yielded first."""
        idx = np.unique(_as_indices(indices))
        readable = idx[idx < self._decodable]
        yield from super().iter_frames(readable)
        if len(readable) < len(idx):
            self.read(idx[len(readable) :])  # raises the range / truncation error

    def close(self) -> None:
        self._vr = None


def _header_frames(path: str) -> int:
    """Frame count declared by the container header (read with PyAV, no decoding); 0 when
    unknown or unreadable."""
    import av

    try:
        with av.open(path) as container:
            return int(container.streams.video[0].frames) if container.streams.video else 0
    except (av.FFmpegError, OSError, ValueError):
        return 0


def _decord_errors() -> tuple[type[BaseException], ...]:
    try:
        from decord._ffi.base import DECORDError
    except ImportError:  # pragma: no cover - depends on decord internals
        return (RuntimeError, ValueError, OSError)
    return (DECORDError, RuntimeError, ValueError, OSError)


class PyAVReader(VideoReader):
    """PyAV backend: one open container; seek to the preceding keyframe, decode forward.

    Frame indices come from presentation timestamps,
    ``round((pts - start_pts) * time_base * fps)``, so a read is frame-accurate whatever the
    decode order (B-frames) or where the seek landed.
    """

    backend = "pyav"

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        import av

        self.path = os.fspath(path)
        _check_exists(self.path)
        self._av_error = av.FFmpegError
        try:
            self._container = av.open(self.path)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoReadError(f"{self.path}: PyAV cannot open the video: {e}") from e
        try:
            if not self._container.streams.video:
                raise VideoReadError(f"{self.path}: no video stream")
            stream = self._container.streams.video[0]
            stream.codec_context.thread_count = max(int(threads), 1)
            if threads > 1:
                stream.thread_type = "AUTO"
            self._stream = stream
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise VideoReadError(f"{self.path}: unknown frame rate")
            self.fps = float(rate)
            self._time_base = stream.time_base
            self._start_pts = int(stream.start_time or 0)
            self.height = int(stream.codec_context.height)
            self.width = int(stream.codec_context.width)
            self.num_frames = int(stream.frames) or self._count_packets()
        except VideoReadError:
            self._container.close()
            raise
        except (av.FFmpegError, OSError, ValueError) as e:
            self._container.close()
            raise VideoReadError(f"{self.path}: PyAV cannot read the video header: {e}") from e
        self._gop = 0  # largest keyframe interval seen so far (0 = none seen)
        self._last_key: int | None = None
        self._decoder: Iterator[Any] | None = None  # live decode generator
        self._pos = -1  # index of the last frame the live decoder produced
        self._furthest = -1  # furthest frame index decoded by the current read
        self.seeks = 0  # number of seeks done (for tests / reporting)

    # -- index <-> timestamp ---------------------------------------------------------------
    def _index(self, frame: Any, prev: int) -> int:
        if frame.pts is None:
            return prev + 1
        return int(round(float((frame.pts - self._start_pts) * self._time_base) * self.fps))

    def _pts(self, index: int) -> int:
        return self._start_pts + int(index / (self.fps * self._time_base))

    def _count_packets(self) -> int:
        """Frame count by demuxing every packet (no decoding) when the header has none."""
        n = 0
        for packet in self._container.demux(self._stream):
            if packet.size:
                n += 1
        self._container.seek(self._start_pts, stream=self._stream, backward=True)
        return n

    # -- decoding ----------------------------------------------------------------------------
    @property
    def _seek_gap(self) -> int:
        """Frames beyond the decode position past which a new seek beats decoding through."""
        return 2 * (self._gop or DEFAULT_GOP)

    def _seek(self, index: int) -> None:
        self._container.seek(
            max(self._pts(index), self._start_pts),
            stream=self._stream,
            backward=True,
            any_frame=False,
        )
        self.seeks += 1
        self._decoder = self._container.decode(self._stream)
        self._pos = -1
        self._last_key = None

    def _next(self) -> tuple[int, Any] | None:
        """Next decoded (index, av.VideoFrame) from the live decoder; None at end of stream."""
        try:
            frame = next(self._decoder)
        except StopIteration:
            self._decoder = None
            return None
        idx = self._index(frame, self._pos)
        if frame.key_frame:
            if self._last_key is not None and idx > self._last_key:
                self._gop = max(self._gop, idx - self._last_key)
            self._last_key = idx
        self._pos = idx
        return idx, frame

    def _position_before(self, target: int) -> tuple[int, Any] | None:
        """Seek so that decoding restarts at the keyframe at or before ``target``; return the
        first decoded (index, frame), or None when nothing could be decoded.

        If the demuxer lands after ``target`` (possible with B-frames, where a keyframe's decode
        timestamp precedes its presentation), seek again further back.
        """
        backoff = 0
        while True:
            seek_to = max(target - backoff, 0)
            self._seek(seek_to)
            first = self._next()
            if first is None or first[0] <= target or seek_to == 0:
                return first
            backoff = max(2 * backoff, self._gop or 16)

    def _decode_targets(self, targets: np.ndarray) -> Iterator[tuple[int, Any]]:
        """Yield ``(target, av.VideoFrame)`` for sorted unique ``targets``, in order.

        Continues the live decoder when the first target lies a short way ahead of it (so
        consecutive reads don't seek), otherwise seeks; seeks again over gaps longer than
        ``2 * GOP``. A target whose exact index never shows up (variable frame rate) gets the
        frame on screen at its time, i.e. the last decoded frame before it.
        """
        n = len(targets)
        k = 0
        prev: tuple[int, Any] | None = None
        item: tuple[int, Any] | None = None  # decoded, not yet consumed
        positioned_for: int | None = None  # the target the last seek was for
        self._furthest = -1
        try:
            while k < n:
                t = int(targets[k])
                if item is None:
                    stale = (
                        self._decoder is None or t <= self._pos or t > self._pos + self._seek_gap
                    )
                    if stale and positioned_for != t:
                        item = self._position_before(t)
                        positioned_for, prev = t, None
                    elif self._decoder is not None:
                        item = self._next()
                    if item is None:  # end of stream with targets left
                        break
                idx, frame = item
                item = None
                self._furthest = max(self._furthest, idx)
                while k < n and targets[k] <= idx:
                    tk = int(targets[k])
                    yield tk, (frame if idx == tk or prev is None else prev[1])
                    k += 1
                prev = (idx, frame)
        except self._av_error as e:
            self._decoder = None
            raise VideoReadError(
                f"{self.path}: decoding failed ({e}); {self._progress()}; the file may be "
                "truncated or corrupt"
            ) from e
        if k < n:
            raise VideoReadError(
                f"{self.path}: frame {int(targets[k])} requested but decoding ended; "
                f"{self._progress()}; the file may be truncated or corrupt"
            )

    def _progress(self) -> str:
        last = max(self._furthest, self._pos)
        if last < 0:
            return f"decoded no frame (of {self.num_frames})"
        return f"decoded only up to frame {last} (of {self.num_frames})"

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        if self._container is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        out = np.empty((len(indices), self.height, self.width, 3), np.uint8)
        for i, (_, frame) in enumerate(self._decode_targets(indices)):
            out[i] = frame.to_ndarray(format="rgb24")
        return out

    def iter_frames(self, indices: Sequence[int] | np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, (H, W, 3) uint8)`` for sorted unique ``indices`` in one streaming
        decode pass (seeking over gaps longer than ``2 * GOP``)."""
        idx = np.unique(_as_indices(indices))
        if idx.size and (idx[0] < 0 or idx[-1] >= self.num_frames):
            raise ClipRangeError(
                f"frames {_fmt_indices(idx)}: {self.path} has {self.num_frames} frames"
            )
        for t, frame in self._decode_targets(idx):
            yield t, frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        if self._container is not None:
            self._decoder = None
            self._container.close()
            self._container = None


class TorchCodecReader(VideoReader):
    """torchcodec backend (PyTorch's decoder, the maintained successor of decord): one
    ``VideoDecoder`` in exact seek mode (its open scans the packets: frame-accurate), one
    ``get_frames_at`` per read, frames NHWC uint8. torchcodec loads FFmpeg's shared libraries,
    which its wheels do not bundle (:func:`torchcodec_problem`)."""

    backend = "torchcodec"

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        problem = torchcodec_problem()
        if problem:
            raise VideoBackendUnavailable(f"data.video.backend=torchcodec: {problem}")
        from torchcodec.decoders import VideoDecoder

        self.path = os.fspath(path)
        _check_exists(self.path)
        try:
            self._dec = VideoDecoder(
                self.path,
                dimension_order="NHWC",
                seek_mode="exact",
                num_ffmpeg_threads=int(num_threads),
                device="cpu",
            )
            meta = self._dec.metadata
        except (RuntimeError, ValueError) as e:
            raise VideoReadError(f"{self.path}: torchcodec cannot open the video: {e}") from e
        self.fps = float(meta.average_fps or 0.0)
        self.height, self.width = int(meta.height or 0), int(meta.width or 0)
        # the packets found by the scan; a file cut after its header has fewer than it declares
        # (as with decord): the header's count, so reading past the cut fails as truncated
        self._decodable = int(meta.num_frames_from_content or meta.num_frames or 0)
        self.declared_frames = int(meta.num_frames_from_header or 0) or _header_frames(self.path)
        self.num_frames = max(self._decodable, self.declared_frames)

    def _read_sorted(self, indices: np.ndarray) -> np.ndarray:
        if self._dec is None:
            raise VideoReadError(f"{self.path}: reader is closed")
        if int(indices[-1]) >= self._decodable:
            raise VideoReadError(
                f"{self.path}: frame {int(indices[-1])} requested but torchcodec found only "
                f"{self._decodable} of the {self.declared_frames} frames the header declares; "
                "the file may be truncated or corrupt"
            )
        try:
            return self._dec.get_frames_at(indices=indices.tolist()).data.numpy()
        except (RuntimeError, IndexError, ValueError) as e:
            raise VideoReadError(
                f"{self.path}: torchcodec failed to decode frames {_fmt_indices(indices)}: {e}; "
                "the file may be truncated or corrupt"
            ) from e

    def close(self) -> None:
        self._dec = None


class VideoBackendUnavailable(VideoReadError):
    """The video backend asked for cannot run here (its package or libraries are missing)."""


@functools.cache
def torchcodec_problem() -> str | None:
    """Why torchcodec cannot decode here (not installed, or FFmpeg's shared libraries missing:
    its wheels do not bundle them), in one line; None when it can."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except ImportError as e:
        return f"torchcodec is not installed ({e})"
    except (OSError, RuntimeError) as e:  # libtorchcodec_core*.so cannot find libavutil & co
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{_NO_FFMPEG}: {first[:200]}"
    # torchcodec >= 0.17 imports without FFmpeg (its image decoders need none), leaves
    # ffmpeg_major_version None, and raises at the first VideoDecoder instead
    if getattr(torchcodec, "ffmpeg_major_version", 0) is None:
        version = getattr(torchcodec, "__version__", "?")
        return f"{_NO_FFMPEG}: torchcodec {version} found none of FFmpeg 4-9's libavutil"
    return None


_NO_FFMPEG = (
    "torchcodec cannot load FFmpeg's shared libraries (install FFmpeg, e.g. apt-get install ffmpeg)"
)


def _have_decord() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def auto_backend() -> str:
    """What ``backend="auto"`` opens: torchcodec where it can decode, else decord where
    importable, else PyAV; the first fallback from torchcodec is logged once, in one line."""
    problem = torchcodec_problem()
    if problem is None:
        return "torchcodec"
    fallback = "decord" if _have_decord() else "pyav"
    _log_fallback_once(problem, fallback)
    return fallback


@functools.cache
def _log_fallback_once(problem: str, fallback: str) -> None:
    log.warning("video backend auto: %s; decoding with %s instead", problem, fallback)


def open_video(path: str | os.PathLike, backend: str = "decord", threads: int = 1) -> VideoReader:
    """Open ``path`` with ``backend`` ("torchcodec", "decord", "pyav", or "auto":
    :func:`auto_backend`), decoding with ``threads`` threads.

    Raises:
        FileNotFoundError: no such file.
        VideoReadError: the file is not a readable video.
        VideoBackendUnavailable: ``torchcodec`` asked for where it cannot run.
    """
    path = os.fspath(path)
    _check_exists(path)
    if backend == "auto":
        backend = auto_backend()
    if backend == "decord":
        return DecordReader(path, num_threads=threads)
    if backend == "pyav":
        return PyAVReader(path, threads=threads)
    if backend == "torchcodec":
        return TorchCodecReader(path, num_threads=threads)
    raise ValueError(f"unknown video backend {backend!r}; expected one of {BACKENDS} or 'auto'")


class ReaderPool:
    """A small per-process LRU of open readers keyed by (path, backend).

    ``get(path)`` returns the open reader for ``path`` (opening it on a miss and closing the
    least recently used one beyond ``max_open``). Each process opens its own readers: pickling
    drops the open ones (spawned DataLoader workers), and a forked worker forgets the readers it
    inherited on its first ``get`` (they share the parent's file offsets and decoder state:
    reading them from two processes corrupts the frames, e.g. torchcodec's "Invalid data found
    when processing input" after the main process had read a clip). ``opens`` counts the files
    this pool has opened in this process.
    """

    def __init__(self, max_open: int = 4, backend: str = "decord", threads: int = 1) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = int(max_open)
        self.backend = backend
        self.threads = int(threads)
        self.opens = 0
        self._readers: OrderedDict[tuple[str, str], VideoReader] = OrderedDict()
        self._pid = os.getpid()

    def get(self, path: str | os.PathLike, backend: str | None = None) -> VideoReader:
        """The open reader for ``path`` (with ``backend``, default the pool's)."""
        if self._pid != os.getpid():  # a forked child: the parent's readers are not ours
            self._readers = OrderedDict()  # forgotten, not closed: they belong to the parent
            self.opens, self._pid = 0, os.getpid()
        key = (os.fspath(path), backend or self.backend)
        reader = self._readers.get(key)
        if reader is not None:
            self._readers.move_to_end(key)
            return reader
        reader = open_video(key[0], backend=key[1], threads=self.threads)
        self.opens += 1
        self._readers[key] = reader
        while len(self._readers) > self.max_open:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def __contains__(self, path: object) -> bool:
        return any(p == os.fspath(path) for p, _ in self._readers)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._readers)

    def close(self) -> None:
        """Close every open reader."""
        while self._readers:
            _, reader = self._readers.popitem(last=False)
            reader.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        state["opens"] = 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self) -> None:
        if getattr(self, "_pid", None) != os.getpid():
            return  # a forked child's copy: the readers are the parent's to close
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
