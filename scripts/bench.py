#!/usr/bin/env python
"""Benchmarks of the data pipeline, one subcommand per section.

    python scripts/bench.py prepare --videos 20 --frames 9000
    python scripts/bench.py prepare --videos 3 --frames 3000 --out bench_results/small.json

Sections register themselves in ``SECTIONS`` (name -> :class:`Section`); add heatmap or video
loading benchmarks as new sections with their own arguments. Every section prints a Rich table
and writes its results as JSON (``--out``, default ``bench_results/<section>.json``).

``video`` renders a long synthetic interview video (1280x720, GOP 250 by default) and times
16-frame clip loading (decode + person crop + resize to 224 + normalise) with decord and PyAV,
then from the prepared person-cropped short-GOP clips, and the share of a training step spent
waiting for data (prepared vs raw source).

``faces`` renders a synthetic interview video (``--scale 0.5`` = 640x360 by default) and times, in
this process, the face tracks of its clips from their keypoints (frames/s) and preparing the
clips' 112 px face crops vs their person crops vs decoding the same frames only.

``swinface`` times SwinFace face embeddings on CPU (frames/s per preset) and the embedding
cache: a miss (compute + write) and a hit (read) against computing. Measured on the shared 2-core
machine (load ~6, ``--torch-threads 1``: two threads were ~15x slower under that load), 32 crops:
Swin-T ("t", 30.5 M) 4.5 frames/s, "xs" (1.1 M) 127 frames/s; cache hits 5.7-7 k frames/s
(~1250x the Swin-T compute), hashing the Swin-T weights for the fingerprint 0.17 s.

``prepare`` writes N iMiGUE-shaped xlsx videos (with ``migalab.synthetic.generate_release``
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
    from migalab.synthetic import SynthConfig, generate_release

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
# section: heatmaps
# --------------------------------------------------------------------------------------------

#: COCO-17 template (x, y as fractions of the person box) and pyskl's 17 COCO limbs.
_COCO_TEMPLATE = (
    (0.50, 0.18), (0.46, 0.14), (0.54, 0.14), (0.41, 0.16), (0.59, 0.16), (0.32, 0.33),
    (0.68, 0.33), (0.25, 0.52), (0.75, 0.52), (0.30, 0.70), (0.70, 0.70), (0.38, 0.72),
    (0.62, 0.72), (0.37, 0.86), (0.63, 0.86), (0.36, 0.95), (0.64, 0.95),
)  # fmt: skip
_COCO_LIMBS = ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8), (8, 10),
               (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12))  # fmt: skip
#: (name, joints V, canvas side, stream) of the timed configurations (48 frames each).
_HEATMAP_CONFIGS = (
    ("17 joints 56²", 17, 56, "joint"),
    ("41 joints 64²", 41, 64, "joint"),
    ("17 limbs 56²", 17, 56, "limb"),
)


def _heatmaps_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=int, default=64, help="distinct random samples per config")
    p.add_argument(
        "--ref-samples", type=int, default=16, help="samples timed with the (slow) reference loop"
    )
    p.add_argument("--batch", type=int, default=32, help="samples per batched torch call")
    p.add_argument("--repeat", type=int, default=5, help="best of N timings")
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--persons", type=int, default=1, help="persons M per sample")
    p.add_argument("--sigma", type=float, default=0.6)
    p.add_argument("--no-cuda", action="store_true", help="skip torch on CUDA even if available")
    p.add_argument(
        "--torch-threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    p.add_argument("--seed", type=int, default=0)


def _pose_samples(
    rng: np.random.Generator, n: int, m: int, t: int, v: int, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Upper-body-like keypoints filling a person-centred canvas: (n, M, T, V, 2), (n, M, T, V).

    COCO-17 template (joints beyond 17 are hand points around the wrists), random scale and
    centre per person, a slow random walk over frames plus jitter, all inside the canvas; scores
    U(0.3, 1), ~5 % missing (score 0 at (0, 0)).
    """
    tmpl = np.asarray(_COCO_TEMPLATE)
    if v > len(tmpl):
        extra = v - len(tmpl)
        wrist = np.where((np.arange(extra) % 2 == 0)[:, None], tmpl[9], tmpl[10])
        tmpl = np.concatenate([tmpl, wrist + rng.normal(0.0, 0.03, (extra, 2))])
    tmpl = tmpl[:v]
    scale = rng.uniform(0.8, 0.95, (n, m, 1, 1, 1))
    centre = rng.uniform(0.45, 0.55, (n, m, 1, 1, 2))
    walk = np.cumsum(rng.normal(0.0, 0.004, (n, m, t, v, 2)), axis=2)
    jitter = rng.normal(0.0, 0.005, (n, m, t, v, 2))
    kp = (centre + (tmpl - 0.5) * scale + walk + jitter) * (side - 1)
    kp = np.clip(kp, 0, side - 1).astype(np.float32)
    sc = rng.uniform(0.3, 1.0, (n, m, t, v)).astype(np.float32)
    missing = rng.random((n, m, t, v)) < 0.05
    sc[missing], kp[missing] = 0.0, 0.0
    return kp, sc


