"""Evaluation entry point (console script ``migalab-eval``).

    migalab-eval ckpt_path=logs/train/runs/<run>/checkpoints/epoch_012.ckpt
    migalab-eval ckpt_path='[joint.ckpt,bone.ckpt]' fusion.weights='[0.4,0.6]'
    migalab-eval ckpt_path='[joint.ckpt,limb.ckpt]' fusion.search=true   # weights from val

Each checkpoint carries the resolved config of its training run, so its model and its data
pipeline (stream, layout, frames, test-time views) are rebuilt exactly; ``data.*`` overrides
given here (e.g. a new ``data.release_root``) are merged on top. Several checkpoints are fused
at score level (the 2s-AGCN joint + bone or PoseC3D joint + limb ensembles), with given weights
or weights searched on the validation split (a grid over the simplex; the chosen weights are
saved in ``fusion.json`` and used for the other splits). Writes ``metrics.json`` in the run dir
with the metrics of each checkpoint and of the fusion.

Emotion checkpoints (``data.target=emotion``) are evaluated per video instead: video accuracy /
macro-F1 / AUROC (and clip accuracy), ``video_predictions_<split>.csv``, and several of them
are fused per video (:mod:`migalab.scoring.emotion`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.table import Table

from migalab.data.formats.sequence_files import files_by_video
from migalab.online import idle_false_segments, read_segments, segment_scores
from migalab.reports import report_files
from migalab.scoring.emotion import evaluate_emotion
from migalab.scoring.ensemble import (
    checkpoint_loading,
    evaluate_scores,
    resolve_fusion_weights,
    score_checkpoints,
)
from migalab.utils.hydra import save_resolved_config
from migalab.utils.io import atomic_write_json
from migalab.utils.summary import print_summary, write_metrics

log = logging.getLogger(__name__)


def _predicted_frames(preds: dict[str, Path]) -> dict[str, int]:
    """video id -> frames of the sequence, from the ``<vid>_prediction.json`` beside each
    prediction CSV (migalab-predict's); videos without one are left out."""
    frames = {}
    for vid, csv_path in preds.items():
        record = csv_path.with_suffix(".json")
        try:
            value = json.loads(record.read_text()).get("frames") if record.is_file() else None
        except (OSError, ValueError, AttributeError):  # not migalab-predict's record: no rate
            value = None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            frames[vid] = value
    return frames


def evaluate_online(cfg: DictConfig) -> dict[str, Any]:
    """Segment-level precision / recall / F1 of online predictions (``<vid>_prediction.csv``,
    ``online.predictions``) against label files (``<vid>_label.csv``, ``online.labels``) at
    ``online.ious`` (:func:`migalab.online.segment_scores`); writes ``metrics.json``."""
    on = cfg.online
    preds = files_by_video(str(on.predictions), "_prediction.csv", "online.predictions")
    truths = files_by_video(str(on.labels), "_label.csv", "online.labels")
    missing = sorted(set(preds) - set(truths))
    if missing:
        raise FileNotFoundError(
            f"no label file for the predicted video(s) {missing[:10]} in {on.labels}"
        )
    pred_segments = {v: read_segments(p) for v, p in preds.items()}
    true_segments = {v: read_segments(truths[v]) for v in preds}
    scores = segment_scores(pred_segments, true_segments, [float(x) for x in on.ious])
    payload = {
        "task": cfg.task_name,
        "run_dir": cfg.paths.output_dir,
        "videos": sorted(preds),
        "online": scores,
    }
    frames = _predicted_frames(preds)
    if len(frames) == len(preds):  # every prediction has its migalab-predict JSON
        payload["idle"] = idle_false_segments(
            pred_segments, true_segments, frames, float(on.get("fps", 25.0))
        )
    path = write_metrics(cfg.paths.output_dir, payload)
    table = Table(title=f"{cfg.task_name}: online recognition ({len(preds)} videos)")
    for col in ("IoU >", "precision", "recall", "F1", "TP", "predicted", "labelled"):
        table.add_column(col, justify="right")
    for key, v in scores.items():
        table.add_row(
            key.removeprefix("iou_"),
            f"{v['precision']:.4f}",
            f"{v['recall']:.4f}",
            f"{v['f1']:.4f}",
            str(v["tp"]),
            str(v["predicted"]),
            str(v["true"]),
        )
    Console().print(table)
    if "idle" in payload:
        idle = payload["idle"]
        print(
            f"false segments where no label is: {idle['segments']} in "
            f"{idle['idle_minutes']:.1f} min ({idle['per_minute']:.2f} per minute at "
            f"{on.get('fps', 25.0):g} fps)"
        )
    print(f"metrics: {path}")
    return payload


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score every checkpoint on the requested splits, fuse, and write ``metrics.json``; with
    ``online.predictions``: segment F1 of online predictions instead (:func:`evaluate_online`)."""
    if cfg.get("online") and cfg.online.get("predictions"):
        return evaluate_online(cfg)
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = cfg.ckpt_path
    ckpts = [str(c) for c in ckpts] if isinstance(ckpts, ListConfig | list) else [str(ckpts)]
    splits = list(cfg.splits)
    if cfg.fusion.get("search", False) and cfg.fusion.get("search_split", "val") not in splits:
        splits.insert(0, cfg.fusion.get("search_split", "val"))
    entries = score_checkpoints(ckpts, splits, cfg.trainer, **checkpoint_loading(cfg))
    targets = sorted({e.target for e in entries})
    if len(targets) > 1:
        raise ValueError(
            "cannot fuse checkpoints of different tasks: "
            + ", ".join(f"{e.path} ({e.target})" for e in entries)
        )

    payload: dict[str, Any] = {
        "task": cfg.task_name,
        "run_dir": cfg.paths.output_dir,
        "ckpt_path": ckpts,
        "target": targets[0],
    }
    if targets[0] == "emotion":  # per video: migalab.scoring.emotion
        metrics, table, fusion_info = evaluate_emotion(
            entries, splits, cfg.fusion, cfg.paths.output_dir
        )
    else:
        weights, fusion_info = None, None
        if len(entries) > 1:
            weights, fusion_info = resolve_fusion_weights(cfg.fusion, entries)
        temps = fusion_info.get("temperatures") if fusion_info else None
        metrics, table = evaluate_scores(entries, splits, weights, cfg.fusion.space, temps)
    if fusion_info is not None:
        atomic_write_json(Path(cfg.paths.output_dir) / "fusion.json", fusion_info)
    payload.update(metrics)
    payload["fusion"] = fusion_info
    path = write_metrics(cfg.paths.output_dir, payload)
    footer = f"metrics: {path}"
    if fusion_info is not None:
        footer += f"\nfusion weights: {fusion_info['weights']}"
    print_summary(f"{cfg.task_name}", table, footer=footer)
    if cfg.get("report", False):
        report_files(Path(cfg.paths.output_dir), payload, [], f"{cfg.task_name}")
    return payload


def _task(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    evaluate(cfg)


if __name__ == "__main__":  # python -m migalab.eval: the console script's entry
    from migalab.cli import evaluate as console_entry

    console_entry()
