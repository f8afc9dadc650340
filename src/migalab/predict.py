"""Prediction entry point (console script ``migalab-predict``): a MiGA submission file.

    migalab-predict ckpt_path=joint.ckpt
    migalab-predict ckpt_path='[joint.ckpt,limb.ckpt]' fusion.search=true
    migalab-predict ckpt_path='[joint.ckpt,limb.ckpt]' fusion.from=<eval run>/fusion.json

Scores the ``split`` clips (test by default; their labels may be hidden) with every checkpoint
(model and data rebuilt from the config stored in it, as ``migalab-eval`` does), fuses the
scores (weights given, read from an evaluation's ``fusion.json``, or searched on the validation
split; :mod:`migalab.scoring.ensemble`), and writes into the run dir:

* ``submission.csv``: ``Id,Target`` in the split's clip order (the order of the release's label
  files: videos in folder order, rows in file order); ``Id`` is the clip name ``<vid>_<row>``,
  ``Target`` the predicted 0-based class, 31 = illustrative (``submission.label_format=index``, the
  default: the format of the winning MiGA submissions) or the release's own label-file ids
  (``raw``: 1-based, 99 for class 31); checked against the clip list before it is written;
* ``submission.zip`` holding ``submission.csv`` (what the challenge server takes);
* ``predictions.csv``: clip, predicted 0-based class, its name and probability, and the true
  label where known;
* ``fusion.json`` when several checkpoints are fused.

Online recognition (``skeleton=<table or folder>`` or ``video=<mp4>``, skeleton checkpoints):

    migalab-predict ckpt_path=joint.ckpt skeleton=/data/new/0042_openpose.csv
    migalab-predict ckpt_path=joint.ckpt video=interview.mp4 online.threshold=0.6

slides the model over each whole sequence (``online.window`` / ``stride`` frames, batched),
merges the window probabilities into segments (:mod:`migalab.online`) and writes
``<vid>_prediction.csv`` (rows ``class,start,end``, the label files' format), ``<vid>_prediction.json``
(segments with scores and class names, frames/s) and ``<vid>_timeline.png``; ``video=`` extracts
the pose first (``migalab-pose``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from torch.utils.data import DataLoader

from migalab.data.formats.miga2025 import read_openpose_table
from migalab.data.formats.sequence_files import skeleton_tables, table_video_id, video_paths
from migalab.data.specs import DatasetSpec, get_dataset
from migalab.emotion_video import EmotionVideoError, emotion_clips, predict_emotion
from migalab.online import (
    OnlineSettingsError,
    SequenceWindows,
    fit_class_thresholds,
    fit_online_settings,
    frame_probabilities,
    gate_frames,
    read_segments,
    segment_rows,
    segments_from_frames,
    smooth_frames,
    write_segments,
)
from migalab.pose_gate import PoseGate, plausible_person
from migalab.scoring.ensemble import (
    check_same_clips,
    checkpoint_loading,
    fuse_scores,
    fused_probabilities,
    load_checkpoint_config,
    model_from_checkpoint,
    predict_trainer,
    require_skeleton_gesture,
    resolve_fusion_weights,
    score_checkpoints,
)
from migalab.utils.hydra import save_resolved_config
from migalab.utils.io import atomic_write, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

LABEL_FORMATS = ("raw", "index")


def submission_csv(
    names: Sequence[str],
    preds: Sequence[int],
    label_format: str = "index",
    dataset: str | DatasetSpec = "miga2025",
) -> str:
    """The ``Id,Target`` CSV text of 0-based predictions ``preds`` for clips ``names``.

    ``label_format="index"`` (the challenge's format, as the winning submissions): Target is the
    0-based class, 31 = illustrative. ``"raw"``: the release's label-file ids (MiGA 2025: 1-based,
    99), as the dataset spec maps them. The result is checked with :func:`check_submission`
    before it is returned.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {LABEL_FORMATS}, got {label_format!r}")
    spec = get_dataset(dataset)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["Id", "Target"])
    for name, p in zip(names, preds, strict=True):
        writer.writerow([name, spec.raw_label(int(p)) if label_format == "raw" else int(p)])
    text = buf.getvalue()
    check_submission(text, names, label_format, spec)
    return text