def _best_of(fn: Callable[[], Any], repeat: int, sync: Callable[[], None] | None = None) -> float:
    """Best wall time (s) of ``repeat`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _bench_heatmap_config(
    name: str, v: int, side: int, stream: str, args: argparse.Namespace, rng, console
) -> list[dict[str, Any]]:
    """Time one configuration with every method on the same inputs; one row per method."""
    import torch

    from migalab.data.skeleton import heatmaps as hm

    size, sigma = (side, side), args.sigma
    kp, sc = _pose_samples(rng, args.samples, args.persons, args.frames, v, side)
    extra = (_COCO_LIMBS,) if stream == "limb" else ()
    ref_fn = hm.limb_heatmaps_reference if extra else hm.joint_heatmaps_reference
    np_fn = hm.limb_heatmaps if extra else hm.joint_heatmaps
    torch_fn = hm.limb_heatmaps_torch if extra else hm.joint_heatmaps_torch
    n_ref = max(1, min(args.ref_samples, args.samples))
    idx = np.arange(args.batch) % args.samples  # the torch batch (cycles the samples)
    kp_b, sc_b = torch.from_numpy(kp[idx]), torch.from_numpy(sc[idx])
    check = ref_fn(kp[0], sc[0], *extra, size, sigma)
    rows: list[dict[str, Any]] = []

    def add(method: str, seconds: float, samples: int, max_abs_diff: float) -> None:
        per = seconds / samples
        rows.append({"config": name, "method": method, "ms_per_sample": per * 1e3,
                     "samples_per_s": 1.0 / per, "max_abs_diff_vs_reference": max_abs_diff})  # fmt: skip
        console.log(f"{name} | {method}: {per * 1e3:.3f} ms/sample")

    def run_ref() -> None:
        for i in range(n_ref):
            ref_fn(kp[i], sc[i], *extra, size, sigma)

    def run_numpy() -> None:
        for i in range(args.samples):
            np_fn(kp[i], sc[i], *extra, size, sigma)

    with console.status(f"{name}: reference loop"):
        add("pyskl loop", _best_of(run_ref, max(1, min(args.repeat, 3))), n_ref, 0.0)
    diff = float(np.abs(np_fn(kp[0], sc[0], *extra, size, sigma) - check).max())
    add("numpy", _best_of(run_numpy, args.repeat), args.samples, diff)
    out = torch_fn(kp_b[:1], sc_b[:1], *extra, size, sigma)[0].numpy()
    diff = float(np.abs(out - check).max())
    with console.status(f"{name}: torch cpu"):
        s = _best_of(lambda: torch_fn(kp_b, sc_b, *extra, size, sigma), args.repeat)
    add(f"torch cpu b{args.batch} t{torch.get_num_threads()}", s, args.batch, diff)
    if torch.cuda.is_available() and not args.no_cuda:
        kp_c, sc_c = kp_b.cuda(), sc_b.cuda()
        out = torch_fn(kp_c[:1], sc_c[:1], *extra, size, sigma)[0].cpu().numpy()
        diff = float(np.abs(out - check).max())
        s = _best_of(
            lambda: torch_fn(kp_c, sc_c, *extra, size, sigma),
            args.repeat,
            sync=torch.cuda.synchronize,
        )
        add(f"torch cuda b{args.batch}", s, args.batch, diff)
        del kp_c, sc_c
        torch.cuda.empty_cache()
    return rows


@section(
    "heatmaps",
    "PoseC3D heatmap volumes: pyskl loop vs vectorised NumPy vs batched torch (CPU / CUDA)",
    _heatmaps_args,
)
def bench_heatmaps(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    console = _console()
    rng = np.random.default_rng(args.seed)
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    rows: list[dict[str, Any]] = []
    for name, v, side, stream in _HEATMAP_CONFIGS:
        rows += _bench_heatmap_config(name, v, side, stream, args, rng, console)

    for r in rows:
        base = next(b for b in rows if b["config"] == r["config"] and b["method"] == "pyskl loop")
        r["speedup_vs_reference"] = base["ms_per_sample"] / r["ms_per_sample"]

    from rich.table import Table

    table = Table(
        title=f"heatmaps: {args.frames} frames, M={args.persons}, sigma {args.sigma}, "
        f"best of {args.repeat}"
    )
    for col in ("config", "method", "ms/sample", "samples/s", "x vs pyskl", "max|diff|"):
        table.add_column(col, justify="left" if col in ("config", "method") else "right")
    for r in rows:
        table.add_row(r["config"], r["method"], f"{r['ms_per_sample']:.3f}",
                      f"{r['samples_per_s']:.0f}", f"{r['speedup_vs_reference']:.1f}x",
                      f"{r['max_abs_diff_vs_reference']:.1e}")  # fmt: skip
    console.width = max(console.width, 100)  # keep the rows on one line when piped
    console.print(table)
    return {
        "config": {
            "samples": args.samples,
            "ref_samples": args.ref_samples,
            "batch": args.batch,
            "repeat": args.repeat,
            "frames": args.frames,
            "persons": args.persons,
            "sigma": args.sigma,
            "cuda": torch.cuda.get_device_name() if use_cuda else None,
            "torch_threads": torch.get_num_threads(),
            "configs": [list(c) for c in _HEATMAP_CONFIGS],
            "limbs": [list(p) for p in _COCO_LIMBS],
        },
        "results": rows,
    }


# --------------------------------------------------------------------------------------------
# section: video
# --------------------------------------------------------------------------------------------


def _video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=3000, help="frames of the long video (25 fps)")
    p.add_argument("--scale", type=float, default=1.0, help="video size: 1.0 = 1280x720")
    p.add_argument("--gop", type=int, default=250, help="keyframe interval of the long video")
    p.add_argument("--clips", type=int, default=30, help="clips timed per raw backend")
    p.add_argument("--num-frames", type=int, default=16, help="RGB frames per clip")
    p.add_argument("--size", type=int, default=224, help="encoder input side")
    p.add_argument("--prepared-size", type=int, default=256)
    p.add_argument("--prepared-gop", type=int, default=16)
    p.add_argument("--steps", type=int, default=12, help="training steps timed per source")
    p.add_argument(
        "--experiment", default="system_b_mg_synth", help="experiment of the data-wait timing"
    )
    p.add_argument("--skip-steps", action="store_true", help="no data-wait timing")
    p.add_argument("--workdir", type=Path, default=None, help="keep the data here (reused)")
    p.add_argument("--seed", type=int, default=0)


def _video_release(root: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """A one-video synthetic release with a long ``--scale`` mp4 and its skeleton cache."""
    from migalab.data.prepare import is_cache_current, prepare_release
    from migalab.synthetic import SynthConfig, generate_release, release_is_current

    cfg = SynthConfig(
        seed=args.seed, num_videos={"train": 1, "validate": 0, "test": 0},
        clips_per_video=(40, 45), min_video_frames=args.frames, table_format="csv",
        video=True, video_scale=args.scale, video_gop=args.gop,
    )  # fmt: skip
    release, cache = root / "release", root / "cache"
    if not release_is_current(release, cfg):
        generate_release(release, cfg, progress=True)
    if not is_cache_current(release, cache):
        prepare_release(release, cache, splits=("train",), progress=False)
    return release, cache


def _time_clips(source: Any, records: list, offsets: list, size: int) -> dict[str, float]:
    """Read + crop/resize/normalise every clip; seconds in decoding and in the transform."""
    from migalab.data.video.transforms import VideoClipTransform

    tf = VideoClipTransform(size=size, train=False)
    source.read(records[0], offsets[0])  # open the first file / warm caches
    decode = transform = 0.0
    for rec, off in zip(records, offsets, strict=True):
        t0 = time.perf_counter()
        frames, box = source.read(rec, off)
        t1 = time.perf_counter()
        x = tf(frames, box=box)
        transform += time.perf_counter() - t1
        decode += t1 - t0
        assert x.shape == (3, len(off), size, size)
    n = len(records)
    return {"clips": n, "clips_per_s": n / (decode + transform),
            "decode_ms_per_clip": decode / n * 1e3, "transform_ms_per_clip": transform / n * 1e3}  # fmt: skip


def _data_wait(experiment: str, source: str, steps: int, out: Path) -> dict[str, Any]:
    """Time ``steps`` training steps of ``experiment`` by hand: seconds waiting for the next
    batch vs forward + backward + optimiser step (after 2 warm-up steps)."""
    import hydra
    import torch

    from migalab.utils.hydra import compose_config

    cfg = compose_config("train", [f"experiment={experiment}", f"data.video.source={source}"],
                         output_dir=out)  # fmt: skip
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    model = hydra.utils.instantiate(cfg.model)
    model.loss_fn.set_class_counts(dm.class_counts)
    opt = model.optimizer_factory(params=[p for p in model.parameters() if p.requires_grad])
    model.train()
    loader = dm.train_dataloader()
    it = iter(loader)
    wait = compute = 0.0
    for step in range(steps + 2):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        batch = dm.on_after_batch_transfer(batch, 0)  # device-side steps (RGB normalisation)
        pooled, aux = model.encode(batch["x"])
        loss = model.loss_fn(model.head(pooled), batch["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if step >= 2:
            wait, compute = wait + (t1 - t0), compute + (t2 - t1)
    return {"experiment": experiment, "source": source, "steps": steps,
            "batch_size": dm.batch_size, "num_workers": dm.num_workers,
            "wait_s_per_step": wait / steps, "compute_s_per_step": compute / steps,
            "data_wait_share": wait / (wait + compute), "torch_threads": torch.get_num_threads()}  # fmt: skip


@section("video", "RGB clip loading: torchcodec vs decord vs PyAV on long videos vs prepared clips",
         _video_args)  # fmt: skip
def bench_video(args: argparse.Namespace) -> dict[str, Any]:
    from migalab.data.cache import SkeletonCache
    from migalab.data.representations.multimodal import VideoSource, build_clip_jobs
    from migalab.data.skeleton.transforms import uniform_frame_indices
    from migalab.data.video.prepared_clips import prepare_clips
    from migalab.data.video.readers import open_video

    console = _console()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="migalab-bench-video-")
        root = Path(tmp.name)
    else:
        root = args.workdir
    t0 = time.perf_counter()
    release, cache_dir = _video_release(root, args)
    gen_s = time.perf_counter() - t0
    cache = SkeletonCache(cache_dir)
    rng = np.random.default_rng(args.seed)
    rows = rng.permutation(len(cache))
    records = [cache.load_clip(int(i), layout="imigue22") for i in rows]
    offsets = [uniform_frame_indices(r.num_frames, args.num_frames) for r in records]
    with open_video(records[0].video_path, backend="pyav") as reader:
        video_info = {"frames": reader.num_frames, "height": reader.height,
                      "width": reader.width, "gop": args.gop}  # fmt: skip
    results: list[dict[str, Any]] = []
    n_raw = min(args.clips, len(records))
    from migalab.data.video.readers import torchcodec_problem

    backends = ["decord", "pyav"] + (["torchcodec"] if torchcodec_problem() is None else [])
    if "torchcodec" not in backends:
        console.print(f"torchcodec left out: {torchcodec_problem()}")
    for backend in backends:
        src = VideoSource("raw", backend=backend, layout="imigue22")
        r = _time_clips(src, records[:n_raw], offsets[:n_raw], args.size)
        results.append({"source": "long video", "backend": backend, **r})
        console.print(f"raw {backend}: {r['clips_per_s']:.2f} clips/s")
    jobs, problems = build_clip_jobs(cache, "imigue22", ["train"])
    out = root / f"clips_{args.prepared_size}"
    t0 = time.perf_counter()
    prep = prepare_clips(jobs, out, size=args.prepared_size, gop=args.prepared_gop, progress=False)
    prep_s = time.perf_counter() - t0
    for backend in backends:
        src = VideoSource("prepared", backend=backend, prepared_dir=out, layout="imigue22")
        r = _time_clips(src, records, offsets, args.size)
        results.append({"source": "prepared clips", "backend": backend, **r})
        console.print(f"prepared {backend}: {r['clips_per_s']:.2f} clips/s")
    base = results[0]["clips_per_s"]
    for r in results:
        r["x_vs_decord_long_video"] = r["clips_per_s"] / base

    steps: list[dict[str, Any]] = []
    if not args.skip_steps:
        for source in ("prepared", "raw"):
            steps.append(_data_wait(args.experiment, source, args.steps, root / "runs"))
            console.print(f"data wait ({source}): {steps[-1]['data_wait_share']:.0%} of a step")

    from rich.table import Table

    table = Table(title=f"RGB clips: {args.num_frames} frames -> {args.size}^2 from a "
                        f"{video_info['width']}x{video_info['height']} GOP-{args.gop} video")  # fmt: skip
    for col in ("source", "backend", "clips", "clips/s", "decode ms", "transform ms", "x"):
        table.add_column(col, justify="left" if col in ("source", "backend") else "right")
    for r in results:
        table.add_row(r["source"], r["backend"], str(r["clips"]), f"{r['clips_per_s']:.2f}",
                      f"{r['decode_ms_per_clip']:.1f}", f"{r['transform_ms_per_clip']:.1f}",
                      f"{r['x_vs_decord_long_video']:.1f}x")  # fmt: skip
    console.width = max(console.width, 100)
    console.print(table)
    if steps:
        st = Table(title=f"training steps of {args.experiment} (hand-timed, after 2 warm-up)")
        for col in ("video source", "workers", "batch", "wait s/step", "compute s/step", "wait"):
            st.add_column(col, justify="left" if col == "video source" else "right")
        for r in steps:
            st.add_row(r["source"], str(r["num_workers"]), str(r["batch_size"]),
                       f"{r['wait_s_per_step']:.3f}", f"{r['compute_s_per_step']:.3f}",
                       f"{r['data_wait_share']:.0%}")  # fmt: skip
        console.print(st)
    payload = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "video": video_info,
        "generate_s": gen_s,
        "prepare_clips": {
            "clips": prep.written,
            "seconds": prep_s,
            "ms_per_clip": prep_s / max(prep.written, 1) * 1e3,
            "problems": problems + list(prep.problems),
        },  # fmt: skip
        "results": results,
        "training_steps": steps,
    }
    if tmp is not None:
        tmp.cleanup()
    return payload


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _loader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", default="mvit_rgb",
                   help="a full-size RGB experiment (16 x 224^2 clips)")  # fmt: skip
    p.add_argument("--samples", type=int, default=48, help="samples per timing")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the 2nd timing")
    p.add_argument("--footage", type=Path, default=None,
                   help="a real video whose centre crops stand in for the prepared clips")  # fmt: skip


@section("loader", "RGB loader at full size: clips normalised in the worker vs on the device",
         _loader_args)  # fmt: skip
def bench_loader(args: argparse.Namespace) -> dict[str, Any]:
    """``data.video.normalize=loader`` (float32 clips normalised in the worker, the old way) vs
    ``device`` (uint8 clips, normalised as a batch on the training device), at the recipe's
    full size, on prepared-clip stand-ins decoded by the configured reader
    (``gpu_check.build_setup``): one worker's training samples per second, bytes per clip
    through the workers' shared memory (and pinning, and the copy to the GPU), a DataLoader's
    clips per second with ``--workers`` workers, and the device step's cost on this CPU. Both
    settings in one process, interleaved, best of ``--rounds``."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_check as gc
    from migalab.data.video.transforms import normalize_clips

    where_all = ("loader", "device")
    rows: dict[str, dict[str, Any]] = {w: {"normalize": w} for w in where_all}
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        setups = {
            w: gc.build_setup(
                args.experiment,
                Path(tmp) / w,
                torch.device("cpu"),
                tiny=False,
                batch_size=8,
                decode=True,
                footage=args.footage,
                overrides=[f"data.video.normalize={w}"],
            )  # fmt: skip
            for w in where_all
        }
        for w, setup in setups.items():
            x = setup.datamodule.datasets["train"][0]["x"]["rgb"]
            rows[w].update(shape=list(x.shape), dtype=str(x.dtype).removeprefix("torch."),
                           mb_per_clip=x.nbytes / 2**20)  # fmt: skip
        collates = {w: s.datamodule.train_dataloader().collate_fn for w, s in setups.items()}
        for _ in range(args.rounds):
            for w, setup in setups.items():
                ds = setup.datamodule.datasets["train"]
                t0 = time.perf_counter()
                for i in range(args.samples):
                    ds[i % len(ds)]
                rate = args.samples / (time.perf_counter() - t0)
                rows[w]["worker_clips_per_s"] = max(rows[w].get("worker_clips_per_s", 0), rate)
                loader = torch.utils.data.DataLoader(
                    ds, batch_size=8, num_workers=args.workers, shuffle=False,
                    sampler=[i % len(ds) for i in range(args.samples)],
                    collate_fn=collates[w],
                )  # fmt: skip
                t0 = time.perf_counter()
                n = 0
                for batch in loader:
                    batch = setup.datamodule.on_after_batch_transfer(batch, 0)
                    n += int(batch["label"].shape[0])
                rate = n / (time.perf_counter() - t0)
                key = "dataloader_clips_per_s"
                rows[w][key] = max(rows[w].get(key, 0), rate)
        batch = torch.randint(0, 256, (8, *rows["device"]["shape"]), dtype=torch.uint8)
        rows["device"]["device_step_ms_per_clip_cpu"] = (
            _best_of(lambda: normalize_clips(batch), args.rounds) / 8 * 1e3
        )
    ratios = {
        "worker_clips_per_s": rows["device"]["worker_clips_per_s"]
        / rows["loader"]["worker_clips_per_s"],
        "dataloader_clips_per_s": rows["device"]["dataloader_clips_per_s"]
        / rows["loader"]["dataloader_clips_per_s"],
        "bytes_per_clip": rows["loader"]["mb_per_clip"] / rows["device"]["mb_per_clip"],
    }
    console = _console()
    from rich.table import Table

    table = Table(title=f"RGB loader, {args.experiment} at full size (ratios: device / loader)")
    for col in ("normalize", "clip", "MB / clip", "clips/s one worker",
                f"clips/s DataLoader ({args.workers} workers)"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("normalize", "clip") else "right")
    for r in rows.values():
        table.add_row(r["normalize"], f"{tuple(r['shape'])} {r['dtype']}", f"{r['mb_per_clip']:.2f}",
                      f"{r['worker_clips_per_s']:.1f}", f"{r['dataloader_clips_per_s']:.1f}")  # fmt: skip
    table.add_row("ratio", "", f"1/{ratios['bytes_per_clip']:.1f}",
                  f"{ratios['worker_clips_per_s']:.2f}x", f"{ratios['dataloader_clips_per_s']:.2f}x")  # fmt: skip
    console.print(table)
    console.print(f"device step on this CPU: {rows['device']['device_step_ms_per_clip_cpu']:.2f} "
                  "ms per clip (on a GPU: a fused elementwise op on the batch)")  # fmt: skip
    return {"experiment": args.experiment, "footage": str(args.footage) if args.footage else None,
            "rows": list(rows.values()), "ratios": ratios}  # fmt: skip


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


