#!/usr/bin/env python
"""Is the win / lose outcome in the posture? A linear probe on the skeleton cache, no video.

    python scripts/emotion_posture_probe.py data/synthetic_imigue_emotion/cache
    python scripts/emotion_posture_probe.py <cache> --input-size 64 --out probe.json

What it is for: when a context stream (person crops) stays at chance, this tells a missing cue
from a model that cannot find it. Per video, from the body keypoints of a ``migalab-prepare``
cache (OpenPose-137 or BODY_25 order: nose 0, neck 1, shoulders 2 / 5, eyes 15 / 16; frames
where one of them is missing are left out), five posture features, each divided by the
shoulder width (so the camera distance cancels) and summarised by their mean and standard
deviation over the video:

- head drop: neck y - nose y (a head pitched down and lowered shortens it)
- head pitch: nose y - mean eye y
- head sideways: nose x - neck x
- lean toward the camera: shoulder width / eye distance
- shoulders: mean shoulder y - neck y

A logistic regression (L2, LBFGS; written here: 10 features and 96 videos need no library) is
fitted on the train videos and scored per video on validate / test: accuracy, AUROC and their
95 % bootstrap intervals (:func:`migalab.scoring.emotion.bootstrap_ci`), beside each feature's
own test AUROC (either sign). ``--input-size`` also reports the head-drop cue in pixels of a
context model's input: the video's person box of the body keypoints (margin 0.15, square)
resized to that size, an approximation of the per-clip boxes the person crops are cut with.
Writes JSON to stdout or ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from migalab.data.cache import INDEX_FILE, SkeletonCache
from migalab.data.video.transforms import person_box
from migalab.scoring.emotion import bootstrap_ci

FEATURES = ["head drop", "head pitch", "head sideways", "lean toward camera", "shoulders"]
NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE = 0, 1, 2, 5, 15, 16


def video_features(array: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(10,) posture features of one video's (T, V, 3) keypoints (x, y, confidence; V >= 17),
    and its head drop in keypoint pixels; None when no frame has all the joints used."""
    kp = array[:, :, :2].astype(np.float64)
    ok = (array[:, [NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE], 2] > 0).all(axis=1)
    if not ok.any():
        return None
    kp = kp[ok]
    width = np.linalg.norm(kp[:, R_SHOULDER] - kp[:, L_SHOULDER], axis=1)
    eyes = np.abs(kp[:, R_EYE, 0] - kp[:, L_EYE, 0])
    if (width <= 0).any() or (eyes <= 0).any():
        return None
    drop = kp[:, NECK, 1] - kp[:, NOSE, 1]
    per_frame = np.stack(
        [
            drop / width,
            (kp[:, NOSE, 1] - (kp[:, R_EYE, 1] + kp[:, L_EYE, 1]) / 2) / width,
            (kp[:, NOSE, 0] - kp[:, NECK, 0]) / width,
            width / eyes,
            ((kp[:, R_SHOULDER, 1] + kp[:, L_SHOULDER, 1]) / 2 - kp[:, NECK, 1]) / width,
        ],
        axis=1,
    )
    return np.concatenate([per_frame.mean(axis=0), per_frame.std(axis=0)]), float(drop.mean())


def load_videos(root: Path, input_size: int) -> dict[str, dict[str, list[Any]]]:
    """Per split: features, labels (win 1) and the head drop in input pixels of each video of
    the cache (read by :class:`~migalab.data.cache.SkeletonCache`: its meta and format checked)."""
    try:
        cache = SkeletonCache(root)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    index = cache.index
    missing = {"split", "video_id", "file", "emotion"} - set(index.columns)
    if missing:
        raise SystemExit(f"error: {root / INDEX_FILE}: no {', '.join(sorted(missing))} column")
    shape = [c for c in ("height", "width") if c in index.columns]
    videos = index.drop_duplicates(["split", "video_id"]).sort_values(["split", "video_id"])
    out: dict[str, dict[str, list[Any]]] = {}
    for r in videos.itertuples(index=False):
        array = np.asarray(cache.video_array(r.file))
        got = video_features(array)
        if got is None:
            continue
        feats, drop = got
        img_shape = tuple(int(getattr(r, c)) for c in shape) if len(shape) == 2 else (0, 0)
        box = person_box(array[None, :, :25, :2], array[None, :, :25, 2], img_shape)
        split_out = out.setdefault(r.split, {"x": [], "y": [], "drop_px": []})
        split_out["x"].append(feats)
        split_out["y"].append(int(r.emotion))
        split_out["drop_px"].append(drop * input_size / (box[2] - box[0]))
    return out


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of an L2 logistic regression of ``y`` (N,) on standardised ``x`` (N, F)."""
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros(1, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        loss = loss + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe(cache: Path, input_size: int = 64, l2: float = 0.01) -> dict[str, Any]:
    data = load_videos(cache, input_size)
    if "train" not in data or len(set(data["train"]["y"])) < 2:
        raise SystemExit(f"error: {cache}: the train split needs won and lost videos")
    x = {s: torch.tensor(np.array(d["x"])) for s, d in data.items()}
    y = {s: torch.tensor(d["y"], dtype=torch.float64) for s, d in data.items()}
    mu, sd = x["train"].mean(0), x["train"].std(0).clamp_min(1e-9)
    w, b = fit_logistic((x["train"] - mu) / sd, y["train"], l2)
    result: dict[str, Any] = {"l2": l2, "splits": {}}
    for split in data:
        prob = torch.sigmoid((x[split] - mu) / sd @ w + b).float()
        labels = y[split].long()
        entry: dict[str, Any] = {
            "videos": len(labels),
            "acc": round(float(((prob > 0.5).long() == labels).float().mean()), 4),
        }
        if len(set(labels.tolist())) == 2:
            entry["auroc"] = round(float(binary_auroc(prob, labels)), 4)
            entry["ci95"] = bootstrap_ci(prob, labels)
            single = {}
            for i, name in enumerate(FEATURES):
                a = float(binary_auroc(x[split][:, i].float(), labels))
                single[name] = round(max(a, 1.0 - a), 4)
            entry["single feature auroc"] = single
        result["splits"][split] = entry
    drops = {0: [], 1: []}
    for d in data.values():
        for label, px in zip(d["y"], d["drop_px"], strict=True):
            drops[label].append(px)
    result[f"head drop in {input_size}-px input"] = {
        name: {"mean": round(float(np.mean(v)), 2), "sd": round(float(np.std(v)), 2)}
        for name, v in (("lose", drops[0]), ("win", drops[1]))
        if v
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path, help="skeleton cache folder (holds index.csv)")
    parser.add_argument("--input-size", type=int, default=64, help="context input side (px)")
    parser.add_argument("--l2", type=float, default=0.01, help="L2 weight of the regression")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: stdout)")
    args = parser.parse_args(argv)
    text = json.dumps(probe(args.cache, args.input_size, args.l2), indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