def check_submission(
    text: str,
    names: Sequence[str],
    label_format: str = "index",
    dataset: str | DatasetSpec = "miga2025",
) -> None:
    """Raise ValueError unless ``text`` is an ``Id,Target`` CSV with every clip of ``names``
    exactly once, in that order, and every Target a class of ``label_format`` of the dataset
    (MiGA 2025 index: 0..31; raw: 1..31 or 99)."""
    spec = get_dataset(dataset)
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != ["Id", "Target"]:
        raise ValueError(f"submission header must be Id,Target, got {rows[:1]}")
    ids = [r[0] for r in rows[1:]]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"submission lists clip {dup} more than once")
    if ids != list(names):
        missing = sorted(set(names) - set(ids))[:5]
        extra = sorted(set(ids) - set(names))[:5]
        raise ValueError(
            f"submission Ids differ from the {len(names)} clips of the split "
            f"(missing {missing}, unexpected {extra}, or out of order)"
        )
    allowed = set(range(spec.num_classes))
    if label_format == "raw":
        allowed = {spec.raw_label(k) for k in allowed}
    for row in rows[1:]:
        if len(row) != 2 or not row[1].lstrip("-").isdigit() or int(row[1]) not in allowed:
            raise ValueError(f"submission row {row}: Target is not a {label_format} class id")


def write_submission(
    out_dir: str | Path,
    names: Sequence[str],
    preds: Sequence[int],
    label_format: str = "index",
    dataset: str | DatasetSpec = "miga2025",
) -> tuple[Path, Path]:
    """Write ``submission.csv`` and ``submission.zip`` (atomically); returns both paths."""
    out_dir = Path(out_dir)
    text = submission_csv(names, preds, label_format, dataset)
    csv_path = atomic_write_text(out_dir / "submission.csv", text)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("submission.csv", text)
    payload = buf.getvalue()
    zip_path = atomic_write(out_dir / "submission.zip", lambda f: f.write(payload))
    return csv_path, zip_path


class _WindowsData(L.LightningDataModule):
    """The windows of one sequence behind a checkpoint's datamodule: its batch hooks (e.g.
    heatmaps rendered on the device) apply; nothing is prepared or read from a release."""

    def __init__(self, datamodule: Any, windows: SequenceWindows, batch_size: int) -> None:
        super().__init__()
        self.datamodule, self.windows, self.batch_size = datamodule, windows, batch_size

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.windows, batch_size=self.batch_size, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return self.datamodule.on_after_batch_transfer(batch, dataloader_idx)


def _sequence_inputs(cfg: DictConfig) -> tuple[list[Path], dict[Path, Path]]:
    """The skeleton tables named by ``skeleton=`` and the ones extracted from ``video=``
    (:mod:`migalab.pose`), and the video of each table (the one it was extracted from, or the
    ``<vid>.mp4`` beside a skeleton table, as in a release). Each of the two takes
    a file, a flat folder, a release split folder (one ``<vid>/`` folder per video) or a list
    of these (:mod:`migalab.data.formats.sequence_files`)."""
    paths: list[Path] = []
    sources: dict[Path, Path] = {}
    if cfg.get("video"):
        from migalab.pose import extract_to_dir

        out = Path(cfg.paths.output_dir) / "pose"
        for item in _items(cfg.video):
            for video in video_paths(item, "video"):
                table = extract_to_dir(video, out)
                paths.append(table)
                sources[table] = video
    for item in _items(cfg.get("skeleton")):
        for table in skeleton_tables(item, "skeleton"):
            paths.append(table)
            beside = table.with_name(f"{table_video_id(table)}.mp4")  # a release's <vid>/<vid>.mp4
            if beside.is_file():
                sources[table] = beside
    return paths, sources


