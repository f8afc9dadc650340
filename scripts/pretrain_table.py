#!/usr/bin/env python
"""Skeleton transformer on the synthetic iMiGUE (data=synthetic): from scratch vs fine-tuned
from in-domain MAMP pretraining, same fine-tuning budget, several seeds.

    python scripts/pretrain_table.py                          # 2 seeds
    python scripts/pretrain_table.py --seeds 0 --pretrain-epochs 2 --finetune-epochs 3
    python scripts/pretrain_table.py -- data.batch_size=64   # Hydra overrides for every run

Per seed:

1. ``migalab-pretrain experiment=mamp_skeleton_synth`` (windows of every sequence, no labels)
2. ``migalab-train experiment=stt_joint_synth`` from scratch
3. the same, ``model.encoder.init=<1's best checkpoint>``

plus, for reference, the 2s-AGCN joint stream at its own recipe (``agcn_joint_synth``).
Reports test top-1 / macro-F1 (best val checkpoint) and the pretraining throughput
(windows/s = windows per epoch x epochs / wall time, startup included). Runs already done are
reused (delete a folder to re-run it). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from statistics import mean
from typing import Any

from run_helpers import split_metrics, train_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/pretrain_table"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        d = out / f"seed{seed}"
        pre = train_once("migalab.pretrain", f"seed {seed} MAMP pretraining", d / "pretrain",
                     ["experiment=mamp_skeleton_synth", f"seed={seed}",
                      f"trainer.max_epochs={args.pretrain_epochs}", *args.overrides])  # fmt: skip
        log = (d / "pretrain" / "stdout.log").read_text()
        found = re.search(r"unlabelled: (\d+) windows", log)
        windows = int(found.group(1)) if found else None
        ft = ["experiment=stt_joint_synth", f"seed={seed}",
              f"trainer.max_epochs={args.finetune_epochs}"]  # fmt: skip
        variants = [
            ("skeleton transformer, from scratch", "scratch", []),
            ("skeleton transformer, from MAMP", "mamp", [f"model.encoder.init={pre['ckpt_path']}"]),
            ("2s-AGCN joint (reference, own recipe)", "agcn", None),
        ]
        for name, folder, extra in variants:
            overrides = ["experiment=agcn_joint_synth", f"seed={seed}"] if extra is None else [
                *ft, *extra]  # fmt: skip
            payload = train_once("migalab.train", f"seed {seed} {name}", d / folder,
                             [*overrides, *args.overrides])  # fmt: skip
            rows.append({"seed": seed, "row": name, **split_metrics(payload),
                         "train_time_s": payload.get("wall_time_s")})  # fmt: skip
        rows.append({"seed": seed, "row": "MAMP pretraining", "val_loss": pre["val"]["loss"],
                     "windows_per_epoch": windows, "epochs": args.pretrain_epochs,
                     "train_time_s": pre.get("wall_time_s"),
                     "windows_per_s": windows * args.pretrain_epochs / pre["wall_time_s"]
                     if windows else None})  # fmt: skip
        (out / "results.json").write_text(json.dumps(rows, indent=2))
    lines = ["| seed | row | val top-1 | test top-1 | test macro-F1 | train time (s) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        if "test_top1" in r:
            lines.append(f"| {r['seed']} | {r['row']} | {r['val_top1']:.3f} | {r['test_top1']:.3f}"
                         f" | {r['test_macro_f1']:.3f} | {r['train_time_s']:.0f} |")  # fmt: skip
    names = dict.fromkeys(r["row"] for r in rows if "test_top1" in r)
    if len(args.seeds) > 1:
        for name in names:
            sel = [r for r in rows if r["row"] == name]
            lines.append(f"| mean | {name} | {mean(r['val_top1'] for r in sel):.3f} | "
                         f"{mean(r['test_top1'] for r in sel):.3f} | "
                         f"{mean(r['test_macro_f1'] for r in sel):.3f} | |")  # fmt: skip
    for r in rows:
        if r["row"] == "MAMP pretraining":
            lines.append(f"\nseed {r['seed']}: MAMP pretraining {r['epochs']} epochs x "
                         f"{r['windows_per_epoch']} windows in {r['train_time_s']:.0f} s "
                         f"({r['windows_per_s']:.1f} windows/s), best val loss {r['val_loss']:.4f}")  # fmt: skip
    text = "\n".join(lines)
    (out / "results.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
