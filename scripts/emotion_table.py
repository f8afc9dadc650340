#!/usr/bin/env python
"""The emotion track on the synthetic iMiGUE (data=synthetic_emotion_full, the full-size
stand-in: 96 / 32 / 96 videos; the experiments default to the quick data=synthetic_emotion):
majority, face-only, context-only, late fusion and InterFusion (from scratch, and by MiGA's
recipe from the single streams), same data and epochs, several training seeds.

    python scripts/emotion_table.py --seeds 0 1 2             # ~40 min a seed on 2 CPU cores
    python scripts/emotion_table.py --from-scratch            # + InterFusion from scratch
    python scripts/emotion_table.py --seeds 0 trainer.max_epochs=3   # extra Hydra overrides

Rows, per training seed (the data are the same for every seed: data.synthetic.seed stays 0):

1. majority: the training split's more frequent outcome for every test video (AUROC 0.5)
2. face only: SwinFace (CPU size) on the face crops (experiment=emotion_face_synth)
3. context only: FrameStack2D (timm resnet10t over the stacked frames) on the person crops
   (emotion_context_synth)
4. late fusion of 2 + 3 per video, weights searched on val (``migalab-eval
   ckpt_path=[face,context] fusion.search=true``)
5. InterFusion from single streams (system_b_emotion_synth): both streams joined by
   cross-attention, its encoders started from the same seed's rows 2 and 3
   (``model.encoders.{face,context}.init``) and trained at lr x 0.1
   (``model.backbone_lr_mult=0.1``), as MiGA trains System B's gesture fusion
   (docs/system-b.md)
6. InterFusion from scratch, trained end to end (only with ``--from-scratch``: it costs as
   much as rows 2 and 3 together; a finished one is reported without the flag too)

Metrics are per test video (clip logits averaged per video, each checkpoint's own
aggregation): accuracy, macro-F1 and AUROC, with a 95 % bootstrap interval over the test videos
(:func:`migalab.scoring.emotion.bootstrap_ci`), and for each InterFusion row a paired bootstrap
of its difference to each row above it on the same videos (:func:`paired_bootstrap_diff`; ``p``
is the share of resamples where the InterFusion is not ahead). Means ± standard deviations over
seeds, and the per-seed paired differences, close the table.

Each run trains with ``migalab-train`` in its own folder under ``--out`` (runs already done are
reused: delete a folder to re-run it; a stopped one resumes). Writes ``results.json`` and
``results.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import torch

from migalab.scoring.emotion import bootstrap_ci, paired_bootstrap_diff
from migalab.tasks.emotion import binary_video_metrics
from run_helpers import path_overrides, run, slug, train_once

FACE, CONTEXT = "face only (SwinFace)", "context only (FrameStack2D)"
INTER, INTER_INIT = "InterFusion from scratch", "InterFusion from single streams"
#: (row, experiment, {stream: the row whose best checkpoint initialises that encoder})
TRAINED: list[tuple[str, str, dict[str, str]]] = [
    (FACE, "emotion_face_synth", {}),
    (CONTEXT, "emotion_context_synth", {}),
    (INTER_INIT, "system_b_emotion_synth", {"face": FACE, "context": CONTEXT}),
    (INTER, "system_b_emotion_synth", {}),
]
#: every training run reads the full-size stand-in (the table in docs/emotion.md)
DATA = "data=synthetic_emotion_full"
MAJORITY, LATE = "majority", "late fusion face+context (val-searched)"
ORDER = [MAJORITY, FACE, CONTEXT, LATE, INTER_INIT, INTER]
FUSIONS = [INTER_INIT, INTER]


def read_predictions(path: Path) -> dict[str, tuple[float, int]]:
    """``video_id -> (prob_win, label)`` of a ``video_predictions*.csv``."""
    with path.open(newline="") as f:
        return {r["video_id"]: (float(r["prob_win"]), int(r["label"])) for r in csv.DictReader(f)}


def row_dir(out: Path, seed: int, name: str) -> Path:
    """The run folder of one seed's row."""
    return out / f"seed{seed}" / slug(name)


def train(name: str, experiment: str, seed: int, out: Path, overrides: list[str]) -> Path:
    """Train one row (or reuse its finished run); returns its run dir."""
    run_dir = row_dir(out, seed, name)
    train_once("migalab.train", f"seed {seed} {name}", run_dir,
               [f"experiment={experiment}", DATA, f"seed={seed}", *overrides])  # fmt: skip
    return run_dir


def best_ckpt(run_dir: Path) -> str:
    """The best-val checkpoint of a finished run (its ``metrics.json``)."""
    return json.loads((run_dir / "metrics.json").read_text())["ckpt_path"]


def init_overrides(init: dict[str, str], dirs: dict[str, Path]) -> list[str]:
    """MiGA's recipe for a fusion: each encoder starts from its single-stream row's best
    checkpoint, and the encoders train at lr x 0.1; nothing for a row trained from scratch."""
    if not init:
        return []
    ckpts = [f"model.encoders.{stream}.init={best_ckpt(dirs[row])}" for stream, row in init.items()]
    return [*ckpts, "model.backbone_lr_mult=0.1"]


def late_fusion(face: Path, context: Path, seed: int, out: Path, overrides: list[str]) -> Path:
    """``migalab-eval`` of the face and context checkpoints fused per video, weights searched
    on val; returns its run dir."""
    run_dir = row_dir(out, seed, LATE)
    if not (run_dir / "metrics.json").is_file():
        ckpts = [best_ckpt(d) for d in (face, context)]
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