# --------------------------------------------------------------------------------------------
# section: light35 (MiGA 2024-2026 35-joint tables)
# --------------------------------------------------------------------------------------------


def _faces_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=1500, help="frames of the long video (25 fps)")
    p.add_argument("--scale", type=float, default=0.5, help="video size: 1.0 = 1280x720")
    p.add_argument("--gop", type=int, default=250, help="keyframe interval of the long video")
    p.add_argument("--size", type=int, default=112, help="face crop side")
    p.add_argument("--person-size", type=int, default=256, help="person crop side (comparison)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the face-box timing")
    p.add_argument("--workdir", type=Path, default=None, help="keep the data here (reused)")
    p.add_argument("--seed", type=int, default=0)


@section("faces", "face tracks from keypoints and face-crop preparation, frames/s on CPU",
         _faces_args)  # fmt: skip
def bench_faces(args: argparse.Namespace) -> dict[str, Any]:
    from migalab.data.cache import SkeletonCache
    from migalab.data.representations.multimodal import (
        FaceOptions,
        build_clip_jobs,
        build_face_jobs,
        clip_face_track,
    )
    from migalab.data.video.prepared_clips import prepare_clips
    from migalab.data.video.readers import open_video

    console = _console()
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="migalab-bench-faces-")
        root = Path(tmp.name)
    else:
        root = args.workdir
    args.clips = 0
    t0 = time.perf_counter()
    _, cache_dir = _video_release(root, args)
    gen_s = time.perf_counter() - t0
    cache = SkeletonCache(cache_dir)
    records = [cache.load_clip(i) for i in range(len(cache))]
    clip_frames = sum(r.end - r.start + 1 for r in records)
    opts = FaceOptions(size=args.size)

    # face boxes: per clip (as prepare computes them), best of --repeats
    best = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        tracks = [clip_face_track(r, opts) for r in records]
        best = min(best, time.perf_counter() - t0)
    visible = float(np.mean(np.concatenate([t.visible for t in tracks])))
    boxes_fps = clip_frames / best
    console.print(f"face boxes: {boxes_fps:,.0f} frames/s ({clip_frames} clip frames, "
                  f"{visible:.1%} visible)")  # fmt: skip

    # decode only (the floor of any prepare), face crops, person crops: same clips
    jobs, problems = build_face_jobs(cache, ["train"], opts)
    needed = np.unique(np.concatenate([np.arange(j.start, j.end + 1) for j in jobs]))
    with open_video(jobs[0].video_path, backend="pyav") as reader:
        video_info = {"frames": reader.num_frames, "height": reader.height,
                      "width": reader.width, "gop": args.gop}  # fmt: skip
        t0 = time.perf_counter()
        decoded = sum(1 for _ in reader.iter_frames(needed))
        decode_s = time.perf_counter() - t0
    rows = {"decode only": {"frames": decoded, "seconds": decode_s}}
    t0 = time.perf_counter()
    face = prepare_clips(jobs, root / "faces", size=args.size, progress=False)
    rows["face crops"] = {"frames": clip_frames, "seconds": time.perf_counter() - t0,
                          "clips": face.written}  # fmt: skip
    pjobs, _ = build_clip_jobs(cache, "imigue22", ["train"])
    t0 = time.perf_counter()
    person = prepare_clips(pjobs, root / "person", size=args.person_size, progress=False)
    rows["person crops"] = {"frames": clip_frames, "seconds": time.perf_counter() - t0,
                            "clips": person.written}  # fmt: skip
    for name, r in rows.items():
        r["frames_per_s"] = r["frames"] / r["seconds"]
        r["x_vs_decode_only"] = r["frames_per_s"] / rows["decode only"]["frames_per_s"]
        console.print(f"{name}: {r['frames_per_s']:,.0f} frames/s "
                      f"({r['x_vs_decode_only']:.2f}x decode only)")  # fmt: skip
    if tmp is not None:
        tmp.cleanup()
    return {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "video": video_info,
        "generate_s": gen_s,
        "clips": len(records),
        "clip_frames": clip_frames,
        "face_visible_share": visible,
        "face_boxes_frames_per_s": boxes_fps,
        "face_boxes_x_vs_face_crops": boxes_fps / rows["face crops"]["frames_per_s"],
        "prepare": rows,
        "problems": problems,
    }


