"""Pose extraction for new videos (console script ``migalab-pose``): MediaPipe Holistic ->
the suite's 137-point OpenPose layout, written as a MiGA per-video table that every reader,
layout and ``migalab-predict skeleton=`` accepts.

    make pose-env                               # once: the pose environment (.pose-env/)
    migalab-pose interview.mp4 -o poses/        # -> poses/interview_openpose.csv (+ .json)

MediaPipe's offline-capable wheels (0.10.14-0.10.21 ship the Holistic models) pin
protobuf<5, while wandb needs >=5: pose extraction runs in its own small environment, called
as a subprocess (:mod:`migalab.pose.worker`), found at ``--pose-python``, else
``$MIGALAB_POSE_PYTHON``, else ``.pose-env/bin/python`` of the migalab checkout this module is
installed from (an editable install) -- never in the current directory, where a downloaded
folder could carry an executable of its own. The mapping and what it approximates:
:mod:`migalab.pose.mapping`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from migalab.errors import UserError
from migalab.utils.paths import checkout_root

__all__ = [
    "PoseEnvMissing",
    "checkout_pose_python",
    "extract",
    "extract_to_dir",
    "find_pose_python",
    "main",
]

WORKER = Path(__file__).with_name("worker.py")


def checkout_pose_python() -> Path | None:
    """``.pose-env/bin/python`` of the migalab checkout this module is installed from (an
    editable install: a folder above it holding ``pyproject.toml`` and ``conf/train.yaml``,
    where `make pose-env` puts it); None for an installed wheel. Independent of the current
    directory and of ``$MIGALAB_ROOT``."""
    root = checkout_root()
    return root / ".pose-env" / "bin" / "python" if root is not None else None


class PoseEnvMissing(UserError, RuntimeError):
    """No Python with MediaPipe was found for the pose worker."""


def find_pose_python(explicit: str | os.PathLike | None = None) -> Path:
    """The pose environment's python: ``explicit`` (``--pose-python``), else
    ``$MIGALAB_POSE_PYTHON``, else the checkout's own ``.pose-env/bin/python``
    (:func:`checkout_pose_python`) -- never one found relative to the current directory; it
    must import mediapipe. Raises :class:`PoseEnvMissing` with what to do."""
    # the first one given decides: an explicit python, else the variable, else the checkout's
    given = explicit or os.environ.get("MIGALAB_POSE_PYTHON")
    candidates = [given] if given else [checkout_pose_python()]
    tried = []
    for c in candidates:
        if not c:
            continue
        path = Path(c)
        tried.append(str(path))
        if path.is_file():
            probe = subprocess.run(
                [str(path), "-c", "import mediapipe, cv2"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0:
                return path
            tried[-1] += f" (cannot import mediapipe: {probe.stderr.strip().splitlines()[-1:]})"
    raise PoseEnvMissing(
        "pose extraction needs its own environment with MediaPipe (mediapipe pins protobuf<5, "
        "wandb needs >=5). Create it with `make pose-env` in the migalab checkout, or point "
        "MIGALAB_POSE_PYTHON (or --pose-python) at a python with mediapipe 0.10.14-0.10.21. "
        f"Tried: {', '.join(tried) or 'nothing'}"
    )


def extract(
    video: str | os.PathLike,
    out_npy: str | os.PathLike,
    pose_python: str | os.PathLike | None = None,
    model_complexity: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the worker on ``video``: ``out_npy`` gets (T, 137, 3) keypoints; returns its meta
    (frames, fps, width, height, frames_with_person, seconds)."""
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"no video {video}")
    python = find_pose_python(pose_python)
    out_npy = Path(out_npy)
    out_npy.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(python),
        str(WORKER),
        str(video),
        str(out_npy),
        "--model-complexity",
        str(model_complexity),
    ]
    from tqdm import tqdm

    bar = tqdm(total=None, unit="frame", desc=f"pose {video.name}", disable=not progress)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "progress":
            done, total = int(parts[1]), int(parts[2])
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)
    err = proc.stderr.read() if proc.stderr else ""
    bar.close()
    if proc.wait() != 0:
        tail = "\n".join(err.strip().splitlines()[-8:])
        raise RuntimeError(f"pose extraction of {video} failed ({proc.returncode}):\n{tail}")
    return json.loads(out_npy.with_suffix(".json").read_text())


def extract_to_dir(
    video: str | os.PathLike,
    out_dir: str | os.PathLike,
    pose_python: str | os.PathLike | None = None,
    model_complexity: int = 1,
) -> Path:
    """Extract ``video``'s pose into ``out_dir/<stem>_openpose.csv`` (the MiGA per-video
    table, 411 columns) and ``<stem>_openpose.json`` (the worker's meta); returns the table.
    A video where no person is found gives a table of zero keypoints (every frame missing) and
    a message saying so."""
    from migalab.data.formats.miga2025 import write_openpose_table

    video, out_dir = Path(video), Path(out_dir)
    raw = out_dir / f"{video.stem}_pose.npy"
    start = time.perf_counter()
    meta = extract(video, raw, pose_python, model_complexity)
    table = np.load(raw)
    if len(table) == 0:
        raise ValueError(f"{video}: no frame could be decoded")
    out = write_openpose_table(
        out_dir / f"{video.stem}_openpose.csv", table.reshape(len(table), -1)
    )
    meta["frames_per_s"] = round(meta["frames"] / max(meta["seconds"], 1e-9), 2)
    meta["total_seconds"] = round(time.perf_counter() - start, 3)
    (out_dir / f"{video.stem}_openpose.json").write_text(json.dumps(meta, indent=2))
    raw.unlink(missing_ok=True)
    raw.with_suffix(".json").unlink(missing_ok=True)
    if meta["frames_with_person"] == 0:
        print(
            f"{video}: no person found in any of its {meta['frames']} frames; wrote a table "
            f"of missing keypoints: {out}"
        )
    else:
        print(
            f"{video}: {meta['frames']} frames ({meta['frames_with_person']} with a person) "
            f"at {meta['frames_per_s']:.1f} frames/s -> {out}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Console entry point."""
    parser = argparse.ArgumentParser(
        prog="migalab-pose",
        description="Extract 137-point OpenPose-layout keypoints from videos with MediaPipe "
        "Holistic (runs in the pose environment: make pose-env).",
    )
    parser.add_argument("videos", nargs="+", type=Path, help="video files (mp4, avi, ...)")
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        default=Path("."),
        help="folder for <video>_openpose.csv (default: .)",
    )
    parser.add_argument("--pose-python", help="python of the pose environment")
    parser.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args(argv)
    try:
        for video in args.videos:
            extract_to_dir(video, args.out, args.pose_python, args.model_complexity)
    except (PoseEnvMissing, FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"migalab-pose: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
