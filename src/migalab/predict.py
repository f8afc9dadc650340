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
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, ListConfig

from migalab.data.specs import DatasetSpec, get_dataset
from migalab.ensemble import (
    check_same_clips,
    fuse_scores,
    fused_probabilities,
    resolve_fusion_weights,
    score_checkpoints,
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


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Score, fuse and write the submission files; returns a summary dict."""
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = cfg.ckpt_path
    ckpts = [str(c) for c in ckpts] if isinstance(ckpts, ListConfig | list) else [str(ckpts)]
    split = str(cfg.split)
    fusion = cfg.fusion
    splits = [split]
    if len(ckpts) > 1 and fusion.get("search", False):
        splits.insert(0, fusion.get("search_split", "val"))
    entries = score_checkpoints(ckpts, splits, cfg.trainer, cfg.get("data"), require_labels=False,
                                unsafe_unpickle=bool(cfg.get("unsafe_unpickle_checkpoints")),
                                target="gesture")  # fmt: skip
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


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
def _main(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    predict(cfg)


def main() -> None:
    """Console entry point: register resolvers, then hand over to Hydra."""
    register_resolvers()
    _main()


if __name__ == "__main__":
    main()
