"""Write a synthetic iMiGUE in the MiGA 2025 release layout.

``<root>/{train,validate,test}/<vid>/<vid>_openpose.xlsx`` (or ``.csv``) and ``<vid>_label.csv``,
``<root>/emotion_labels.csv`` and, written last and atomically, ``<root>/synth_meta.json`` (the
config, its hash, counts), so :func:`release_is_current` can tell a finished, matching release
from a missing, stale or interrupted one. With ``cfg.video`` every video folder also gets
``<vid>.mp4``, an RGB rendering of the same motion (:mod:`migalab.synthetic.video`).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from migalab.data.classes import CLASS_NAMES, NUM_CLASSES
from migalab.data.formats.light35 import write_light_table
from migalab.data.formats.miga2025 import class_to_raw, write_label_csv, write_openpose_table
from migalab.synthetic.config import FPS, GENERATOR_VERSION, SPLITS, SynthConfig
from migalab.synthetic.sequence import VideoSpec, generate_video
from migalab.utils.io import atomic_write_text
from migalab.utils.progress import progress_bar

log = logging.getLogger(__name__)

META_FILE = "synth_meta.json"
#: Hidden marker naming a folder as written by this generator (readers skip hidden files).
MARKER_FILE = ".migalab-synth"
EMOTION_FILE = "emotion_labels.csv"
EMOTION_NAMES = ("lose", "win")
_VID_RE = re.compile(r"^\d{4}$")


def plan_release(cfg: SynthConfig) -> list[VideoSpec]:
    """Video ids, splits, subjects and emotions of the release (cheap, deterministic).

    Ids are distinct random 4-digit numbers across all splits; subjects never cross splits
    (about ``videos_per_subject`` videos each); emotions are balanced within each split.
    """
    rng = np.random.default_rng([cfg.seed, 3])
    total = sum(cfg.num_videos.values())
    ids = rng.choice(np.arange(1, 10000), size=total, replace=False)
    specs: list[VideoSpec] = []
    pos, next_sid = 0, 0
    for split in SPLITS:
        n = cfg.num_videos[split]
        if n == 0:
            continue
        vids = sorted(int(v) for v in ids[pos : pos + n])
        pos += n
        n_subj = max(1, math.ceil(n / cfg.videos_per_subject))
        subj = np.concatenate([np.arange(n_subj), rng.integers(0, n_subj, size=n - n_subj)])
        rng.shuffle(subj)
        emotions = np.arange(n) % 2
        rng.shuffle(emotions)
        for vid, sid, emo in zip(vids, subj, emotions, strict=True):
            specs.append(VideoSpec(f"{vid:04d}", split, int(next_sid + sid), int(emo)))
        next_sid += n_subj
    return specs


def _video_dir(root: Path, spec: VideoSpec) -> Path:
    return root / spec.split / spec.vid


#: table formats and their file names: the 2025 OpenPose-137 tables, the 2024-26 35-joint one
TABLE_FILES = {
    "xlsx": "{vid}_openpose.xlsx",
    "csv": "{vid}_openpose.csv",
    "light": "{vid}_light_hand.csv",
}


def _table_path(root: Path, spec: VideoSpec, fmt: str) -> Path:
    return _video_dir(root, spec) / TABLE_FILES[fmt].format(vid=spec.vid)


def _label_path(root: Path, spec: VideoSpec) -> Path:
    return _video_dir(root, spec) / f"{spec.vid}_label.csv"


def _mp4_path(root: Path, spec: VideoSpec) -> Path:
    return _video_dir(root, spec) / f"{spec.vid}.mp4"


def _write_video(root: str, spec: VideoSpec, cfg: SynthConfig) -> dict[str, Any]:
    """Generate and write one video (table, labels and, with ``cfg.video``, its mp4); returns
    its summary (runs in worker processes)."""
    root_p = Path(root)
    res = generate_video(spec, cfg)
    fmt = cfg.table_format
    for other_fmt in TABLE_FILES.keys() - {fmt}:  # readers prefer .xlsx: no stale other table
        _table_path(root_p, spec, other_fmt).unlink(missing_ok=True)
    mp4 = _mp4_path(root_p, spec)
    if mp4.exists():  # an mp4 of an earlier config never sits next to the new table
        mp4.unlink()
    if fmt == "light":
        write_light_table(_table_path(root_p, spec, fmt), res.table)
    else:
        write_openpose_table(_table_path(root_p, spec, fmt), res.table)
    rows = [(class_to_raw(c), s, e) for c, s, e in res.clips]
    write_label_csv(_label_path(root_p, spec), rows)
    if cfg.video:
        from migalab.synthetic.video import write_video_mp4

        write_video_mp4(mp4, res, cfg)
    return {
        "video_id": spec.vid,
        "split": spec.split,
        "subject": spec.subject_id,
        "emotion": EMOTION_NAMES[spec.emotion],
        "frames": int(len(res.table)),
        "clips": int(len(res.clips)),
        "classes": [int(c) for c, _, _ in res.clips],
    }


def _check_root(root: Path) -> None:
    """Refuse to write into a folder holding video folders that this generator did not write
    (e.g. the real release)."""
    if (root / MARKER_FILE).exists():
        return
    for split in SPLITS:
        d = root / split
        if d.is_dir() and any(p.is_dir() for p in d.iterdir()):
            raise FileExistsError(
                f"{root} holds a release not written by migalab-synth ({d} has video folders); "
                "choose an empty or synthetic folder"
            )


def _remove_stale(root: Path, specs: list[VideoSpec]) -> None:
    """Delete video folders of an earlier synthetic release that the new plan does not have.

    Only 4-digit folders holding nothing but release files are removed.
    """
    planned = {(s.split, s.vid) for s in specs}
    for split in SPLITS:
        d = root / split
        if not d.is_dir():
            continue
        for sub in d.iterdir():
            if not sub.is_dir() or not _VID_RE.match(sub.name) or (split, sub.name) in planned:
                continue
            vid = sub.name
            ours = {f.format(vid=vid) for f in TABLE_FILES.values()}
            ours |= {f"{vid}_label.csv", f"{vid}.mp4"}
            files = list(sub.iterdir())
            if all(f.is_file() and (f.name in ours or f.name.startswith(".")) for f in files):
                shutil.rmtree(sub)
            else:
                log.warning("leaving %s in place (it holds files the generator did not write)", sub)


def _write_emotions(root: Path, summaries: list[dict[str, Any]]) -> None:
    rows = [(s["video_id"], s["split"], s["emotion"]) for s in summaries]
    try:
        from migalab.data.formats.miga2025 import write_emotion_labels
    except ImportError:  # older formats module: same file with pandas
        import pandas as pd

        path = root / EMOTION_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        pd.DataFrame(rows, columns=["video_id", "split", "emotion"]).to_csv(tmp, index=False)
        os.replace(tmp, path)
        return
    write_emotion_labels(root / EMOTION_FILE, rows)


def _meta(cfg: SynthConfig, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "videos": {},
        "clips": {},
        "frames": {},
        "subjects": {},
        "emotion": {},
        "per_class": {},
    }
    for split in SPLITS:
        ss = [s for s in summaries if s["split"] == split]
        hist = np.bincount([c for s in ss for c in s["classes"]], minlength=NUM_CLASSES)
        counts["videos"][split] = len(ss)
        counts["clips"][split] = int(sum(s["clips"] for s in ss))
        counts["frames"][split] = int(sum(s["frames"] for s in ss))
        counts["subjects"][split] = len({s["subject"] for s in ss})
        counts["emotion"][split] = {e: sum(s["emotion"] == e for s in ss) for e in ("win", "lose")}
        counts["per_class"][split] = {CLASS_NAMES[k]: int(hist[k]) for k in range(NUM_CLASSES)}
    videos = [{k: v for k, v in s.items() if k != "classes"} for s in summaries]
    return {
        "generator": "migalab.synthetic",
        "generator_version": GENERATOR_VERSION,
        "config_hash": cfg.config_hash(),
        "config": cfg.to_dict(),
        "fps": FPS,
        "frame_size": list(cfg.frame_size),
        "video": (
            {
                "file": "<vid>.mp4",
                "size": list(cfg.video_size),
                "fps": FPS,
                "gop": cfg.video_gop,
                "crf": cfg.video_crf,
                "codec": "h264",
            }
            if cfg.video
            else None
        ),
        "table_format": cfg.table_format,
        "class_names": list(CLASS_NAMES),
        "counts": counts,
        "videos": videos,
    }


def _run_jobs(root: Path, specs: list[VideoSpec], cfg: SynthConfig) -> Iterator[dict[str, Any]]:
    workers = min(cfg.workers, len(specs))
    if workers <= 1:
        for spec in specs:
            yield _write_video(str(root), spec, cfg)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_write_video, str(root), spec, cfg) for spec in specs]
        for fut in as_completed(futures):
            yield fut.result()


def generate_release(root: str | os.PathLike, cfg: SynthConfig, progress: bool = True) -> Path:
    """Write the whole synthetic release under ``root`` and return ``root``.

    Deterministic: the same config gives byte-identical files, whatever ``cfg.workers``.
    ``synth_meta.json`` is removed first and written last (atomically), so an interrupted run
    is never reported current by :func:`release_is_current`. Video folders of an earlier
    synthetic release in ``root`` that the new plan lacks are deleted; a folder holding another
    release (no hidden ``.migalab-synth`` marker) raises FileExistsError.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _check_root(root)
    meta_path = root / META_FILE
    if meta_path.exists():
        meta_path.unlink()
    (root / MARKER_FILE).write_text("written by migalab.synthetic (migalab-synth)\n")
    specs = plan_release(cfg)
    _remove_stale(root, specs)
    for split in SPLITS:
        (root / split).mkdir(exist_ok=True)
    summaries: list[dict[str, Any]] = []
    with progress_bar("synthetic iMiGUE", len(specs), progress and bool(specs)) as advance:
        for s in _run_jobs(root, specs, cfg):
            summaries.append(s)
            advance(f"{s['split']}/{s['video_id']}")
    order = {(s.split, s.vid): i for i, s in enumerate(specs)}
    summaries.sort(key=lambda s: order[(s["split"], s["video_id"])])
    _write_emotions(root, summaries)
    meta = _meta(cfg, summaries)
    atomic_write_text(meta_path, json.dumps(meta, indent=1) + "\n")
    return root