def _items(value: Any) -> list[str]:
    """A config value that is one path, a list of them, or null, as a list of strings."""
    if isinstance(value, ListConfig | list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _load_models(
    cfg: DictConfig, ckpts: list[str], target: str
) -> list[tuple[str, Any, Any, DictConfig]]:
    """(checkpoint, model, datamodule, training config) of skeleton checkpoints of ``target``
    (``gesture`` classifiers or ``actionness`` models)."""
    models = []
    for ckpt in ckpts:
        train_cfg, state = load_checkpoint_config(ckpt, **checkpoint_loading(cfg))
        if target == "actionness":
            require_actionness(train_cfg, ckpt)
        else:
            require_skeleton_gesture(train_cfg, ckpt, "online recognition")
        model = model_from_checkpoint(train_cfg, state)
        models.append((ckpt, model, hydra.utils.instantiate(train_cfg.data), train_cfg))
    return models


def require_actionness(train_cfg: DictConfig, ckpt: str) -> None:
    """Refuse, naming it, an ``online.actionness_ckpt`` that is not a skeleton actionness model
    (``data.target=actionness``, e.g. ``experiment=actionness_joint_synth``)."""
    data = train_cfg.data
    if data.get("modalities") or str(data.get("target", "gesture")) != "actionness":
        raise OnlineSettingsError(
            f"online.actionness_ckpt={ckpt}: not an actionness model (data.target "
            f"{data.get('target', 'gesture')}, modalities {data.get('modalities')}); "
            "train one with experiment=actionness_joint_synth"
        )


def _img_shape(on: DictConfig, meta: dict[str, Any], datamodule: Any) -> tuple[int, int]:
    """(height, width) of a sequence's frames: ``online.img_shape``, else the size
    migalab-pose recorded beside its table, else the checkpoint's ``data.img_shape``."""
    if on.get("img_shape"):
        return (int(on.img_shape[0]), int(on.img_shape[1]))
    if meta.get("height") and meta.get("width"):
        return (int(meta["height"]), int(meta["width"]))
    return (int(datamodule.img_shape[0]), int(datamodule.img_shape[1]))


def _window_probs(
    models: list[tuple[str, Any, Any, DictConfig]],
    table: np.ndarray,
    vid: str,
    meta: dict[str, Any],
    on: DictConfig,
    trainer: L.Trainer,
) -> tuple[np.ndarray, int]:
    """(T, K) per-frame probabilities of one sequence, averaged over ``models``, and the
    number of windows."""
    probs, windows = None, None
    for _, model, dm, _ in models:
        img_shape = _img_shape(on, meta, dm)
        windows = SequenceWindows(
            table,
            vid,
            int(on.window),
            int(on.stride),
            dm.pipeline(train=False, key="test"),
            img_shape,
            layout=dm.layout,
        )
        outputs = trainer.predict(model, datamodule=_WindowsData(dm, windows, int(on.batch_size)))
        p = torch.cat([o["logits"] for o in outputs]).float().softmax(-1)
        probs = p if probs is None else probs + p
    assert probs is not None and windows is not None
    frames = frame_probabilities(probs / len(models), windows.starts, int(on.window), len(table))
    return frames, len(windows)


def _online_settings(cfg: DictConfig) -> dict[str, Any]:
    """``threshold``, ``min_length``, ``actionness_threshold``: from ``online.settings`` (a
    ``online_fit.json`` of a fitted run: its numbers only) else ``online.*``."""
    on = cfg.online
    settings = {
        "threshold": float(on.threshold),
        "min_length": int(on.min_length),
        "actionness_threshold": float(on.actionness_threshold),
        "class_thresholds": None,
    }
    if on.get("settings"):
        path = Path(str(on.settings))
        try:
            fitted = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise OnlineSettingsError(
                f"online.settings={path}: not a readable JSON file ({err})"
            ) from None
        for key in ("threshold", "min_length", "actionness_threshold"):
            value = fitted.get(key) if isinstance(fitted, dict) else None
            if key == "actionness_threshold" and value is None:
                continue  # fitted without an actionness model
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OnlineSettingsError(
                    f"online.settings={path}: {key} must be a number, got {value!r}"
                )
            settings[key] = int(value) if key == "min_length" else float(value)
        per_class = fitted.get("class_thresholds")
        if per_class is not None:
            if not isinstance(per_class, list) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in per_class
            ):
                raise OnlineSettingsError(
                    f"online.settings={path}: class_thresholds must be a "
                    f"list of numbers, got {per_class!r}"
                )
            settings["class_thresholds"] = [float(v) for v in per_class]
    return settings


