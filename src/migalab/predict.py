"""Prediction entry point (console script ``migalab-predict``): a MiGA submission file.

    migalab-predict ckpt_path=joint.ckpt
    migalab-predict ckpt_path='[joint.ckpt,limb.ckpt]' fusion.search=true
    migalab-predict ckpt_path='[joint.ckpt,limb.ckpt]' fusion.from=<eval run>/fusion.json

Scores the ``split`` clips (test by default; their labels may be hidden) with every checkpoint
(model and data rebuilt from the config stored in it, as ``migalab-eval`` does), fuses the
scores (weights given, read from an evaluation's ``fusion.json``, or searched on the validation
split; :mod:`migalab.ensemble`), and writes into the run dir:

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
import torch
from omegaconf import DictConfig, ListConfig
from torch.utils.data import DataLoader

from migalab.data.formats.miga2025 import read_openpose_table
from migalab.data.formats.sequence_files import skeleton_tables, video_paths
from migalab.data.specs import DatasetSpec, get_dataset
from migalab.ensemble import (
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
from migalab.errors import report_user_errors, run_hydra_app
from migalab.online import (
    SequenceWindows,
    frame_probabilities,
    read_segments,
    segment_rows,
    segments_from_frames,
    write_segments,
)
from migalab.utils.hydra import register_resolvers, save_resolved_config
from migalab.utils.io import atomic_write, atomic_write_json, atomic_write_text
from migalab.utils.paths import CONFIG_PATH

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
    (:mod:`migalab.pose`), and the video each extracted table came from. Each of the two takes
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
        paths += skeleton_tables(item, "skeleton")
    return paths, sources


def _items(value: Any) -> list[str]:
    """A config value that is one path, a list of them, or null, as a list of strings."""
    if isinstance(value, ListConfig | list):
        return [str(v) for v in value]
    return [str(value)] if value else []


def _video_id(table: Path) -> str:
    return table.stem.removesuffix("_openpose").removesuffix("_light_hand")


def predict_online(cfg: DictConfig) -> dict[str, Any]:
    """Online recognition of whole sequences (``skeleton=`` / ``video=``): sliding windows,
    merged segments, ``<vid>_prediction.csv`` / ``.json`` (and a timeline PNG) in the run dir."""
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = cfg.ckpt_path
    ckpts = [str(c) for c in ckpts] if isinstance(ckpts, ListConfig | list) else [str(ckpts)]
    on = cfg.online
    tables, videos_by_table = _sequence_inputs(cfg)
    seen: dict[str, Path] = {}
    for table_path in tables:  # each video's outputs are named by its id: one table per id
        other = seen.setdefault(_video_id(table_path), table_path)
        if other != table_path:
            raise ValueError(f"two tables of video {_video_id(table_path)!r}: {other} and "
                             f"{table_path} (their outputs would overwrite each other)")  # fmt: skip
    out_dir = Path(cfg.paths.output_dir)
    models = []
    for ckpt in ckpts:
        train_cfg, state = load_checkpoint_config(ckpt, **checkpoint_loading(cfg))
        require_skeleton_gesture(train_cfg, ckpt, "online recognition")
        model = model_from_checkpoint(train_cfg, state)
        models.append((ckpt, model, hydra.utils.instantiate(train_cfg.data), train_cfg))
    trainer = predict_trainer(cfg.trainer)
    class_names = list(models[0][3].model.get("class_names") or []) or None
    results: dict[str, Any] = {}
    for table_path in tables:
        vid = _video_id(table_path)
        raw = read_openpose_table(table_path)
        table = raw.reshape(len(raw), -1, 3)
        start_time = time.perf_counter()
        probs = None
        meta_path = table_path.with_suffix(".json")  # migalab-pose's: the video's frame size
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        for _, model, dm, _ in models:
            if on.get("img_shape"):
                img_shape = tuple(on.img_shape)
            elif meta.get("height") and meta.get("width"):
                img_shape = (int(meta["height"]), int(meta["width"]))
            else:
                img_shape = tuple(dm.img_shape)
            windows = SequenceWindows(table, vid, int(on.window), int(on.stride),
                                      dm.pipeline(train=False, key="test"), img_shape,
                                      layout=dm.layout)  # fmt: skip
            outputs = trainer.predict(
                model, datamodule=_WindowsData(dm, windows, int(on.batch_size))
            )
            logits = torch.cat([o["logits"] for o in outputs]).float()
            p = logits.softmax(-1)
            probs = p if probs is None else probs + p
        probs = probs / len(models)
        frames = frame_probabilities(probs, windows.starts, int(on.window), len(table))
        frames[~(table[..., 2] > 0).any(axis=1)] = 0.0  # no one in the frame: background
        segments = segments_from_frames(frames, float(on.threshold), int(on.min_length))
        elapsed = time.perf_counter() - start_time
        csv_path = write_segments(out_dir / f"{vid}_prediction.csv", segments)
        record = {"video_id": vid, "table": str(table_path), "frames": len(table),
                  "windows": len(windows), "seconds": round(elapsed, 3),
                  "frames_per_s": round(len(table) / max(elapsed, 1e-9), 1),
                  "window": int(on.window), "stride": int(on.stride),
                  "threshold": float(on.threshold), "min_length": int(on.min_length),
                  "checkpoints": ckpts, "segments": segment_rows(segments, class_names)}  # fmt: skip
        atomic_write_json(out_dir / f"{vid}_prediction.json", record)
        if on.get("timeline", True):
            from migalab.reports import timeline_png

            labels = table_path.with_name(f"{vid}_label.csv")
            truth = read_segments(labels) if labels.is_file() else None
            timeline_png(out_dir / f"{vid}_timeline.png", segments, len(table), class_names,
                         truth=truth, frame_probs=frames, title=vid)  # fmt: skip
        source_video = videos_by_table.get(table_path) or (on.get("annotate_video") or None)
        if on.get("annotate") and source_video:
            from migalab.reports import annotated_video

            path = annotated_video(source_video, table, segments, out_dir / f"{vid}_annotated.mp4",
                                   class_names)  # fmt: skip
            record["annotated"] = str(path)
            atomic_write_json(out_dir / f"{vid}_prediction.json", record)
        results[vid] = record
        print(f"{vid}: {len(segments)} segments in {len(table)} frames ({len(windows)} windows, "
              f"{record['frames_per_s']:.0f} frames/s): {csv_path}")  # fmt: skip
    summary = {"videos": {v: {k: r[k] for k in ("frames", "windows", "frames_per_s")}
                          | {"segments": len(r["segments"])} for v, r in results.items()}}  # fmt: skip
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
    entries = score_checkpoints(ckpts, splits, cfg.trainer, require_labels=False,
                                target="gesture", **checkpoint_loading(cfg))  # fmt: skip
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
    csv_path, zip_path = write_submission(out_dir, names, preds.tolist(),
                                          cfg.submission.label_format, entries[0].dataset)  # fmt: skip
    class_names = entries[0].class_names
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["name", "pred", "pred_name", "prob", "label"])
    for name, p, c, y in zip(names, preds.tolist(), conf.tolist(), labels.tolist(), strict=True):
        writer.writerow([name, p, class_names[p] if class_names else "", f"{c:.5f}", y])
    atomic_write_text(out_dir / "predictions.csv", rows.getvalue())
    summary: dict[str, Any] = {"split": split, "clips": len(names), "submission": str(csv_path),
                               "zip": str(zip_path), "fusion": fusion_info}  # fmt: skip
    known = labels >= 0
    if bool(known.any()):
        summary["top1_known_labels"] = float((preds[known] == labels[known]).float().mean())
    log.info("wrote %s (%d clips) and %s", csv_path, len(names), zip_path)
    print(f"submission: {zip_path} ({len(names)} clips of split {split})")
    return summary


@report_user_errors
def _task(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    predict(cfg)


_main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")(_task)


def main() -> None:
    """Console entry point: register resolvers, then hand over to Hydra (user errors: one line,
    exit status 2; see :mod:`migalab.errors`)."""
    register_resolvers()
    run_hydra_app(_main, _task)


if __name__ == "__main__":
    main()