def read_meta(root: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``synth_meta.json`` of ``root``, or None when missing or unreadable."""
    path = Path(root) / META_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_subjects(root: str | os.PathLike) -> dict[str, str]:
    """``{video_id: subject}`` of a finished synthetic release (from its ``synth_meta.json``);
    empty when ``root`` holds none."""
    meta = read_meta(root)
    videos = (meta or {}).get("videos") or []
    return {str(v["video_id"]): str(v["subject"]) for v in videos if "subject" in v}


def release_is_current(root: str | os.PathLike, cfg: SynthConfig) -> bool:
    """True when ``root`` holds a finished release generated from a config equal to ``cfg``.

    Checks that ``synth_meta.json`` exists, that its config hash equals ``cfg.config_hash()``
    (``workers`` is not part of the hash) and that every listed video still has its table and
    label file (and its ``<vid>.mp4`` when ``cfg.video`` is on).
    """
    root = Path(root)
    meta = read_meta(root)
    if meta is None or meta.get("config_hash") != cfg.config_hash():
        return False
    fmt = meta.get("table_format", cfg.table_format)
    for v in meta.get("videos", []):
        d = root / v["split"] / v["video_id"]
        if not (d / TABLE_FILES[fmt].format(vid=v["video_id"])).is_file():
            return False
        if not (d / f"{v['video_id']}_label.csv").is_file():
            return False
        if cfg.video and not (d / f"{v['video_id']}.mp4").is_file():
            return False
    return (root / EMOTION_FILE).is_file()
