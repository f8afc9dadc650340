#!/usr/bin/env python
"""System B on the synthetic iMiGUE where sight matters (data=synthetic_sight): RGB-only,
skeleton-only, score-level and token-level fusions, same data and budget, several training
seeds; means, spreads and per-seed paired differences.

    python scripts/compare_system_b.py                          # seeds 0 1 2
    python scripts/compare_system_b.py --seeds 0 trainer.max_epochs=3   # extra Hydra overrides

Rows, per training seed (the data are the same for every seed: data.synthetic.seed stays 0):

- RGB only: the CPU RGB encoder on the person crops (experiment=framestack_rgb_synth)
- joint / bone: the 2s-AGCN streams (agcn_joint_synth / agcn_bone_synth, skeleton only)
- joint + bone score fusion (equal weights; the 2s-AGCN paper's two-stream model) and
  RGB + joint + bone score fusion (``migalab-eval ckpt_path=[...]``)
- token fusion RGB + joint + bone (System B, system_b_mg_synth), without RGB
  (``data.modalities=[joint,bone]``, trained so), and with modality dropout off
  (``model.neck.modality_dropout=0``)

The fusion rows are compared per seed with their best single stream (the best of RGB, joint and
bone on that seed's test split) and with the joint + bone score fusion: the paired difference
of test top-1 on each seed, its mean and how many seeds it is positive on.

Each run trains with ``migalab-train`` in its own folder under ``--out`` (runs already done are
reused: delete a folder to re-run it). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from run_helpers import path_overrides, run, slug, split_metrics, train_once

#: every run reads the render where the hands are visible and the skeleton misses some of them
DATA = "data=synthetic_sight"
SKELETON_ONLY = [DATA, "data.modalities=null"]
RGB, JOINT, BONE = "RGB only (FrameStack2D)", "joint (2s-AGCN)", "bone (2s-AGCN)"
SCORE_JB, SCORE_ALL = "joint + bone score fusion", "RGB + joint + bone score fusion"
TOKEN, TOKEN_NO_RGB = "token fusion RGB + joint + bone", "token fusion joint + bone"
TOKEN_NO_DROP = "token fusion RGB + joint + bone, modality dropout off"
TRAINED: list[tuple[str, str, list[str]]] = [
    (RGB, "framestack_rgb_synth", [DATA]),
    (JOINT, "agcn_joint_synth", SKELETON_ONLY),
    (BONE, "agcn_bone_synth", SKELETON_ONLY),
    (TOKEN, "system_b_mg_synth", [DATA]),
    (TOKEN_NO_RGB, "system_b_mg_synth", [DATA, "data.modalities=[joint,bone]"]),
    (TOKEN_NO_DROP, "system_b_mg_synth", [DATA, "model.neck.modality_dropout=0"]),
]
#: score fusions: row -> the trained rows whose checkpoints are fused with equal weights
SCORE: dict[str, list[str]] = {SCORE_JB: [JOINT, BONE], SCORE_ALL: [RGB, JOINT, BONE]}
ORDER = [RGB, JOINT, BONE, SCORE_JB, SCORE_ALL, TOKEN, TOKEN_NO_RGB, TOKEN_NO_DROP]
SINGLE = (RGB, JOINT, BONE)
FUSIONS = (SCORE_ALL, TOKEN, TOKEN_NO_RGB, TOKEN_NO_DROP)
KEYS = ("val_top1", "val_macro_f1", "test_top1", "test_macro_f1")


def one_seed(
    seed: int, out: Path, overrides: list[str], only: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Train and evaluate every row for one training seed; ``row -> metrics``. With ``only``
    (row folder names), train just those rows and skip the score fusions: a long comparison
    run cheapest rows first, every seed, before the expensive ones."""
    rows: dict[str, dict[str, Any]] = {}
    ckpts: dict[str, str] = {}
    for name, experiment, extra in TRAINED:
        if only is not None and slug(name) not in only:
            continue
        run_dir = out / f"seed{seed}" / slug(name)
        args = [f"experiment={experiment}", f"seed={seed}", *overrides, *extra]
        payload = train_once("migalab.train", f"{name}, seed {seed}", run_dir, args)
        ckpts[name] = payload["ckpt_path"]
        rows[name] = {**split_metrics(payload), "wall_time_s": payload.get("wall_time_s")}
    if only is not None:
        return rows
    for name, members in SCORE.items():
        run_dir = out / f"seed{seed}" / slug(name)
        if not (run_dir / "metrics.json").is_file():
            paths = ",".join(ckpts[m] for m in members)
            cmd = [sys.executable, "-m", "migalab.eval", f"ckpt_path=[{paths}]",
                   f"hydra.run.dir={run_dir}", *path_overrides(overrides)]  # fmt: skip
            print(f"[{name}, seed {seed}] evaluating", flush=True)
            run(cmd, run_dir / "stdout.log")
        rows[name] = split_metrics(json.loads((run_dir / "metrics.json").read_text()))
    return rows


def _fmt(values: list[float]) -> str:
    """``mean ± sd (min-max)`` of one metric over seeds (just the value for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{mean(values):.3f} ± {stdev(values):.3f}"


def paired(per_seed: list[dict[str, dict[str, Any]]], row: str) -> dict[str, Any]:
    """Per-seed test top-1 differences of ``row`` to the seed's best single stream and to the
    joint + bone score fusion."""
    best = [max(s[r]["test_top1"] for r in SINGLE) for s in per_seed]
    d_best = [s[row]["test_top1"] - b for s, b in zip(per_seed, best, strict=True)]
    d_score = [s[row]["test_top1"] - s[SCORE_JB]["test_top1"] for s in per_seed]
    return {"vs_best_single": d_best, "vs_joint_bone_score": d_score}


def _diff(d: list[float]) -> str:
    wins = sum(v > 0 for v in d)
    return f"{mean(d):+.3f} ({wins}/{len(d)} seeds > 0)"


def table(per_seed: list[dict[str, dict[str, Any]]], seeds: list[int]) -> str:
    """Markdown: one row per model, mean ± sd over seeds, paired differences of the fusions."""
    lines = [f"{len(seeds)} training seed(s) ({', '.join(map(str, seeds))}); mean ± sd over "
             "seeds; the last two columns: test top-1 minus the same seed's best single stream "
             "/ joint + bone score fusion, mean over seeds (seeds where the row is ahead)", "",
             "| row | val top-1 | val macro-F1 | test top-1 | test macro-F1 | - best single | "
             "- joint+bone score |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in ORDER:
        cells = [_fmt([s[row][k] for s in per_seed]) for k in KEYS]
        diffs = ["", ""]
        if row in FUSIONS or row == SCORE_JB:
            p = paired(per_seed, row)
            diffs = [_diff(p["vs_best_single"]),
                     _diff(p["vs_joint_bone_score"]) if row != SCORE_JB else ""]  # fmt: skip
        lines.append(f"| {row} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/compare_system_b"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=[slug(n) for n, _, _ in TRAINED],
                        help="train just these rows (folder names) and write no table")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if args.only:
        for seed in args.seeds:
            one_seed(seed, out, args.overrides, args.only)
        return
    per_seed = [one_seed(seed, out, args.overrides) for seed in args.seeds]
    results = {
        "seeds": args.seeds,
        "overrides": args.overrides,
        "per_seed": per_seed,
        "paired": {row: paired(per_seed, row) for row in (*FUSIONS, SCORE_JB)},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = table(per_seed, args.seeds)
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