def predict_online(cfg: DictConfig) -> dict[str, Any]:
    """Online recognition of whole sequences (``skeleton=`` / ``video=``): sliding windows,
    merged segments, ``<vid>_prediction.csv`` / ``.json`` (and a timeline PNG) in the run dir.

    With ``online.actionness_ckpt``, frames an actionness model scores below
    ``online.actionness_threshold`` are background ("nothing happens"). With
    ``online.fit=true`` (every video's ``<vid>_label.csv`` beside its table, e.g. a validation
    split folder), threshold, minimum length and actionness threshold are searched for the best
    segment F1 at ``online.fit_iou`` (:func:`migalab.online.fit_online_settings`), used for
    these videos and written to ``online_fit.json``, which ``online.settings`` reads for others.
    """
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = [str(c) for c in _items(cfg.ckpt_path)]
    on = cfg.online
    settings = _online_settings(cfg)
    gate = PoseGate.from_config(on.get("pose_gate"))
    tables, videos_by_table = _sequence_inputs(cfg)
    seen: dict[str, Path] = {}
    for table_path in tables:  # each video's outputs are named by its id: one table per id
        other = seen.setdefault(table_video_id(table_path), table_path)
        if other != table_path:
            raise OnlineSettingsError(
                f"two tables of video {table_video_id(table_path)!r}: {other} and "
                f"{table_path} (their outputs would overwrite each other)"
            )
    out_dir = Path(cfg.paths.output_dir)
    models = _load_models(cfg, ckpts, "gesture")
    act_ckpts = [str(c) for c in _items(on.get("actionness_ckpt"))]
    act_models = _load_models(cfg, act_ckpts, "actionness")
    emotion_ckpts = [str(c) for c in _items(cfg.get("emotion_ckpt"))]
    trainer = predict_trainer(cfg.trainer)
    class_names = list(models[0][3].model.get("class_names") or []) or None
    scored: dict[str, dict[str, Any]] = {}
    for table_path in tables:
        vid = table_video_id(table_path)
        raw = read_openpose_table(table_path)
        table = raw.reshape(len(raw), -1, 3)
        start_time = time.perf_counter()
        meta_path = table_path.with_suffix(".json")  # migalab-pose's: the video's frame size
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        frames, n_windows = _window_probs(models, table, vid, meta, on, trainer)
        frames = smooth_frames(frames, on.get("smooth", 1))
        # no one in the frame, or no plausible person (migalab.pose_gate): background
        img_shape = _img_shape(on, meta, models[0][2])
        nobody = ~(table[..., 2] > 0).any(axis=1) | ~plausible_person(table, img_shape, gate)
        frames[nobody] = 0.0
        actionness = None
        if act_models:
            actionness = _window_probs(act_models, table, vid, meta, on, trainer)[0][:, 1]
            actionness[nobody] = 0.0
        labels = table_path.with_name(f"{vid}_label.csv")
        scored[vid] = {
            "table": table_path,
            "raw": table,
            "frames": frames,
            "actionness": actionness,
            "windows": n_windows,
            "no_person": int(nobody.sum()),
            "nobody": nobody,
            "meta": meta,
            "img_shape": img_shape,
            "seconds": time.perf_counter() - start_time,
            "truth": read_segments(labels) if labels.is_file() else None,
        }
    fit = None
    if on.get("fit"):
        missing = [v for v, r in scored.items() if r["truth"] is None]
        if missing:
            raise OnlineSettingsError(
                f"online.fit=true needs <vid>_label.csv beside every table; none for {missing[:10]}"
            )
        fit = fit_online_settings(
            {v: (r["frames"], r["actionness"]) for v, r in scored.items()},
            {v: r["truth"] for v, r in scored.items()},
            iou=float(on.fit_iou),
        )
        fit = {**fit, "checkpoints": ckpts, "actionness_checkpoints": act_ckpts}
        settings = {k: fit[k] for k in ("threshold", "min_length")} | {
            "actionness_threshold": fit["actionness_threshold"]
            if fit["actionness_threshold"] is not None
            else settings["actionness_threshold"],
            "class_thresholds": None,
        }
        if on.get("fit_per_class", True):  # then one threshold per class, from the global one
            gated = {
                v: gate_frames(r["frames"], r["actionness"], settings["actionness_threshold"])
                for v, r in scored.items()
            }
            per_class, f1 = fit_class_thresholds(
                gated,
                {v: r["truth"] for v, r in scored.items()},
                settings["threshold"],
                settings["min_length"],
                iou=float(on.fit_iou),
            )
            fit = {**fit, "class_thresholds": per_class, "f1_class_thresholds": f1}
            settings["class_thresholds"] = per_class
        atomic_write_json(out_dir / "online_fit.json", fit)
        print(
            f"online.fit on {len(scored)} videos: threshold {fit['threshold']}, min_length "
            f"{fit['min_length']}, actionness_threshold {fit['actionness_threshold']}: F1 "
            f"{fit['f1']:.4f} at IoU {fit['iou']:g}"
            + (
                f"; per-class thresholds: F1 {fit['f1_class_thresholds']:.4f}"
                if "class_thresholds" in fit
                else ""
            )
            + f" ({out_dir / 'online_fit.json'})"
        )
    results: dict[str, Any] = {}
    pages: dict[str, Path] = {}
    for vid, r in scored.items():
        table, table_path = r["raw"], r["table"]
        frames = gate_frames(r["frames"], r["actionness"], settings["actionness_threshold"])
        segments = segments_from_frames(
            frames, settings["class_thresholds"] or settings["threshold"], settings["min_length"]
        )
        csv_path = write_segments(out_dir / f"{vid}_prediction.csv", segments)
        record = {
            "video_id": vid,
            "table": str(table_path),
            "frames": len(table),
            "windows": r["windows"],
            "seconds": round(r["seconds"], 3),
            "frames_per_s": round(len(table) / max(r["seconds"], 1e-9), 1),
            "window": int(on.window),
            "stride": int(on.stride),
            **settings,
            "smooth": int(on.get("smooth", 1)),
            "frames_no_person": r["no_person"],
            "checkpoints": ckpts,
            "actionness_checkpoints": act_ckpts,
            "segments": segment_rows(segments, class_names),
        }
        if not act_ckpts:
            record.pop("actionness_threshold")
        atomic_write_json(out_dir / f"{vid}_prediction.json", record)
        source_video = videos_by_table.get(table_path) or (on.get("annotate_video") or None)
        caption = None
        if emotion_ckpts:
            if source_video is None:
                raise EmotionVideoError(
                    f"emotion_ckpt: {vid} has no video (give video=<mp4>, "
                    f"put {vid}.mp4 beside its table, or give "
                    "online.annotate_video)"
                )
            clips = emotion_clips(
                segments, len(table), int(cfg.emotion.window), int(cfg.emotion.min_length)
            )
            record["emotion"] = predict_emotion(
                emotion_ckpts,
                vid,
                table_path,
                Path(str(source_video)),
                clips,
                r["img_shape"],
                out_dir / "emotion" / vid,
                cfg.trainer,
                checkpoint_loading(cfg),
            )
            emo = record["emotion"]
            n = int(emo["clips"])
            caption = (
                f"emotion: {emo['answer']} (p win {emo['p_win']:.2f}, {n} "
                f"clip{'s' if n != 1 else ''})"
            )
            atomic_write_json(out_dir / f"{vid}_prediction.json", record)
            print(f"{vid}: {caption}")
        if on.get("timeline", True):
            from migalab.reports import timeline_png

            title = f"{vid}: {caption}" if caption else vid
            timeline_png(
                out_dir / f"{vid}_timeline.png",
                segments,
                len(table),
                class_names,
                truth=r["truth"],
                frame_probs=frames,
                title=title,
                no_person=r["nobody"],
            )
        if on.get("annotate") and source_video:
            from migalab.reports import annotated_video

            path = annotated_video(
                source_video,
                table,
                segments,
                out_dir / f"{vid}_annotated.mp4",
                class_names,
                caption=caption,
                keypoint_shape=r["img_shape"],
            )
            record["annotated"] = str(path)
            atomic_write_json(out_dir / f"{vid}_prediction.json", record)
        if on.get("report", True):
            from migalab.online_report import probability_track_png, video_report

            track = probability_track_png(
                out_dir / f"{vid}_probabilities.png",
                frames,
                class_names,
                r["actionness"],
                title=vid,
            )
            timeline = out_dir / f"{vid}_timeline.png"
            pages[vid] = video_report(
                out_dir / f"{vid}_report.html",
                record,
                timeline if timeline.is_file() else None,
                track,
                fps=r["meta"].get("fps"),
            )
        results[vid] = record
        print(
            f"{vid}: {len(segments)} segments in {len(table)} frames ({r['windows']} windows, "
            f"{record['frames_per_s']:.0f} frames/s): {csv_path}"
        )
    summary: dict[str, Any] = {
        "videos": {
            v: {k: r[k] for k in ("frames", "windows", "frames_per_s")}
            | {"segments": len(r["segments"])}
            for v, r in results.items()
        },
        "settings": settings,
    }
    if fit is not None:
        summary["fit"] = fit
    if pages:
        from migalab.online_report import run_report

        labelled = all(r["truth"] is not None for r in scored.values())
        truths = {v: r["truth"] for v, r in scored.items()} if labelled else None
        report = run_report(
            out_dir / "report.html", results, pages, truths, class_names, iou=float(on.fit_iou)
        )
        summary["report"] = str(report)
        print(f"report: {report}")
    atomic_write_json(out_dir / "online.json", summary)
    return summary


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score, fuse and write the submission files; returns a summary dict. With ``skeleton=``
    or ``video=``: online recognition of whole sequences instead (:func:`predict_online`)."""
    if cfg.get("skeleton") or cfg.get("video"):
        return predict_online(cfg)
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = cfg.ckpt_path
    ckpts = [str(c) for c in ckpts] if isinstance(ckpts, ListConfig | list) else [str(ckpts)]
    split = str(cfg.split)
    fusion = cfg.fusion
    splits = [split]
    if len(ckpts) > 1 and fusion.get("search", False):
        splits.insert(0, fusion.get("search_split", "val"))
    entries = score_checkpoints(
        ckpts,
        splits,
        cfg.trainer,
        require_labels=False,
        target="gesture",
        **checkpoint_loading(cfg),
    )
    if any(split not in e.splits for e in entries):
        raise ValueError(f"split {split} is missing or empty; nothing to predict")
    weights: list[float] | None = None
    fusion_info: dict[str, Any] | None = None
    if len(entries) > 1:
        weights, fusion_info = resolve_fusion_weights(fusion, entries)
        check_same_clips(entries, split)
        atomic_write_json(Path(cfg.paths.output_dir) / "fusion.json", fusion_info)
    temps = fusion_info.get("temperatures") if fusion_info else None
    scores = fuse_scores([e.splits[split].logits for e in entries], weights, fusion.space, temps)
    probs = fused_probabilities(scores, fusion.space)
    conf, preds = probs.max(-1)
    names = entries[0].splits[split].names
    labels = entries[0].splits[split].labels
    out_dir = Path(cfg.paths.output_dir)
    csv_path, zip_path = write_submission(
        out_dir, names, preds.tolist(), cfg.submission.label_format, entries[0].dataset
    )
    class_names = entries[0].class_names
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["name", "pred", "pred_name", "prob", "label"])
    for name, p, c, y in zip(names, preds.tolist(), conf.tolist(), labels.tolist(), strict=True):
        writer.writerow([name, p, class_names[p] if class_names else "", f"{c:.5f}", y])
    atomic_write_text(out_dir / "predictions.csv", rows.getvalue())
    summary: dict[str, Any] = {
        "split": split,
        "clips": len(names),
        "submission": str(csv_path),
        "zip": str(zip_path),
        "fusion": fusion_info,
    }
    known = labels >= 0
    if bool(known.any()):
        summary["top1_known_labels"] = float((preds[known] == labels[known]).float().mean())
    log.info("wrote %s (%d clips) and %s", csv_path, len(names), zip_path)
    print(f"submission: {zip_path} ({len(names)} clips of split {split})")
    return summary


def _task(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    predict(cfg)


if __name__ == "__main__":  # python -m migalab.predict: the console script's entry
    from migalab.cli import predict as console_entry

    console_entry()
