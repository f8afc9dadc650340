#!/usr/bin/env python
"""System A ablation on the synthetic iMiGUE: each part added in turn, same seed, same budget.

    python scripts/ablation_system_a.py                      # CPU quick variants (~50 min, 2 cores)
    python scripts/ablation_system_a.py trainer.max_epochs=4 # extra Hydra overrides for every run

Rows (all from ``experiment=posec3d_joint_synth`` / ``system_a_synth`` on data=synthetic_occluded):

1. PoseC3D baseline: 22-joint skeleton, joint heatmaps
2. + 41 keypoints (body_face41: 19 face landmarks)
3. + linear interpolation of missing keypoints
4. + label-embedding supervision (= experiment=system_a_synth)
5. + joint & limb fusion (system_a_synth + system_a_limb_synth, weights searched on val)

Every run trains with ``migalab-train`` in its own run dir under ``--out`` (rows already done are
reused: delete a row's folder to re-run it), the fusion row runs ``migalab-eval`` with
``fusion.search=true``. Writes ``results.json`` and ``results.md`` (val and test top-1 /
macro-F1; the fusion weights are chosen on val, so its test numbers are the unbiased ones).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from migalab.data.classes import CLASS_NAMES
from run_helpers import path_overrides, run, slug, split_metrics, write_results

ROWS: list[tuple[str, str, list[str]]] = [
    ("1 PoseC3D 22 joints", "posec3d_joint_synth", []),
    ("2 + 41 keypoints (face)", "posec3d_joint_synth", ["data.layout=body_face41"]),
    (
        "3 + interpolation",
        "posec3d_joint_synth",
        ["data.layout=body_face41", "data.interpolate=true"],
    ),
    ("4 + label embeddings", "system_a_synth", []),
    ("4b limb stream", "system_a_limb_synth", []),
]


#: classes performed at the face (0-based): touch face, touch forehead, cover face, rub eyes,
#: touch other face part, touch ears, bite nails, touch chin, bite lip. In the synthetic data
#: their motions end at (or, for bite lip, only move) face landmarks: see the signal table in
#: migalab.synthetic.gestures.
FACE_CLASSES = (3, 4, 5, 6, 7, 8, 9, 10, 28)


def metrics_row(payload: dict[str, Any]) -> dict[str, float]:
    """top-1 / macro-F1 per split and the mean test accuracy over the face-region classes."""
    row = split_metrics(payload)
    test = payload.get("test", {})
    acc, support = test.get("per_class_acc"), test.get("support")
    if acc is not None and support is not None:
        names = [CLASS_NAMES[c] for c in FACE_CLASSES]
        accs = [float(acc[n]) for n in names if int(support.get(n, 0)) > 0]
        row["test_face_acc"] = round(sum(accs) / len(accs), 4) if accs else float("nan")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/ablation_system_a"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    results: list[dict[str, Any]] = []
    ckpts: dict[str, str] = {}
    for name, experiment, extra in ROWS:
        run_dir = out / slug(name)
        metrics = run_dir / "metrics.json"
        if not metrics.is_file():
            start = time.time()
            cmd = [sys.executable, "-m", "migalab.train", f"experiment={experiment}",
                   f"seed={args.seed}", "logger=csv", f"hydra.run.dir={run_dir}",
                   "callbacks.progress_bar.refresh_rate=0", *extra, *args.overrides]  # fmt: skip
            print(f"[{name}] training: {' '.join(cmd[2:])}", flush=True)
            run(cmd, run_dir / "stdout.log")
            print(f"[{name}] done in {time.time() - start:.0f} s", flush=True)
        payload = json.loads(metrics.read_text())
        ckpts[name] = payload["ckpt_path"]
        results.append({"row": name, "experiment": experiment, "overrides": extra,
                        "wall_time_s": payload.get("wall_time_s"), **metrics_row(payload)})  # fmt: skip
        print(f"[{name}] {results[-1]}", flush=True)

    fusion_dir = out / "5_fusion"
    if not (fusion_dir / "metrics.json").is_file():
        joint, limb = ckpts["4 + label embeddings"], ckpts["4b limb stream"]
        cmd = [sys.executable, "-m", "migalab.eval", f"ckpt_path=[{joint},{limb}]",
               "fusion.search=true", f"hydra.run.dir={fusion_dir}",
               *path_overrides(args.overrides)]  # fmt: skip
        print("[fusion] evaluating", flush=True)
        run(cmd, fusion_dir / "stdout.log")
    payload = json.loads((fusion_dir / "metrics.json").read_text())
    results.append({"row": "5 + joint & limb fusion", "experiment": "migalab-eval",
                    "weights": payload["fusion"]["weights"], **metrics_row(payload)})  # fmt: skip

    print(
        write_results(out, results, ("test face-class acc", lambda r: r.get("test_face_acc", "")))
    )


if __name__ == "__main__":
    main()
