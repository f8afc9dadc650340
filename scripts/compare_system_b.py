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
- token fusion RGB + joint + bone (System B, system_b_mg_synth) by MiGA's recipe: its encoders
  start from the same seed's single-stream checkpoints (``model.encoders.<stream>.init``) and
  train at lr x 0.1 (``model.backbone_lr_mult=0.1``); the same without RGB
  (``data.modalities=[joint,bone]``), and that with modality dropout off
  (``model.neck.modality_dropout=0``; without RGB, where a seed costs ~15 CPU-minutes instead
  of ~55)
- with ``--from-scratch``, also the token fusions trained from scratch (with and without RGB):
  their skeleton encoders learn far less under the fusion's recipe than alone (why MiGA
  initialises from the single streams). A row is reported over the seeds it finished on.

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
from typing import Any, NamedTuple

from run_helpers import path_overrides, run, slug, split_metrics, train_once

#: every run reads the render where the hands are visible and the skeleton misses some of them
DATA = "data=synthetic_sight"
SKELETON_ONLY = [DATA, "data.modalities=null"]
RGB, JOINT, BONE = "RGB only (FrameStack2D)", "joint (2s-AGCN)", "bone (2s-AGCN)"
SCORE_JB, SCORE_ALL = "joint + bone score fusion", "RGB + joint + bone score fusion"
TOKEN = "token fusion RGB + joint + bone from single streams"
TOKEN_NO_RGB = "token fusion joint + bone from single streams"
TOKEN_NO_DROP = "token fusion joint + bone from single streams, modality dropout off"
SCRATCH, SCRATCH_NO_RGB = (
    "token fusion RGB + joint + bone from scratch",
    "token fusion joint + bone from scratch",
)
NO_RGB = "data.modalities=[joint,bone]"
#: MiGA's recipe: each encoder starts from the same seed's single-stream run, at lr x 0.1
FROM_SINGLE = {"rgb": RGB, "joint": JOINT, "bone": BONE}


class Row(NamedTuple):
    """A trained row: its experiment, overrides, and the streams whose encoders start from
    another row's checkpoint of the same seed (stream -> row)."""

    name: str
    experiment: str
    extra: list[str]
    init: dict[str, str] = {}


TRAINED: list[Row] = [
    Row(RGB, "framestack_rgb_synth", [DATA]),
    Row(JOINT, "agcn_joint_synth", SKELETON_ONLY),
    Row(BONE, "agcn_bone_synth", SKELETON_ONLY),
    Row(TOKEN, "system_b_mg_synth", [DATA], FROM_SINGLE),
    Row(TOKEN_NO_RGB, "system_b_mg_synth", [DATA, NO_RGB], FROM_SINGLE),
    Row(
        TOKEN_NO_DROP,
        "system_b_mg_synth",
        [DATA, NO_RGB, "model.neck.modality_dropout=0"],
        FROM_SINGLE,
    ),
    Row(SCRATCH, "system_b_mg_synth", [DATA]),
    Row(SCRATCH_NO_RGB, "system_b_mg_synth", [DATA, NO_RGB]),
]
#: rows trained only with --from-scratch (reported over the seeds they finished on)
OPTIONAL = (SCRATCH, SCRATCH_NO_RGB)
#: score fusions: row -> the trained rows whose checkpoints are fused with equal weights
SCORE: dict[str, list[str]] = {SCORE_JB: [JOINT, BONE], SCORE_ALL: [RGB, JOINT, BONE]}
ORDER = [RGB, JOINT, BONE, SCORE_JB, SCORE_ALL, TOKEN, TOKEN_NO_RGB, TOKEN_NO_DROP, *OPTIONAL]
SINGLE = (RGB, JOINT, BONE)
FUSIONS = (SCORE_ALL, TOKEN, TOKEN_NO_RGB, TOKEN_NO_DROP, *OPTIONAL)
KEYS = ("val_top1", "val_macro_f1", "test_top1", "test_macro_f1")


