"""Write H.264 mp4 videos with PyAV (FFmpeg's libx264), atomically.

Used by the synthetic release (``migalab-synth --video``), by the prepared-clip cache and by
tests. Frames are (H, W, 3) uint8 RGB; H and W must be even (yuv420p). The file is written to a
hidden temp name in the target folder and moved into place only when the encoder has flushed,
so a crash never leaves a half-written ``.mp4`` under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np


class VideoWriter:
    """Incremental mp4 writer: ``with VideoWriter(path, (h, w)) as w: w.write(frames)``.

    Args:
        path: the final ``.mp4`` path (parent folders are created).
        size: (height, width) of every frame; both even.
        fps: frame rate (iMiGUE interviews are 25 fps).
        gop: keyframe interval in frames (250 ≈ a broadcast interview; short GOPs seek fast).
        crf: x264 constant rate factor (18 visually lossless, 23 default, higher = smaller).
        preset: x264 speed preset.
        codec: FFmpeg encoder name.

    ``write`` accepts one (H, W, 3) frame or a (T, H, W, 3) array. Leaving the ``with`` block
    normally flushes and publishes the file; an exception deletes the temp file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        size: tuple[int, int],
        fps: float = 25.0,
        gop: int = 250,
        crf: int = 23,
        preset: str = "veryfast",
        codec: str = "libx264",
    ) -> None:
        h, w = (int(v) for v in size)
        if h <= 0 or w <= 0 or h % 2 or w % 2:
            raise ValueError(f"{path}: frame size must be positive and even (yuv420p), got {h}x{w}")
        if gop < 1:
            raise ValueError(f"{path}: gop must be >= 1, got {gop}")
        self.path = Path(path)
        self.size = (h, w)
        self.fps, self.gop, self.crf, self.preset, self.codec = fps, int(gop), crf, preset, codec
        self.frames_written = 0
        self._tmp: str | None = None
        self._container = None
        self._stream = None

    def __enter__(self) -> VideoWriter:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".tmp.mp4"
        )
        os.close(fd)
        self._container = av.open(self._tmp, mode="w", format="mp4")
        rate = Fraction(self.fps).limit_denominator(1001)
        stream = self._container.add_stream(self.codec, rate=rate)
        stream.height, stream.width = self.size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = self.gop
        # fixed GOP: no scene-cut keyframes, so the keyframe interval is exactly ``gop``
        stream.options = {
            "crf": str(self.crf),
            "preset": self.preset,
            "x264-params": f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0",
        }
        self._stream = stream
        return self

    def write(self, frames: np.ndarray) -> None:
        """Append one (H, W, 3) or many (T, H, W, 3) uint8 RGB frames."""
        import av

        if self._container is None:
            raise RuntimeError("VideoWriter.write outside its `with` block")
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (*self.size, 3) or arr.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frames must be uint8 (T, {self.size[0]}, {self.size[1]}, 3), "
                f"got {arr.dtype} {arr.shape}"
            )
        for frame in arr:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            for packet in self._stream.encode(vf):
                self._container.mux(packet)
        self.frames_written += len(arr)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                for packet in self._stream.encode():  # flush the encoder
                    self._container.mux(packet)
            self._container.close()
            if exc_type is None:
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp is not None and os.path.exists(self._tmp):
                os.unlink(self._tmp)
            self._container = self._stream = None


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float = 25.0,
    gop: int = 250,
    crf: int = 23,
    preset: str = "veryfast",
) -> int:
    """Write ``frames`` ((T, H, W, 3) uint8 array, or an iterable of (H, W, 3) / (t, H, W, 3)
    chunks) to an H.264 mp4 at ``path`` atomically; returns the number of frames written."""
    it = iter(frames) if not isinstance(frames, np.ndarray) else iter([frames])
    first = next(it, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    first = np.asarray(first)
    size = first.shape[-3:-1]
    with VideoWriter(path, size, fps=fps, gop=gop, crf=crf, preset=preset) as w:
        w.write(first)
        for chunk in it:
            w.write(chunk)
    return w.frames_written