def one_seed(
    seed: int, out: Path, overrides: list[str], from_scratch: bool
) -> list[dict[str, Any]]:
    """Train (or reuse) one seed's rows; returns their scores, the fusions' paired differences
    to the rows above them. The from-scratch InterFusion trains only with ``from_scratch``;
    a finished one is reported either way."""
    dirs: dict[str, Path] = {}
    for name, exp, init in TRAINED:
        if name == INTER and not from_scratch:
            if not (row_dir(out, seed, name) / "metrics.json").is_file():
                continue
        dirs[name] = train(name, exp, seed, out, [*overrides, *init_overrides(init, dirs)])
    dirs[LATE] = late_fusion(dirs[FACE], dirs[CONTEXT], seed, out, overrides)
    preds = {n: read_predictions(d / "video_predictions.csv") for n, d in dirs.items() if n != LATE}
    preds[LATE] = read_predictions(dirs[LATE] / "video_predictions_test.csv")
    videos = sorted(preds[INTER_INIT])
    for name, p in preds.items():
        if sorted(p) != videos:
            raise RuntimeError(f"{name} scored other test videos than {INTER_INIT}")
    payload = json.loads((dirs[INTER_INIT] / "metrics.json").read_text())
    train_balance = payload["balance"]["train"]
    win_majority = train_balance["videos_win"] >= train_balance["videos_lose"]
    labels = {v: preds[INTER_INIT][v][1] for v in videos}
    preds[MAJORITY] = {v: (1.0 if win_majority else 0.0, labels[v]) for v in videos}
    rows = {}
    for name in [n for n in ORDER if n in preds]:
        r = {"seed": seed, "row": name, **row_scores(preds[name], videos)}
        if name in dirs and name != LATE:
            metrics = json.loads((dirs[name] / "metrics.json").read_text())
            r["train_time_s"] = metrics.get("wall_time_s")
            r["epochs"] = metrics.get("epochs")
        rows[name] = r
    for fusion in [f for f in FUSIONS if f in rows]:
        for name in ORDER[: ORDER.index(fusion)]:
            d = paired_bootstrap_diff(
                rows[fusion]["prob"], rows[name]["prob"], rows[name]["labels"]
            )
            rows[fusion][f"vs {name}"] = d
    for r in rows.values():
        r.pop("prob"), r.pop("labels")
    rows[MAJORITY]["balance"] = {"train": train_balance, "test": payload["balance"].get("test")}
    return list(rows.values())


def _ci(r: dict[str, Any], key: str) -> str:
    lo, hi = r["ci95"][key]
    return f"{r[key]:.3f} [{lo:.2f}, {hi:.2f}]"


def _diff(d: dict[str, Any] | None) -> str:
    if d is None:
        return ""
    return (f"{d['acc']['diff']:+.3f} (p {d['acc']['p_not_better']:.3f}) / "
            f"{d['auroc']['diff']:+.3f} (p {d['auroc']['p_not_better']:.3f})")  # fmt: skip


def _spread(values: list[float]) -> str:
    return f"{mean(values):.3f}" + (f" ± {stdev(values):.3f}" if len(values) > 1 else "")


def table(rows: list[dict[str, Any]]) -> str:
    """Per seed: each row with its intervals and the InterFusion rows' paired differences to it;
    over several seeds: means ± standard deviations, and each fusion's per-seed differences."""
    lines = ["| seed | row | video acc [95 % CI] | macro-F1 | AUROC [95 % CI] | "
             "InterFusion from single streams - row: acc / AUROC (p) | "
             "InterFusion from scratch - row: acc / AUROC (p) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["row"]] = r
    for seed, named in by_seed.items():
        for name in [n for n in ORDER if n in named]:
            r = named[name]
            diffs = " | ".join(_diff(named.get(f, {}).get(f"vs {name}")) for f in FUSIONS)
            lines.append(f"| {seed} | {name} | {_ci(r, 'acc')} | {r['macro_f1']:.3f} | "
                         f"{_ci(r, 'auroc')} | {diffs} |")  # fmt: skip
    if len(by_seed) > 1:
        lines += ["", "Over the seeds each row finished on (mean ± sd):", "",
                  "| row | seeds | video acc | macro-F1 | AUROC |", "|---|---|---|---|---|"]  # fmt: skip
        for name in ORDER:
            vals = [named[name] for named in by_seed.values() if name in named]
            if not vals:
                continue
            lines.append(f"| {name} | {len(vals)} | {_spread([v['acc'] for v in vals])} | "
                         f"{_spread([v['macro_f1'] for v in vals])} | "
                         f"{_spread([v['auroc'] for v in vals])} |")  # fmt: skip
        lines += ["", "Paired differences per seed (acc / AUROC):", "",
                  "| fusion | - row | acc per seed | AUROC per seed |", "|---|---|---|---|"]  # fmt: skip
        for fusion in FUSIONS:
            for name in ORDER[: ORDER.index(fusion)]:
                ds = [n[fusion][f"vs {name}"] for n in by_seed.values() if fusion in n]
                if not ds:
                    continue
                acc = ", ".join(f"{d['acc']['diff']:+.3f}" for d in ds)
                auroc = ", ".join(f"{d['auroc']['diff']:+.3f}" for d in ds)
                lines.append(f"| {fusion} | {name} | {acc} | {auroc} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/emotion_table"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--from-scratch", action="store_true", help="also train InterFusion from scratch"
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every training")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        rows += one_seed(seed, out, args.overrides, args.from_scratch)
        text = table(rows)
        (out / "results.json").write_text(json.dumps(rows, indent=2))
        (out / "results.md").write_text(text + "\n")
        print(text, flush=True)


if __name__ == "__main__":
    main()