def one_seed(
    seed: int,
    out: Path,
    overrides: list[str],
    only: list[str] | None = None,
    from_scratch: bool = False,
) -> dict[str, dict[str, Any]]:
    """Train and evaluate every row for one training seed; ``row -> metrics``. With ``only``
    (row folder names), train just those rows (and the single streams they start from) and
    skip the score fusions: a long comparison run cheapest rows first, every seed, before the
    expensive ones. The ``OPTIONAL`` rows train only ``from_scratch``; without it a finished
    one is still reported."""
    rows: dict[str, dict[str, Any]] = {}
    ckpts: dict[str, str] = {}
    needed = {r for row in TRAINED if only is None or slug(row.name) in only
              for r in row.init.values()}  # fmt: skip
    for row in TRAINED:
        run_dir = out / f"seed{seed}" / slug(row.name)
        if only is not None:
            wanted = slug(row.name) in only or row.name in needed
        else:
            finished = (run_dir / "metrics.json").is_file()
            wanted = row.name not in OPTIONAL or from_scratch or finished
        if not wanted:
            continue
        init = [f"model.encoders.{stream}.init={ckpts[r]}" for stream, r in row.init.items()]
        lr = ["model.backbone_lr_mult=0.1"] if row.init else []
        args = [f"experiment={row.experiment}", f"seed={seed}", *overrides, *row.extra, *lr,
                *init]  # fmt: skip
        payload = train_once("migalab.train", f"{row.name}, seed {seed}", run_dir, args)
        ckpts[row.name] = payload["ckpt_path"]
        rows[row.name] = {**split_metrics(payload), "wall_time_s": payload.get("wall_time_s")}
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
    """``mean ± sd`` of one metric over seeds (just the value for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{mean(values):.3f} ± {stdev(values):.3f}"


def paired(per_seed: list[dict[str, dict[str, Any]]], row: str) -> dict[str, Any]:
    """Per-seed test top-1 differences of ``row`` to the seed's best single stream and to the
    joint + bone score fusion, over the seeds where ``row`` finished."""
    have = [s for s in per_seed if row in s]
    best = [max(s[r]["test_top1"] for r in SINGLE) for s in have]
    d_best = [s[row]["test_top1"] - b for s, b in zip(have, best, strict=True)]
    d_score = [s[row]["test_top1"] - s[SCORE_JB]["test_top1"] for s in have]
    return {"vs_best_single": d_best, "vs_joint_bone_score": d_score}


def _diff(d: list[float]) -> str:
    wins = sum(v > 0 for v in d)
    return f"{mean(d):+.3f} ({wins}/{len(d)} seeds > 0)"


def table(per_seed: list[dict[str, dict[str, Any]]], seeds: list[int]) -> str:
    """Markdown: one row per model, mean ± sd over the seeds it has, paired differences of the
    fusions."""
    lines = [f"{len(seeds)} training seed(s) ({', '.join(map(str, seeds))}); mean ± sd over "
             "the seeds a row has; the last two columns: test top-1 minus the same seed's best "
             "single stream / joint + bone score fusion, mean over seeds (seeds where the row "
             "is ahead)", "",
             "| row | seeds | val top-1 | val macro-F1 | test top-1 | test macro-F1 | "
             "- best single | - joint+bone score |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in ORDER:
        have = [s[row] for s in per_seed if row in s]
        if not have:
            continue
        cells = [_fmt([r[k] for r in have]) for k in KEYS]
        diffs = ["", ""]
        if row in FUSIONS or row == SCORE_JB:
            p = paired(per_seed, row)
            diffs = [_diff(p["vs_best_single"]),
                     _diff(p["vs_joint_bone_score"]) if row != SCORE_JB else ""]  # fmt: skip
        lines.append(f"| {row} | {len(have)} | {' | '.join(cells)} | {' | '.join(diffs)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/compare_system_b"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=[slug(r.name) for r in TRAINED],
                        help="train just these rows (folder names) and write no table")  # fmt: skip
    parser.add_argument("--from-scratch", action="store_true",
                        help="also train the token fusions from scratch")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if args.only:
        for seed in args.seeds:
            one_seed(seed, out, args.overrides, args.only)
        return
    per_seed = [one_seed(seed, out, args.overrides, from_scratch=args.from_scratch)
                for seed in args.seeds]  # fmt: skip
    results = {
        "seeds": args.seeds,
        "overrides": args.overrides,
        "per_seed": per_seed,
        "paired": {
            row: paired(per_seed, row)
            for row in (*FUSIONS, SCORE_JB)
            if any(row in s for s in per_seed)
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = table(per_seed, args.seeds)
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
