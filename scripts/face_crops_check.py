#!/usr/bin/env python
"""Does the synthetic release's win/lose behaviour show in the face crops? (issue 12, item 7)

    python scripts/face_crops_check.py --videos 12 --clips 4 --scale 0.5 --out face_check

1. Generates a small synthetic release with rendered videos (``data=synthetic_video``-like; the
   generator's ``emotion_effect``: losers slump, pitch the head down and smile a quarter as
   often) and its skeleton cache, under ``--workdir`` (reused when current).
2. Prepares every clip's face crops exactly as ``data.modalities=[face, ...]`` does
   (:func:`~migalab.data.representations.multimodal.build_face_jobs` + ``prepare_clips``, 112 px).
3. Writes ``<out>/face_crops_grid.png``: one row per video (won first), the middle frame of
   each of its clips, then the mean won crop, the mean lost crop and their difference (x4).
4. Prints and writes (``<out>/face_crops_check.json``) per-video numbers, won vs lost:

   * keypoints (the table, frames with >= 10 face landmarks): ``smile`` = inner mouth-corner lift
     (mean y of the inner lip centres 62, 66 - mean y of the inner corners 60, 64) /
     inter-ocular distance (jaw opening moves both alike, so talking cancels), ``pitch`` = (nose-tip y - eye y)
     / inter-ocular distance, ``face_y`` = face-box centre height / frame height; across
     videos (AUC won > lost, Cohen's d) and within subjects (a subject's won-video mean minus
     its lost-video mean, for subjects with both: the subject's own face and build cancel);
   * pixels (the crops): a leave-one-subject-out logistic-regression probe on 28x28 grey crops
     (mean over each clip's frames), video score = mean clip probability; its video accuracy
     and AUC, and the same probe on the lower (mouth) half of the crops. Grouping by subject
     matters: subjects have won and lost videos, so a leave-one-video-out probe learns
     identities and scores below chance.

With a dozen or two videos these numbers are noisy (an AUC of 1.0 with 6 + 6 videos has
p ~ 0.001 under chance).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a random positive > a random negative), ties 1/2."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def _cohen_d(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.sqrt((a.var(ddof=1) * (len(a) - 1) + b.var(ddof=1) * (len(b) - 1))
                     / max(len(a) + len(b) - 2, 1))  # fmt: skip
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def _release(args: argparse.Namespace) -> Path:
    from migalab.data.prepare import is_cache_current, prepare_release
    from migalab.synthetic import SynthConfig, generate_release, release_is_current

    cfg = SynthConfig(seed=args.seed, num_videos={"train": args.videos, "validate": 0, "test": 0},
                      clips_per_video=(args.clips, args.clips), table_format="csv", video=True,
                      video_scale=args.scale, emotion_effect=args.emotion_effect,
                      workers=args.workers)  # fmt: skip
    release, cache = args.workdir / "release", args.workdir / "cache"
    if not release_is_current(release, cfg):
        generate_release(release, cfg, progress=True)
    if not is_cache_current(release, cache):
        prepare_release(release, cache, splits=("train",), progress=False)
    return cache


def _keypoint_measures(record, track) -> dict[str, float]:
    """Per-clip means over frames with enough face landmarks (see the module docstring)."""
    kp, sc = record.keypoint[0], record.keypoint_score[0]  # (T, 137, 2), (T, 137)
    f = 25  # face offset: OpenPose index = 25 + iBUG index
    ok = (sc[:, f : f + 70] > 0.3).sum(1) >= 10
    ok &= (sc[:, [f + 36, f + 45, f + 60, f + 64, f + 62, f + 66, f + 30]] > 0.3).all(1)
    if not ok.any():
        return {}
    k = kp[ok]
    iod = np.linalg.norm(k[:, f + 45] - k[:, f + 36], axis=-1)
    corners_y = (k[:, f + 60, 1] + k[:, f + 64, 1]) / 2
    mid_y = (k[:, f + 62, 1] + k[:, f + 66, 1]) / 2
    eyes_y = k[:, f + 36 : f + 48, 1].mean(1)
    boxes = track.boxes[ok]
    return {
        "smile": float(np.mean((mid_y - corners_y) / iod)),
        "pitch": float(np.mean((k[:, f + 30, 1] - eyes_y) / iod)),
        "face_y": float(np.mean((boxes[:, 1] + boxes[:, 3]) / 2) / record.img_shape[0]),
        "iod_px": float(np.mean(iod)),
    }


def _probe(
    features: np.ndarray, videos: np.ndarray, groups: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Leave-one-group-out logistic regression on clip features; per-video mean probability."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scores, truth = [], []
    for g in np.unique(groups):
        train = groups != g
        if len(np.unique(labels[train])) < 2:
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
        clf.fit(features[train], labels[train])
        for v in np.unique(videos[groups == g]):
            test = videos == v
            scores.append(float(clf.predict_proba(features[test])[:, 1].mean()))
            truth.append(int(labels[test][0]))
    s, t = np.array(scores), np.array(truth)
    return {"video_accuracy": float(((s > 0.5) == t).mean()), "auc": _auc(s[t == 1], s[t == 0]),
            "videos": len(t)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=12, help="videos (half won, half lost)")
    p.add_argument("--clips", type=int, default=4, help="clips per video")
    p.add_argument("--scale", type=float, default=0.5, help="video size: 1.0 = 1280x720")
    p.add_argument("--emotion-effect", type=float, default=1.0)
    p.add_argument("--size", type=int, default=112, help="face crop side")
    p.add_argument("--frames", type=int, default=8, help="frames read per clip (uniform)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("face_check_data"))
    p.add_argument("--out", type=Path, default=Path("face_check"))
    args = p.parse_args(argv)

    from migalab.data.cache import SkeletonCache
    from migalab.data.representations.multimodal import (
        FaceOptions,
        build_face_jobs,
        clip_face_track,
    )
    from migalab.data.skeleton.transforms import uniform_frame_indices
    from migalab.data.video.prepared_clips import PreparedClips, clips_are_current, prepare_clips

    cache = SkeletonCache(_release(args))
    meta = json.loads((args.workdir / "release" / "synth_meta.json").read_text())
    subject = {v["video_id"]: int(v["subject"]) for v in meta["videos"]}
    opts = FaceOptions(size=args.size)
    jobs, problems = build_face_jobs(cache, ["train"], opts)
    face_dir = args.workdir / f"face_clips_{args.size}"
    if not clips_are_current(face_dir, jobs, args.size, opts.prepared_gop, opts.prepared_crf):
        prepare_clips(jobs, face_dir, size=args.size, progress=True)
    clips = PreparedClips(face_dir)

    per_video: dict[str, dict] = {}
    feats, feats_mouth, vids, labels = [], [], [], []
    for i in range(len(cache)):
        rec = cache.load_clip(i)
        if not clips.has(rec.name) or rec.emotion is None:
            continue
        v = per_video.setdefault(rec.video_id, {"emotion": rec.emotion, "mid": [], "kp": []})
        off = uniform_frame_indices(clips.num_frames(rec.name), args.frames)
        frames = clips.read(rec.name, off)  # (F, S, S, 3) uint8
        v["mid"].append(frames[len(frames) // 2])
        v["kp"].append(_keypoint_measures(rec, clip_face_track(rec, opts)))
        grey = np.asarray(
            [np.asarray(Image.fromarray(f).convert("L").resize((28, 28), Image.BILINEAR))
             for f in frames], dtype=np.float32,
        ).mean(0)  # fmt: skip
        feats.append(grey.reshape(-1))
        feats_mouth.append(grey[14:].reshape(-1))
        vids.append(rec.video_id)
        labels.append(rec.emotion)
    vids_a, labels_a = np.array(vids), np.array(labels)
    subj_a = np.array([subject[v] for v in vids])

    # -- the grid --------------------------------------------------------------------------
    s = args.size
    order = sorted(per_video, key=lambda k: (-per_video[k]["emotion"], k))
    ncol = max(len(per_video[k]["mid"]) for k in order)
    label_w = 90
    grid = Image.new("RGB", (label_w + s * (ncol + 3), s * len(order) + 20), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    won = np.mean([f for k in order if per_video[k]["emotion"] == 1
                   for f in per_video[k]["mid"]], 0)  # fmt: skip
    lost = np.mean([f for k in order if per_video[k]["emotion"] == 0
                    for f in per_video[k]["mid"]], 0)  # fmt: skip
    diff = np.clip(np.abs(won - lost) * 4, 0, 255)
    for r, k in enumerate(order):
        y = 20 + r * s
        draw.text((4, y + s // 2 - 6), f"{'WON ' if per_video[k]['emotion'] else 'LOST'} {k}",
                  fill=(0, 0, 0))  # fmt: skip
        for c, f in enumerate(per_video[k]["mid"]):
            grid.paste(Image.fromarray(f), (label_w + c * s, y))
    for c, (img, name) in enumerate(((won, "mean won"), (lost, "mean lost"),
                                     (diff, "|won-lost| x4"))):  # fmt: skip
        x = label_w + (ncol + c) * s
        draw.text((x + 4, 4), name, fill=(0, 0, 0))
        grid.paste(Image.fromarray(img.astype(np.uint8)), (x, 20))
    args.out.mkdir(parents=True, exist_ok=True)
    grid.save(args.out / "face_crops_grid.png")

    # -- numbers ---------------------------------------------------------------------------
    rows = {}
    for k in order:
        kps = [m for m in per_video[k]["kp"] if m]
        rows[k] = {"emotion": "won" if per_video[k]["emotion"] else "lost", "subject": subject[k],
                   **{n: float(np.mean([m[n] for m in kps])) for n in ("smile", "pitch", "face_y")}}  # fmt: skip
    measures = {}
    box_px = float(np.mean([np.mean(j.boxes[:, 2] - j.boxes[:, 0]) for j in jobs]))
    iod_px = float(np.mean([m["iod_px"] for v in per_video.values() for m in v["kp"] if m]))
    for n in ("smile", "pitch", "face_y"):
        w = np.array([r[n] for r in rows.values() if r["emotion"] == "won"])
        lo = np.array([r[n] for r in rows.values() if r["emotion"] == "lost"])
        measures[n] = {"won_mean": float(w.mean()), "lost_mean": float(lo.mean()),
                       "auc_won_gt_lost": _auc(w, lo), "cohen_d": _cohen_d(w, lo)}  # fmt: skip
        diffs = []
        for sid in sorted({r["subject"] for r in rows.values()}):
            mine = [r for r in rows.values() if r["subject"] == sid]
            sw = [r[n] for r in mine if r["emotion"] == "won"]
            sl = [r[n] for r in mine if r["emotion"] == "lost"]
            if sw and sl:
                diffs.append(float(np.mean(sw) - np.mean(sl)))
        measures[n]["within_subject_won_minus_lost"] = diffs
    probe = {"whole crop": _probe(np.array(feats), vids_a, subj_a, labels_a),
             "mouth half": _probe(np.array(feats_mouth), vids_a, subj_a, labels_a),
             "whole crop, leave-one-video-out": _probe(np.array(feats), vids_a, vids_a,
                                                       labels_a)}  # fmt: skip
    result = {"videos": rows, "iod_px_keypoints": iod_px, "iod_px_video": iod_px * args.scale,
              "face_box_video_px": box_px, "keypoint_measures": measures, "pixel_probe": probe,
              "clips": len(vids), "problems": problems, "config": {
                  k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}  # fmt: skip
    (args.out / "face_crops_check.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, r in rows.items():
        print(f"{k} subject {r['subject']:2d} {r['emotion']:4s} smile {r['smile']:+.3f} pitch {r['pitch']:+.3f} "
              f"face_y {r['face_y']:.3f}")  # fmt: skip
    for n, m in measures.items():
        print(f"{n:7s} won {m['won_mean']:+.3f} lost {m['lost_mean']:+.3f} "
              f"AUC(won>lost) {m['auc_won_gt_lost']:.2f} d {m['cohen_d']:+.2f}; within subject "
              f"won-lost {np.round(m['within_subject_won_minus_lost'], 3).tolist()}")  # fmt: skip
    for n, m in probe.items():
        print(f"pixel probe ({n}): video accuracy {m['video_accuracy']:.2f}, AUC {m['auc']:.2f} "
              f"({m['videos']} videos)")  # fmt: skip
    print(f"inter-ocular distance {iod_px:.1f} px in the keypoints, {iod_px * args.scale:.1f} px "
          f"in the video; face box {box_px:.1f} video px -> {args.size} crop px "
          f"({args.size / box_px:.1f}x upsampled)")  # fmt: skip
    print(f"grid: {args.out / 'face_crops_grid.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