def _light35_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--videos", type=int, default=20, help="train videos to generate")
    p.add_argument("--frames", type=int, default=9000, help="frames per video (at least)")
    p.add_argument("--seed", type=int, default=0)


@section("light35", "prepare 35-joint light_hand.csv videos vs the same videos as 137-point csv",
         _light35_args)  # fmt: skip
def bench_light35(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``prepare_release`` (1 worker) on N videos written as ``<vid>_light_hand.csv``
    against the same synthetic videos as 411-column ``<vid>_openpose.csv`` (the baseline), in
    this process."""
    from migalab.data.prepare import prepare_release
    from migalab.synthetic import SynthConfig, generate_release

    console = _console()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="migalab-bench-") as tmp:
        for fmt in ("csv", "light"):
            root = Path(tmp) / fmt
            cfg = SynthConfig(seed=args.seed, num_videos={"train": args.videos, "validate": 0,
                              "test": 0}, min_video_frames=args.frames, table_format=fmt,
                              workers=os.cpu_count() or 1)  # fmt: skip
            with console.status(f"writing {args.videos} {fmt} videos x {args.frames} frames"):
                generate_release(root, cfg, progress=False)
            t0 = time.perf_counter()
            res = prepare_release(root, Path(tmp) / f"cache_{fmt}", workers=1, progress=False)
            seconds = time.perf_counter() - t0
            rows[fmt] = {"seconds": seconds, "videos": res.num_videos,
                         "per_video_s": seconds / max(res.num_videos, 1)}  # fmt: skip
            console.log(f"{fmt}: {seconds:.1f} s, {rows[fmt]['per_video_s']:.2f} s/video")
    ratio = rows["csv"]["per_video_s"] / rows["light"]["per_video_s"]
    console.log(f"light35 vs 137-point csv: {ratio:.2f}x")
    return {"rows": rows, "speedup_vs_csv137": ratio}


# --------------------------------------------------------------------------------------------
# section: swinface (face embeddings of the emotion track)
# --------------------------------------------------------------------------------------------


def _swinface_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--presets", nargs="+", default=["t", "xs"], help="SwinFace presets to time")
    p.add_argument("--frames", type=int, default=32, help="face crops per forward (B*T)")
    p.add_argument("--repeat", type=int, default=3, help="best of N timings")
    p.add_argument(
        "--torch-threads", type=int, default=0, help="torch CPU threads (0: torch's default)"
    )
    p.add_argument("--seed", type=int, default=0)


def _bench_swinface_preset(preset: str, x: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One preset: compute, cache miss and cache hit frames/s, and one weights hash."""
    import torch

    from migalab.models.embedding_cache import module_fingerprint
    from migalab.models.encoders.swinface import SwinFaceEncoder

    frames = x.shape[1]
    with tempfile.TemporaryDirectory(prefix="migalab-bench-") as tmp, torch.no_grad():
        torch.manual_seed(args.seed)
        enc = SwinFaceEncoder(preset=preset, finetune="frozen", cache_dir=tmp).eval()
        params = sum(p.numel() for p in enc.parameters())
        compute = _best_of(lambda: enc(x), args.repeat)
        t0 = time.perf_counter()
        module_fingerprint(enc, "bench")  # a fresh digest: hashes every tensor
        hash_s = time.perf_counter() - t0
        counter = iter(range(10**9))

        def miss() -> None:  # new keys every call: compute + store
            n = next(counter)
            enc(x, keys=[[f"{n}:{t}" for t in range(frames)]])

        miss_s = _best_of(miss, args.repeat)
        keys = [[f"hit:{t}" for t in range(frames)]]
        hit_s = _best_of(lambda: enc(x, keys=keys), args.repeat)
    return {
        "preset": preset,
        "params_m": params / 1e6,
        "frames": frames,
        "compute_fps": frames / compute,
        "cache_miss_fps": frames / miss_s,
        "cache_hit_fps": frames / hit_s,
        "hit_speedup_vs_compute": compute / hit_s,
        "fingerprint_hash_s": hash_s,
    }


@section(
    "swinface",
    "SwinFace per-frame face embeddings (112x112 crops): compute vs the embedding cache",
    _swinface_args,
)
def bench_swinface(args: argparse.Namespace) -> dict[str, Any]:
    """Per preset, in this process (eval, no grad, CPU): frames/s of ``SwinFaceEncoder`` on
    ``--frames`` uint8 crops (B=1, T=frames), the first call through the embedding cache
    (misses: compute + write), a second call (all hits: read + fingerprint memo check), and
    the cost of hashing the weights once (a new fingerprint)."""
    import torch

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    console = _console()
    rows: list[dict[str, Any]] = []
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (1, args.frames, 3, 112, 112), dtype=torch.uint8, generator=g)
    for preset in args.presets:
        row = _bench_swinface_preset(preset, x, args)
        rows.append(row)
        console.log(
            f"{preset}: compute {row['compute_fps']:.1f} frames/s, cache miss "
            f"{row['cache_miss_fps']:.1f}, hit {row['cache_hit_fps']:.0f} "
            f"({row['hit_speedup_vs_compute']:.0f}x), weights hash {row['fingerprint_hash_s']:.2f} s"
        )

    from rich.table import Table

    table = Table(title=f"SwinFace embeddings: {args.frames} crops of 112², best of {args.repeat}")
    for col in ("preset", "params", "compute f/s", "miss f/s", "hit f/s", "hit x", "hash s"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for r in rows:
        table.add_row(r["preset"], f"{r['params_m']:.1f} M", f"{r['compute_fps']:.1f}",
                      f"{r['cache_miss_fps']:.1f}", f"{r['cache_hit_fps']:.0f}",
                      f"{r['hit_speedup_vs_compute']:.0f}x", f"{r['fingerprint_hash_s']:.2f}")  # fmt: skip
    console.width = max(console.width, 100)
    console.print(table)
    return {
        "config": {
            "presets": args.presets,
            "frames": args.frames,
            "repeat": args.repeat,
            "torch_threads": torch.get_num_threads(),
        },
        "results": rows,
    }


# --------------------------------------------------------------------------------------------
# section: mamp (self-supervised skeleton pretraining throughput)
# --------------------------------------------------------------------------------------------


def _mamp_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=["small", "paper"], default="small",
                   help="small: dim 64, 4 blocks, 32 frames (the CPU experiments); paper: MAMP's "
                   "dim 256, 8 blocks, 120 frames")  # fmt: skip
    p.add_argument("--batch", type=int, default=32, help="windows per step")
    p.add_argument("--repeat", type=int, default=5, help="best of N steps")
    p.add_argument("--seed", type=int, default=0)


