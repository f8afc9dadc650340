#!/usr/bin/env python
"""The emotion track on the synthetic iMiGUE (data=synthetic_emotion_full, the full-size
stand-in: 96 / 32 / 96 videos; the experiments default to the quick data=synthetic_emotion):
majority, face-only, context-only, late fusion and InterFusion, same data and epochs, several
training seeds.

    python scripts/emotion_table.py                           # 2 seeds, ~1.5 h on 2 CPU cores
    python scripts/emotion_table.py --seeds 0 trainer.max_epochs=3   # extra Hydra overrides

Rows, per training seed (the data are the same for every seed: data.synthetic.seed stays 0):

1. majority: the training split's more frequent outcome for every test video (AUROC 0.5)
2. face only: SwinFace (CPU size) on the face crops (experiment=emotion_face_synth)
3. context only: FrameStack2D (timm resnet10t over the stacked frames) on the person crops
   (emotion_context_synth)
4. late fusion of 2 + 3 per video, weights searched on val (``migalab-eval
   ckpt_path=[face,context] fusion.search=true``)
5. InterFusion: both streams joined by cross-attention, trained end to end
   (system_b_emotion_synth)

Metrics are per test video (clip logits averaged per video, each checkpoint's own
aggregation): accuracy, macro-F1 and AUROC, with a 95 % bootstrap interval over the test videos
(:func:`migalab.scoring.emotion.bootstrap_ci`), and for InterFusion a paired bootstrap of its
difference to each other row on the same videos (:func:`paired_bootstrap_diff`; ``p`` is the
share of resamples where InterFusion is not ahead). Means over seeds close the table.

Each run trains with ``migalab-train`` in its own folder under ``--out`` (runs already done are
reused: delete a folder to re-run it). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from statistics import mean
from typing import Any

import torch

from migalab.scoring.emotion import bootstrap_ci, paired_bootstrap_diff
from migalab.tasks.emotion import binary_video_metrics
from run_helpers import path_overrides, run, slug, train_once

TRAINED: list[tuple[str, str]] = [
    ("face only (SwinFace)", "emotion_face_synth"),
    ("context only (FrameStack2D)", "emotion_context_synth"),
    ("InterFusion (System B)", "system_b_emotion_synth"),
]
#: every training run reads the full-size stand-in (the table in docs/emotion.md)
DATA = "data=synthetic_emotion_full"
MAJORITY, LATE, INTER = "majority", "late fusion face+context (val-searched)", TRAINED[2][0]
ORDER = [MAJORITY, TRAINED[0][0], TRAINED[1][0], LATE, INTER]


def read_predictions(path: Path) -> dict[str, tuple[float, int]]:
    """``video_id -> (prob_win, label)`` of a ``video_predictions*.csv``."""
    with path.open(newline="") as f:
        return {r["video_id"]: (float(r["prob_win"]), int(r["label"])) for r in csv.DictReader(f)}


def train(name: str, experiment: str, seed: int, out: Path, overrides: list[str]) -> Path:
    """Train one row (or reuse its finished run); returns its run dir."""
    run_dir = out / f"seed{seed}" / slug(name)
    train_once("migalab.train", f"seed {seed} {name}", run_dir,
               [f"experiment={experiment}", DATA, f"seed={seed}", *overrides])  # fmt: skip
    return run_dir


def late_fusion(face: Path, context: Path, seed: int, out: Path, overrides: list[str]) -> Path:
    """``migalab-eval`` of the face and context checkpoints fused per video, weights searched
    on val; returns its run dir."""
    run_dir = out / f"seed{seed}" / slug(LATE)
    if not (run_dir / "metrics.json").is_file():
        ckpts = [json.loads((d / "metrics.json").read_text())["ckpt_path"] for d in (face, context)]
        cmd = [sys.executable, "-m", "migalab.eval", f"ckpt_path=[{','.join(ckpts)}]",
               "fusion.search=true", f"hydra.run.dir={run_dir}",
               *path_overrides(overrides)]  # fmt: skip
        print(f"[seed {seed}] {LATE}: evaluating", flush=True)
        run(cmd, run_dir / "stdout.log")
    return run_dir


def row_scores(preds: dict[str, tuple[float, int]], videos: list[str]) -> dict[str, Any]:
    prob = torch.tensor([preds[v][0] for v in videos])
    labels = torch.tensor([preds[v][1] for v in videos])
    m = binary_video_metrics(prob, labels)
    return {**{k: round(m[k], 4) for k in ("acc", "macro_f1", "auroc")},
            "ci95": bootstrap_ci(prob, labels), "prob": prob, "labels": labels}  # fmt: skip


def one_seed(seed: int, out: Path, overrides: list[str]) -> list[dict[str, Any]]:
    dirs = {name: train(name, exp, seed, out, overrides) for name, exp in TRAINED}
    dirs[LATE] = late_fusion(dirs[TRAINED[0][0]], dirs[TRAINED[1][0]], seed, out, overrides)
    preds = {n: read_predictions(d / "video_predictions.csv") for n, d in dirs.items() if n != LATE}
    preds[LATE] = read_predictions(dirs[LATE] / "video_predictions_test.csv")
    videos = sorted(preds[INTER])
    for name, p in preds.items():
        if sorted(p) != videos:
            raise RuntimeError(f"{name} scored other test videos than {INTER}")
    payload = json.loads((dirs[INTER] / "metrics.json").read_text())
    train_balance = payload["balance"]["train"]
    win_majority = train_balance["videos_win"] >= train_balance["videos_lose"]
    labels = {v: preds[INTER][v][1] for v in videos}
    preds[MAJORITY] = {v: (1.0 if win_majority else 0.0, labels[v]) for v in videos}
    rows = []
    for name in ORDER:
        r = {"seed": seed, "row": name, **row_scores(preds[name], videos)}
        if name in dirs and name != LATE:
            metrics = json.loads((dirs[name] / "metrics.json").read_text())
            r["train_time_s"] = metrics.get("wall_time_s")
            r["epochs"] = metrics.get("epochs")
        rows.append(r)
    inter = rows[-1]
    for r in rows[:-1]:
        d = paired_bootstrap_diff(inter["prob"], r["prob"], inter["labels"])
        inter[f"vs {r['row']}"] = d
    for r in rows:
        r.pop("prob"), r.pop("labels")
    rows[0]["balance"] = {"train": train_balance, "test": payload["balance"].get("test")}
    return rows


def _ci(r: dict[str, Any], key: str) -> str:
    lo, hi = r["ci95"][key]
    return f"{r[key]:.3f} [{lo:.2f}, {hi:.2f}]"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| seed | row | video acc [95 % CI] | macro-F1 | AUROC [95 % CI] | "
             "InterFusion - row: acc / AUROC (p) |", "|---|---|---|---|---|---|"]  # fmt: skip
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["row"]] = r
    for seed, named in by_seed.items():
        inter = named[INTER]
        for name in ORDER:
            r = named[name]
            d = inter.get(f"vs {name}")
            diff = (
                ""
                if d is None
                else (
                    f"{d['acc']['diff']:+.3f} (p {d['acc']['p_not_better']:.3f}) / "
                    f"{d['auroc']['diff']:+.3f} (p {d['auroc']['p_not_better']:.3f})"
                )
            )
            lines.append(f"| {seed} | {name} | {_ci(r, 'acc')} | {r['macro_f1']:.3f} | "
                         f"{_ci(r, 'auroc')} | {diff} |")  # fmt: skip
    if len(by_seed) > 1:
        for name in ORDER:
            vals = [named[name] for named in by_seed.values()]
            lines.append(f"| mean of {len(vals)} | {name} | {mean(v['acc'] for v in vals):.3f} | "
                         f"{mean(v['macro_f1'] for v in vals):.3f} | "
                         f"{mean(v['auroc'] for v in vals):.3f} | |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/emotion_table"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every training")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        rows += one_seed(seed, out, args.overrides)
        text = table(rows)
        (out / "results.json").write_text(json.dumps(rows, indent=2))
        (out / "results.md").write_text(text + "\n")
        print(text, flush=True)


if __name__ == "__main__":
    main()
