#!/usr/bin/env python
"""Benchmarks of the data pipeline, one subcommand per section.

    python scripts/bench.py prepare --videos 20 --frames 9000
    python scripts/bench.py prepare --videos 3 --frames 3000 --out bench_results/small.json

Sections register themselves in ``SECTIONS`` (name -> :class:`Section`); add heatmap or video
loading benchmarks as new sections with their own arguments. Every section prints a Rich table
and writes its results as JSON (``--out``, default ``bench_results/<section>.json``).

``prepare`` writes N iMiGUE-shaped xlsx videos (with ``migalab.data.synthetic.generate_release``
), then times in this process:
(a) pandas + openpyxl reading every table (the baseline), (b) python-calamine reading every
table, (c) ``prepare_release`` end to end with each ``--workers`` value, (d) loading random clips
from the cache (mean ms per clip, all 137 joints and the imigue22 selection).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Section:
    """A benchmark section: ``add_arguments(parser)`` and ``run(args) -> results dict``."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict[str, Any]]


SECTIONS: dict[str, Section] = {}


def section(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Decorator registering ``run`` as benchmark section ``name``."""

    def register(run: Callable[[argparse.Namespace], dict[str, Any]]):
        SECTIONS[name] = Section(help=help, add_arguments=add_arguments, run=run)
        return run

    return register


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    import pandas
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "torch": torch.__version__,
    }


def _console():
    from rich.console import Console

    return Console()


# --------------------------------------------------------------------------------------------
# section: prepare
# --------------------------------------------------------------------------------------------


def _prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", type=int, default=20, help="train videos to generate")
    p.add_argument("--frames", type=int, default=9000, help="frames per video (at least)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="prepare workers")
    p.add_argument("--clips", type=int, default=1000, help="random clips to load from the cache")
    p.add_argument(
        "--baseline-videos",
        type=int,
        default=None,
        help="read only this many tables with openpyxl (slow; per-video time is extrapolated)",
    )
    p.add_argument("--skip-openpyxl", action="store_true", help="no openpyxl baseline")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep data here (reused when it already has enough videos); default: a temp dir",
    )
    p.add_argument("--seed", type=int, default=0)


def _generate_synthetic(root: Path, videos: int, frames: int, seed: int) -> str:
    """Write ``videos`` synthetic iMiGUE train videos of at least ``frames`` frames (xlsx)."""
    from migalab.data.synthetic import SynthConfig, generate_release

    cfg = SynthConfig(
        seed=seed,
        num_videos={"train": videos, "validate": 0, "test": 0},
        min_video_frames=frames,
        table_format="xlsx",
        workers=os.cpu_count() or 1,
    )
    generate_release(root, cfg, progress=False)
    return f"synthetic iMiGUE (seed {seed}, {videos} videos >= {frames} frames, xlsx)"


def _release_ready(root: Path, videos: int, frames: int) -> bool:
    from migalab.data.formats.miga2025 import find_videos

    vids = [
        v for v in find_videos(root, "train") if v.table is not None and v.table.suffix == ".xlsx"
    ]
    meta = root / ".bench.json"
    if len(vids) < videos or not meta.is_file():
        return False
    return json.loads(meta.read_text()).get("frames", 0) >= frames


def _make_release(root: Path, args: argparse.Namespace, console) -> tuple[str, float]:
    if _release_ready(root, args.videos, args.frames):
        return json.loads((root / ".bench.json").read_text())["generator"] + " (reused)", 0.0
    if root.exists():
        shutil.rmtree(root)
    t0 = time.perf_counter()
    generator = _generate_synthetic(root, args.videos, args.frames, args.seed)
    seconds = time.perf_counter() - t0
    (root / ".bench.json").write_text(json.dumps({"generator": generator, "frames": args.frames}))
    return generator, seconds


def _time_reads(tables: list[Path], engine: str) -> tuple[float, int]:
    from migalab.data.formats.miga2025 import read_openpose_table

    frames = 0
    t0 = time.perf_counter()
    for path in tables:
        frames += len(read_openpose_table(path, engine=engine))
    return time.perf_counter() - t0, frames


def _time_clip_loading(cache_dir: Path, n: int, layout: str | None, seed: int) -> float:
    from migalab.data.cache import SkeletonCache

    cache = SkeletonCache(cache_dir)
    rng = np.random.default_rng(seed)
    order = rng.integers(0, len(cache), n)
    cache.load_clip(0, layout)  # first touch of the index columns
    t0 = time.perf_counter()
    for i in order:
        cache.load_clip(int(i), layout)
    return (time.perf_counter() - t0) / n * 1e3


@section("prepare", "spreadsheet reading, release -> cache conversion, clip loading", _prepare_args)
def bench_prepare(args: argparse.Namespace) -> dict[str, Any]:
    from migalab.data.formats.miga2025 import find_videos
    from migalab.data.prepare import prepare_release

    console = _console()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="migalab-bench-")
        work = Path(tmp)
    else:
        work = args.workdir
        work.mkdir(parents=True, exist_ok=True)
    try:
        root = work / "release"
        with console.status(f"writing {args.videos} xlsx videos x {args.frames} frames"):
            generator, gen_s = _make_release(root, args, console)
        tables = [v.table for v in find_videos(root, "train")][: args.videos]
        n = len(tables)
        rows: list[dict[str, Any]] = []

        def add(name: str, seconds: float, videos: int, **extra: Any) -> None:
            rows.append({"name": name, "seconds": seconds, "videos": videos,
                         "per_video_s": seconds / max(videos, 1), **extra})  # fmt: skip
            console.log(f"{name}: {seconds:.2f} s ({seconds / max(videos, 1):.2f} s/video)")

        if not args.skip_openpyxl:
            k = n if args.baseline_videos is None else min(n, args.baseline_videos)
            s, frames = _time_reads(tables[:k], "openpyxl")
            add("read pandas+openpyxl", s, k, frames=frames)
        s, frames = _time_reads(tables, "calamine")
        add("read python-calamine", s, n, frames=frames)
        clips = 0
        for w in args.workers:
            out = work / f"cache_w{w}"
            t0 = time.perf_counter()
            res = prepare_release(root, out, splits=("train",), workers=w, progress=False)
            add(f"prepare_release workers={w}", time.perf_counter() - t0, n,
                converted=res.num_videos, clips=res.num_clips, skipped=len(res.skipped))  # fmt: skip
            clips = res.num_clips
        cache_dir = work / f"cache_w{args.workers[0]}"
        load = {
            "all137": _time_clip_loading(cache_dir, args.clips, None, args.seed),
            "imigue22": _time_clip_loading(cache_dir, args.clips, "imigue22", args.seed),
        }
        clip_frames = _mean_clip_frames(cache_dir)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    base = next((r for r in rows if r["name"] == "read pandas+openpyxl"), None)
    for r in rows:
        r["speedup_vs_openpyxl"] = base["per_video_s"] / r["per_video_s"] if base else None

    from rich.table import Table

    table = Table(title=f"prepare: {n} xlsx videos, >= {args.frames} frames each")
    for col in ("step", "seconds", "s / video", "x vs pandas+openpyxl"):
        table.add_column(col, justify="left" if col == "step" else "right")
    for r in rows:
        ratio = "-" if r["speedup_vs_openpyxl"] is None else f"{r['speedup_vs_openpyxl']:.1f}x"
        table.add_row(r["name"], f"{r['seconds']:.2f}", f"{r['per_video_s']:.3f}", ratio)
    console.print(table)
    clip_table = Table(title=f"cache clip loading ({args.clips} clips)")
    clip_table.add_column("joints")
    clip_table.add_column("ms / clip", justify="right")
    for k, v in load.items():
        clip_table.add_row(k, f"{v:.3f}")
    console.print(clip_table)
    console.print(f"cache: {clips} clips, mean {clip_frames:.0f} frames per clip")
    return {
        "config": {
            "videos": n,
            "frames": args.frames,
            "workers": args.workers,
            "clips_loaded": args.clips,
            "generator": generator,
            "generate_seconds": gen_s,
        },
        "results": rows,
        "clip_load_ms": load,
        "cache_clips": clips,
        "mean_clip_frames": clip_frames,
    }


def _mean_clip_frames(cache_dir: Path) -> float:
    from migalab.data.cache import SkeletonCache

    idx = SkeletonCache(cache_dir).index
    return float((idx["end"] - idx["start"] + 1).mean()) if len(idx) else 0.0


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="section", required=True, metavar="SECTION")
    for name, sec in SECTIONS.items():
        p = sub.add_parser(name, help=sec.help, description=sec.help)
        p.add_argument(
            "--out", type=Path, default=Path("bench_results") / f"{name}.json", help="JSON results"
        )
        sec.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sec = SECTIONS[args.section]
    started = datetime.now(UTC).isoformat(timespec="seconds")
    results = sec.run(args)
    payload = {
        "section": args.section,
        "started": started,
        "argv": sys.argv[1:] if argv is None else list(argv),
        "machine": machine_info(),
        **results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    _console().print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
