"""Pseudo-labels for a skeleton model (console script ``migalab-pseudolabel``): confident
predictions on the unlabelled frames of the long videos, to train on.

    migalab-pseudolabel ckpt_path=<skeleton checkpoint> threshold=0.9
    migalab-train experiment=agcn_joint_synth data.pseudo_labels=<run dir>/pseudo_labels.csv

iMiGUE's per-video tables are mostly frames outside any labelled clip. Sliding windows of
``window`` frames every ``stride`` over the sequences of ``splits`` (train by default: windows of
the test videos would put test inputs into training) are kept only where they overlap no labelled
clip of their video (those frames have a true label, or are someone's evaluation clip); the
checkpoint's model (rebuilt from its stored config, as ``migalab-eval`` does) scores each window
through its evaluation pipeline in batches, and the windows whose top class probability is at
least ``threshold`` are written with that class. The run dir gets:

* ``pseudo_labels.csv``: ``video_id,start,end,label,class_name,score`` (inclusive frames of the
  cached sequence, 0-based class), what ``data.pseudo_labels`` reads;
* ``pseudo_labels.json``: windows scored / kept, the threshold and the kept windows per class.

Skeleton checkpoints of the gesture task only (RGB and face inputs are prepared per labelled
clip, so unlabelled windows have none).
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from migalab.data.background import unlabelled_windows
from migalab.data.cache import SkeletonCache
from migalab.data.datasets import SkeletonClipDataset
from migalab.scoring.ensemble import (
    build_from_checkpoint,
    checkpoint_loading,
    load_checkpoint_config,
    predict_scores,
    predict_trainer,
    require_skeleton_gesture,
)
from migalab.utils.hydra import save_resolved_config
from migalab.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["pseudo_label", "select_confident", "unlabelled_windows"]


def select_confident(
    probs: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of ``probs`` (N, K) whose top probability is >= ``threshold``: their positions,
    classes and scores (each (n,))."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    score, label = probs.max(dim=-1)
    keep = torch.nonzero(score >= threshold).flatten()
    return keep, label[keep], score[keep]


def pseudo_label(cfg: DictConfig) -> dict[str, Any]:
    """Score the unlabelled windows and write ``pseudo_labels.csv`` / ``.json``; returns the
    summary."""
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpt = str(cfg.ckpt_path)
    train_cfg, state = load_checkpoint_config(ckpt, **checkpoint_loading(cfg))
    require_skeleton_gesture(train_cfg, ckpt, "pseudo-labelling")
    model, datamodule = build_from_checkpoint(train_cfg, state)
    splits = [str(s) for s in cfg.splits] if cfg.get("splits") else None
    cache = SkeletonCache(datamodule.cache_dir)
    windows = unlabelled_windows(cache, int(cfg.window), int(cfg.stride), splits)
    if len(windows) == 0:
        raise ValueError(
            f"{datamodule.cache_dir}: no unlabelled window of {cfg.window} frames "
            f"in splits {splits}"
        )
    datamodule.datasets["unlabelled"] = SkeletonClipDataset(
        windows,
        "unlabelled",
        datamodule.pipeline(train=False, key="test"),
        layout=datamodule.layout,
    )
    log.info("scoring %d unlabelled windows with %s", len(windows), ckpt)
    logits, _, _ = predict_scores(model, datamodule, "unlabelled", predict_trainer(cfg.trainer))
    keep, labels, scores = select_confident(logits.softmax(-1), float(cfg.threshold))
    names = list(train_cfg.model.get("class_names") or [])
    index = windows.index
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["video_id", "start", "end", "label", "class_name", "score"])
    for i, y, p in zip(keep.tolist(), labels.tolist(), scores.tolist(), strict=True):
        writer.writerow(
            [
                index["video_id"].iloc[i],
                int(index["start"].iloc[i]),
                int(index["end"].iloc[i]),
                y,
                names[y] if names else "",
                f"{p:.5f}",
            ]
        )
    out = Path(cfg.paths.output_dir)
    atomic_write_text(out / "pseudo_labels.csv", text.getvalue())
    counts = torch.bincount(labels, minlength=logits.shape[-1]).tolist()
    summary = {
        "checkpoint": ckpt,
        "windows": len(windows),
        "kept": len(keep),
        "threshold": float(cfg.threshold),
        "window": int(cfg.window),
        "stride": int(cfg.stride),
        "splits": splits,
        "kept_per_class": counts,
        "csv": str(out / "pseudo_labels.csv"),
    }
    atomic_write_json(out / "pseudo_labels.json", summary)
    print(
        f"pseudo-labels: {len(keep)} of {len(windows)} unlabelled windows at probability >= "
        f"{cfg.threshold}: {out / 'pseudo_labels.csv'}"
    )
    return summary


def _task(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    pseudo_label(cfg)


if __name__ == "__main__":  # python -m migalab.pseudolabel: the console script's entry
    from migalab.cli import pseudolabel as console_entry

    console_entry()
