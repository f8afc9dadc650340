"""The emotion (win / lose) of a new video, from an emotion checkpoint.

An emotion model reads face crops (and person crops) of clips that its data pipeline prepares
from a release: the face track from the skeleton's face keypoints, crops cut from the mp4
(:mod:`migalab.data.representations.multimodal`). A new video gets exactly that pipeline by becoming a
*one-video release* in the run dir (``emotion/release/test/<vid>/`` with the pose table, a link
to the mp4 and a label file listing its clips), which the checkpoint's own datamodule prepares
and scores (:func:`migalab.scoring.ensemble.build_from_checkpoint`); nothing is written next to the user's
video. The clips are the gestures online recognition found (the emotion models are trained on
gesture clips), or, where it found none, windows of ``window`` frames covering the video. The
clips' win log-odds are pooled into one per video as the checkpoint was trained to
(:func:`migalab.tasks.emotion.aggregate_videos`), then averaged over the checkpoints.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from migalab.data.formats.miga2025 import write_label_csv
from migalab.errors import UserError
from migalab.online import Segment
from migalab.scoring.ensemble import (
    build_from_checkpoint,
    load_checkpoint_config,
    predict_scores,
    predict_trainer,
)
from migalab.tasks.emotion import aggregate_videos, win_scores

#: the release code written as every clip's class (the emotion model does not read it)
_ANY_CLASS = 99


class EmotionVideoError(UserError, ValueError):
    """An emotion checkpoint or option that cannot answer for a new video."""


def emotion_clips(
    segments: Sequence[Segment], total: int, window: int, min_length: int = 8
) -> list[tuple[int, int]]:
    """(start, end) inclusive frames of the clips the emotion rests on: the detected gesture
    segments of at least ``min_length`` frames, else windows of ``window`` frames every
    ``window`` covering the ``total`` frames (a last one shorter than ``min_length`` is
    dropped, unless it is the only one)."""
    if window < 1 or min_length < 1:
        raise EmotionVideoError(
            f"emotion window and min_length must be >= 1, got {window}, {min_length}"
        )
    clips = [(s.start, s.end) for s in segments if s.length >= min_length]
    if clips or total <= 0:
        return clips
    windows = [(a, min(a + window, total) - 1) for a in range(0, total, window)]
    kept = [w for w in windows if w[1] - w[0] + 1 >= min_length]
    return kept or windows[:1]


def one_video_release(
    root: Path, vid: str, table: Path, video: Path, clips: Sequence[tuple[int, int]]
) -> Path:
    """A release holding one test video (``root/test/<vid>/``: the pose table, a link to
    ``video`` (a copy where links are not allowed) and ``<vid>_label.csv`` listing ``clips``)
    and empty train / validate splits; returns ``root``."""
    folder = root / "test" / vid
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validate"):
        (root / split).mkdir(exist_ok=True)
    suffix = ".xlsx" if table.suffix == ".xlsx" else ".csv"
    shutil.copyfile(table, folder / f"{vid}_openpose{suffix}")
    link = folder / f"{vid}.mp4"
    if link.is_symlink() or link.exists():
        link.unlink()
    try:
        os.symlink(video.resolve(), link)
    except OSError:  # e.g. a filesystem without links
        shutil.copyfile(video, link)
    write_label_csv(folder / f"{vid}_label.csv", [(_ANY_CLASS, a, b) for a, b in clips])
    return root


def predict_emotion(
    ckpts: Sequence[str],
    vid: str,
    table: Path,
    video: Path,
    clips: Sequence[tuple[int, int]],
    img_shape: tuple[int, int],
    out_dir: Path,
    trainer_cfg: DictConfig,
    loading: Mapping[str, Any],
) -> dict[str, Any]:
    """The win probability of one video: each emotion checkpoint scores ``clips`` of ``video``
    (frames ``img_shape`` (height, width), keypoints ``table``) through its own data pipeline
    in ``out_dir`` (release and caches), its clip log-odds pooled per video; the checkpoints'
    video log-odds averaged. Returns ``{p_win, answer, clips, per_checkpoint}``."""
    if not clips:
        raise EmotionVideoError(f"{vid}: no clip to rest an emotion on (an empty video?)")
    release = out_dir / "release"
    loading = dict(loading)  # the run's own data.* overrides pass, under the release's
    user = loading.pop("data_overrides", None) or {}
    if isinstance(user, DictConfig):
        user = OmegaConf.to_container(user, resolve=True)
    overrides = {
        **dict(user),
        "release_root": str(release),
        "cache_dir": str(out_dir / "cache"),
        "img_shape": [int(img_shape[0]), int(img_shape[1])],
        "num_workers": 0,
        "splits": {"train": "train", "val": "validate", "test": "test"},
    }
    # every checkpoint read (weights only, config checked) and its task checked before anything
    # is written: a refused one leaves no release behind
    loaded = []
    for ckpt in ckpts:
        train_cfg, state = load_checkpoint_config(ckpt, data_overrides=overrides, **loading)
        if str(train_cfg.data.get("target", "gesture")) != "emotion":
            raise EmotionVideoError(
                f"emotion_ckpt={ckpt}: not an emotion model (data.target "
                f"{train_cfg.data.get('target', 'gesture')})"
            )
        # the one-video release is the data: never generated, no labels or subjects files,
        # no training splits
        for key in ("synthetic", "emotion_labels", "subjects", "train_splits"):
            if key in train_cfg.data:
                train_cfg.data[key] = None
        loaded.append((ckpt, train_cfg, state))
    one_video_release(release, vid, table, video, clips)
    trainer = predict_trainer(trainer_cfg)
    per_ckpt, logits = [], []
    for ckpt, train_cfg, state in loaded:
        model, datamodule = build_from_checkpoint(train_cfg, state)
        out, _, videos = predict_scores(model, datamodule, "test", trainer)
        if videos is None or len(out) == 0:
            raise EmotionVideoError(f"{ckpt}: no clip of {vid} could be scored")
        _, counts, video_logit = aggregate_videos(
            videos,
            win_scores(out),
            str(train_cfg.model.get("aggregation", "mean")),
            float(train_cfg.model.get("temperature", 1.0)),
        )
        logit = float(video_logit[0])
        logits.append(logit)
        per_ckpt.append(
            {
                "checkpoint": str(ckpt),
                "clips": int(counts[0]),
                "p_win": round(float(torch.sigmoid(torch.tensor(logit))), 4),
            }
        )
    p_win = float(torch.sigmoid(torch.tensor(sum(logits) / len(logits))))
    return {
        "p_win": round(p_win, 4),
        "answer": "win" if p_win >= 0.5 else "lose",
        "clips": len(clips),
        "clip_frames": [list(c) for c in clips],
        "per_checkpoint": per_ckpt,
    }