@section("mamp", "MAMP pretraining steps (windows/s) vs a supervised step of the same encoder",
         _mamp_args)  # fmt: skip
def bench_mamp(args: argparse.Namespace) -> dict[str, Any]:
    """In this process, CPU: windows/s of one MAMP training step (forward + backward +
    AdamW; the encoder sees 10 % of the tokens, a light decoder all of them) against the
    baseline, a supervised step of the same encoder on every token with a linear head."""
    import torch

    from migalab.models.encoders.skeleton_transformer import SkeletonTransformer
    from migalab.models.pretrain import MaskedMotionPrediction

    console = _console()
    torch.manual_seed(args.seed)
    size = ({"dim": 64, "depth": 4, "heads": 4, "num_frames": 32} if args.preset == "small"
            else {"dim": 256, "depth": 8, "heads": 8, "num_frames": 120})  # fmt: skip
    dec = ({"decoder_dim": 64, "decoder_depth": 2, "decoder_heads": 4} if args.preset == "small"
           else {})  # fmt: skip
    enc = SkeletonTransformer(layout="imigue22", **size)
    pretext = MaskedMotionPrediction(enc, **dec)
    head = torch.nn.Linear(enc.out_channels, 32)
    x = torch.randn(args.batch, 3, size["num_frames"], enc.num_joints, 1)
    y = torch.randint(0, 32, (args.batch,))
    opt_pre = torch.optim.AdamW([*enc.parameters(), *pretext.parameters()], lr=1e-4)
    opt_sup = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-4)

    def mamp_step() -> None:
        opt_pre.zero_grad()
        pretext(enc, x)["loss"].backward()
        opt_pre.step()

    def supervised_step() -> None:
        opt_sup.zero_grad()
        torch.nn.functional.cross_entropy(head(enc(x).pooled), y).backward()
        opt_sup.step()

    rows = {}
    for name, fn in (("supervised step (all tokens)", supervised_step),
                     ("MAMP step (90 % masked)", mamp_step)):  # fmt: skip
        sec = _best_of(fn, args.repeat)
        rows[name] = {"step_s": sec, "windows_per_s": args.batch / sec}
    base = rows["supervised step (all tokens)"]["windows_per_s"]
    for name, r in rows.items():
        r["x_vs_supervised"] = r["windows_per_s"] / base
        console.print(f"{name}: {r['windows_per_s']:.1f} windows/s ({r['x_vs_supervised']:.2f}x)")
    return {
        "config": {
            **vars(args),
            **size,
            "tokens": enc.num_segments * enc.num_joints,
            "torch_threads": torch.get_num_threads(),
        },  # fmt: skip
        "params_m": sum(p.numel() for p in enc.parameters()) / 1e6,
        "rows": rows,
    }


