#!/usr/bin/env python
"""System B on the synthetic iMiGUE with video: RGB-only, skeleton-only and fused models, same
data, seed and epochs (the CPU quick variants).

    python scripts/compare_system_b.py                       # ~1 h on 2 CPU cores
    python scripts/compare_system_b.py trainer.max_epochs=5  # extra Hydra overrides for every run

Rows (data=synthetic_video_full everywhere, the full-size stand-in and not the experiments'
quick data=synthetic_video: the same clips, skeletons and rendered videos):

1. RGB only: MViT xs on person crops (experiment=mvit_rgb_synth)
2. skeleton, joint stream: 2s-AGCN (agcn_joint_synth)
3. skeleton, bone stream: 2s-AGCN (agcn_bone_synth)
4. skeleton, joint + bone token fusion (system_b_mg_synth with data.modalities=[joint,bone])
5. RGB + joint + bone token fusion, from scratch (system_b_mg_synth)
6. System B's recipe: the fusion's encoders initialised from rows 1-3 (the encoders' ``checkpoint``),
   encoders at 0.1x the lr, 5 more epochs
7. row 5's checkpoint evaluated without RGB, and 8. without the skeleton (missing modality at
   test time: the fusion masks what is absent)
9. rows 2 + 3 fused at score level (equal weights; the 2s-AGCN paper's two-stream model)

Each run trains with ``migalab-train`` in its own folder under ``--out`` (rows already done are
reused: delete a folder to re-run it). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from run_helpers import run, slug, split_metrics, write_results

#: every training run reads the full-size stand-in (the README's table); the `_synth`
#: experiments default to the quick data=synthetic_video
DATA = "data=synthetic_video_full"
SKELETON_ONLY = ["data.modalities=null"]
ROWS: list[tuple[str, str, list[str]]] = [
    ("1 RGB only (MViT xs)", "mvit_rgb_synth", []),
    ("2 skeleton joint (2s-AGCN)", "agcn_joint_synth", SKELETON_ONLY),
    ("3 skeleton bone (2s-AGCN)", "agcn_bone_synth", SKELETON_ONLY),
    ("4 skeleton joint+bone token fusion", "system_b_mg_synth", ["data.modalities=[joint,bone]"]),
    ("5 RGB+joint+bone token fusion", "system_b_mg_synth", []),
]
#: row 6: the fusion initialised from the unimodal runs (modality -> row whose encoder it takes)
INIT_FROM = {"rgb": ROWS[0][0], "joint": ROWS[1][0], "bone": ROWS[2][0]}
INIT_ROW = ("6 token fusion from rows 1-3 (+5 epochs, encoders lr x0.1)", "system_b_mg_synth",
            ["model.backbone_lr_mult=0.1", "trainer.max_epochs=5"])  # fmt: skip
#: evaluations of row 5's checkpoint with a modality missing
MISSING = [
    ("7 row 5 without RGB at test", ["+data.modalities=[joint,bone]"]),
    ("8 row 5 without skeleton at test", ["+data.modalities=[rgb]"]),
]


def _wall_time(row: dict[str, Any]) -> str:
    wall = row.get("wall_time_s")
    return "" if wall is None else str(round(wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/compare_system_b"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    results: list[dict[str, Any]] = []
    fused_ckpt = None
    ckpts: dict[str, str] = {}
    for name, experiment, extra in [*ROWS, INIT_ROW]:
        if name == INIT_ROW[0]:
            extra = [*extra, *(f"model.encoder.modalities.{m}.encoder.init={ckpts[row]}"
                               for m, row in INIT_FROM.items())]  # fmt: skip
        run_dir = out / slug(name)
        metrics = run_dir / "metrics.json"
        if not metrics.is_file():
            start = time.time()
            cmd = [sys.executable, "-m", "migalab.train", f"experiment={experiment}",
                   f"seed={args.seed}", "logger=csv", f"hydra.run.dir={run_dir}",
                   "callbacks.progress_bar.refresh_rate=0", DATA, *args.overrides, *extra]  # fmt: skip
            print(f"[{name}] training: {' '.join(cmd[2:])}", flush=True)
            run(cmd, run_dir / "stdout.log")
            print(f"[{name}] done in {time.time() - start:.0f} s", flush=True)
        payload = json.loads(metrics.read_text())
        ckpts[name] = payload["ckpt_path"]
        if experiment == "system_b_mg_synth" and not extra:
            fused_ckpt = payload["ckpt_path"]
        results.append({"row": name, "experiment": experiment, "overrides": extra,
                        "wall_time_s": payload.get("wall_time_s"), **split_metrics(payload)})  # fmt: skip
        print(f"[{name}] {results[-1]}", flush=True)
    for name, extra in MISSING:
        run_dir = out / slug(name)
        if not (run_dir / "metrics.json").is_file():
            cmd = [sys.executable, "-m", "migalab.eval", f"ckpt_path={fused_ckpt}",
                   f"hydra.run.dir={run_dir}", *extra]  # fmt: skip
            print(f"[{name}] evaluating", flush=True)
            run(cmd, run_dir / "stdout.log")
        payload = json.loads((run_dir / "metrics.json").read_text())
        results.append({"row": name, "experiment": "migalab-eval", "overrides": extra,
                        **split_metrics(payload)})  # fmt: skip

    score_dir = out / "9_joint_bone_score_fusion"
    if not (score_dir / "metrics.json").is_file():
        joint, bone = ckpts[ROWS[1][0]], ckpts[ROWS[2][0]]
        cmd = [sys.executable, "-m", "migalab.eval", f"ckpt_path=[{joint},{bone}]",
               f"hydra.run.dir={score_dir}"]  # fmt: skip
        print("[9 joint + bone score fusion] evaluating", flush=True)
        run(cmd, score_dir / "stdout.log")
    payload = json.loads((score_dir / "metrics.json").read_text())
    results.append({"row": "9 rows 2 + 3 score fusion (2s-AGCN's two streams)",
                    "experiment": "migalab-eval", **split_metrics(payload)})  # fmt: skip

    print(write_results(out, results, ("train time (s)", _wall_time)))


if __name__ == "__main__":
    main()
