"""``migalab-synth``: write a synthetic iMiGUE release (MiGA 2025 layout) from the command line.

Every :class:`SynthConfig` field has an option; an existing release with the same config is
kept unless ``--force``.

Example::

    migalab-synth data/synth --format csv --videos-train 40 --videos-val 10 --videos-test 10 \\
        --workers 2

``--video`` also writes ``<vid>.mp4`` next to every table (320x180 by default,
``--video-scale 1`` for the full frame size).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

from migalab.data.classes import CLASS_NAMES
from migalab.synthetic.config import SynthConfig
from migalab.synthetic.release import generate_release, read_meta, release_is_current

#: SynthConfig field -> CLI option (fields not listed use ``--field-name``).
_OPTION = {
    "table_format": "--format",
    "min_video_frames": "--min-frames",
}


def _classes(text: str) -> tuple[int, ...]:
    """``"0,5,31"`` or ``"all"`` (one clip of every class)."""
    if text.strip().lower() == "all":
        return tuple(range(len(CLASS_NAMES)))
    return tuple(int(v) for v in text.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    d = SynthConfig()
    p = argparse.ArgumentParser(
        prog="migalab-synth",
        description="Write a synthetic iMiGUE in the MiGA 2025 release layout "
        "(<root>/{train,validate,test}/<vid>/<vid>_openpose.xlsx|csv, <vid>_label.csv, "
        "emotion_labels.csv, synth_meta.json).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("root", help="output folder")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--videos-train", type=int, default=d.num_videos["train"])
    p.add_argument("--videos-val", type=int, default=d.num_videos["validate"])
    p.add_argument("--videos-test", type=int, default=d.num_videos["test"])
    p.add_argument(
        "--clips-per-video", type=int, nargs=2, metavar=("MIN", "MAX"), default=d.clips_per_video
    )
    p.add_argument(
        "--clip-frames", type=int, nargs=2, metavar=("MIN", "MAX"), default=d.clip_frames
    )
    p.add_argument("--gap-frames", type=int, nargs=2, metavar=("MIN", "MAX"), default=d.gap_frames)
    p.add_argument(
        "--min-frames",
        type=int,
        default=d.min_video_frames,
        help="pad every video with idle frames to at least this many (9000 = benchmark)",
    )
    p.add_argument("--format", choices=("xlsx", "csv", "light"), default=d.table_format)
    p.add_argument("--frame-size", type=int, nargs=2, metavar=("H", "W"), default=d.frame_size)
    p.add_argument(
        "--tail-mix",
        type=float,
        default=d.tail_mix,
        help="class prior = (1-t) * iMiGUE frequencies + t * uniform",
    )
    p.add_argument(
        "--clip-classes",
        type=_classes,
        default=None,
        help="fixed clip classes per video, e.g. '0,5,31' or 'all'",
    )
    p.add_argument("--emotion-effect", type=float, default=d.emotion_effect)
    p.add_argument("--amplitude", type=float, default=d.amplitude, help="gesture amplitude scale")
    p.add_argument("--noise", type=float, default=d.noise, help="keypoint jitter scale")
    p.add_argument("--dropout", type=float, default=d.dropout, help="random dropout rate scale")
    p.add_argument("--idle", type=float, default=d.idle, help="idle motion scale")
    p.add_argument("--videos-per-subject", type=float, default=d.videos_per_subject)
    p.add_argument(
        "--hand-miss",
        type=float,
        nargs=2,
        metavar=("VIDEOS", "FRAMES"),
        default=d.hand_miss,
        help="hand-detector failures: share of videos without hand keypoints, "
        "share of frames without them in the others",
    )
    p.add_argument(
        "--video",
        action="store_true",
        help="also render each video as <vid>.mp4 (RGB of the same motion)",
    )
    p.add_argument(
        "--video-scale",
        type=float,
        default=d.video_scale,
        help="mp4 size = frame size x this (even); 0.25 -> 320x180, 1.0 -> full",
    )
    p.add_argument("--video-gop", type=int, default=d.video_gop, help="mp4 keyframe interval")
    p.add_argument("--video-crf", type=int, default=d.video_crf, help="x264 CRF of the mp4")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--force", action="store_true", help="regenerate even if current")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The SynthConfig an argparse namespace describes."""
    values = {
        "num_videos": {
            "train": args.videos_train,
            "validate": args.videos_val,
            "test": args.videos_test,
        },
    }
    for f in dataclasses.fields(SynthConfig):
        if f.name == "num_videos":
            continue
        attr = _OPTION.get(f.name, "--" + f.name.replace("_", "-"))[2:].replace("-", "_")
        values[f.name] = getattr(args, attr)
    return SynthConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``migalab-synth``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"migalab-synth: error: {exc}", file=sys.stderr)
        return 2
    if not args.force and release_is_current(args.root, cfg):
        print(f"{args.root}: release is current (config {cfg.config_hash()}); --force to redo")
        return 0
    t0 = time.perf_counter()
    generate_release(args.root, cfg, progress=not args.no_progress)
    meta = read_meta(args.root) or {}
    c = meta.get("counts", {})
    print(
        f"wrote {args.root} in {time.perf_counter() - t0:.1f} s: videos {c.get('videos')}, "
        f"clips {c.get('clips')}, frames {c.get('frames')} (config {cfg.config_hash()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