# --------------------------------------------------------------------------------------------
# section: online (sliding-window recognition of a whole sequence)
# --------------------------------------------------------------------------------------------


def _online_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", default="agcn_joint_synth", help="model config (random init)")
    p.add_argument("--frames", type=int, default=9000, help="sequence length (an iMiGUE video)")
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--stride", type=int, default=8)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--baseline-frames", type=int, default=150,
                   help="frames timed for the one-forward-per-frame baseline")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)


@section("online", "online recognition of a whole sequence (frames/s) vs one forward per frame",
         _online_args)  # fmt: skip
def bench_online(args: argparse.Namespace) -> dict[str, Any]:
    """In this process, CPU: frames/s of ``migalab-predict skeleton=``'s path on a
    ``--frames`` sequence (windows every ``--stride`` frames through the model's evaluation
    pipeline, batched, then the per-frame merge and segments) against the baseline that runs
    one window per frame, unbatched (timed on the first ``--baseline-frames`` frames)."""
    import hydra
    import torch
    from torch.utils.data import DataLoader

    from migalab.online import SequenceWindows, frame_probabilities, segments_from_frames
    from migalab.utils.hydra import compose_config

    console = _console()
    torch.manual_seed(args.seed)
    cfg = compose_config("train", [f"experiment={args.experiment}"])
    model = hydra.utils.instantiate(cfg.model).eval()
    dm = hydra.utils.instantiate(cfg.data)
    rng = np.random.default_rng(args.seed)
    table = np.zeros((args.frames, 137, 3), np.float32)  # a random walk around a body
    table[..., :2] = 400 + np.cumsum(rng.normal(0, 1.5, (args.frames, 137, 2)), 0) * 0.05
    table[..., :2] += rng.uniform(0, 300, (1, 137, 2))
    table[..., 2] = 1.0
    pipeline = dm.pipeline(train=False, key="test")

    def run(stride: int, batch: int, frames: int) -> tuple[float, int]:
        windows = SequenceWindows(table[:frames], "bench", args.window, stride, pipeline,
                                  tuple(dm.img_shape), layout=dm.layout)  # fmt: skip
        start = time.perf_counter()
        outs = []
        with torch.inference_mode():
            for b in DataLoader(windows, batch_size=batch):
                outs.append(model.predict_logits(b).float().softmax(-1))
        probs = torch.cat(outs)
        merged = frame_probabilities(probs, windows.starts, args.window, frames)
        segments_from_frames(merged, 0.5, 8)
        return time.perf_counter() - start, len(windows)

    batched_s, n_windows = run(args.stride, args.batch, args.frames)
    base_s, base_windows = run(1, 1, args.baseline_frames)
    rows = {
        f"windows every {args.stride} frames, batch {args.batch}": {
            "seconds": batched_s, "frames": args.frames, "windows": n_windows,
            "frames_per_s": args.frames / batched_s},
        "one window per frame, batch 1 (baseline)": {
            "seconds": base_s, "frames": args.baseline_frames, "windows": base_windows,
            "frames_per_s": args.baseline_frames / base_s},
    }  # fmt: skip
    base = rows["one window per frame, batch 1 (baseline)"]["frames_per_s"]
    for name, r in rows.items():
        r["x_vs_baseline"] = r["frames_per_s"] / base
        console.print(f"{name}: {r['frames_per_s']:.0f} frames/s ({r['x_vs_baseline']:.1f}x)")
    return {"config": {**vars(args), "torch_threads": torch.get_num_threads()}, "rows": rows}


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
