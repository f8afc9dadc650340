#!/usr/bin/env python
"""From scratch vs from in-domain self-supervised pretraining on the synthetic iMiGUE, same
fine-tuning budget, several seeds; plus the long-tail and final-model rows (issue 14's table).

    python scripts/pretrain_table.py --workers 2             # 2 seeds, two runs at a time
    python scripts/pretrain_table.py --seeds 0 --pretrain-epochs 2 --finetune-epochs 3
    python scripts/pretrain_table.py -- data.batch_size=64   # Hydra overrides for every run

Pretraining runs once (seed 0), unlabelled, on every clip / sequence of every split:

* ``migalab-pretrain experiment=pretrain/maskfeat_mvit_synth`` (MaskFeat: HOG of masked tubes, MViT xs
  on the person crops of ``data=synthetic_video_full``)
* ``migalab-pretrain experiment=pretrain/mamp_skeleton_synth`` (MAMP: masked motion, skeleton
  transformer on the windows of every sequence)

Per seed, each fine-tune from scratch and from its pretraining (``model.encoder.init``):

* RGB only: ``mvit_rgb_synth``; skeleton only: ``stt_joint_synth`` (lr 1e-3);
  System B token fusion: ``system_b_mg_synth`` with its RGB stream set to MViT xs (RGB + joint
  + bone; the MViT from scratch and from MaskFeat);
* the same token fusion on joint + bone only (``data.modalities=[joint,bone]``): what the RGB
  stream adds to it;
* references on the same clips: 2s-AGCN joint and bone (``agcn_*_synth``) and their equal-
  weight score fusion (the 2s-AGCN two-stream model, what the fusion has to beat);
* long tail / final models: cRT on the AGCN joint run (``recipe=crt``), the AGCN joint stream
  trained on train + val (``data.train_splits=[train,validate]``; its val numbers are not held
  out), the AGCN joint stream retrained with pseudo-labelled windows of the train videos
  (``migalab-pseudolabel`` with the first run, threshold 0.9, then ``data.pseudo_labels``),
  and an N-way ensemble of the AGCN joint, bone, MaskFeat-initialised RGB and token-fusion
  checkpoints with per-model temperatures and weights searched on val (``fusion.search=true
  fusion.temperature=fit``).

Every RGB and fusion run, and the AGCN references, read ``data=synthetic_video_full`` (the
full-size stand-in, 40 / 10 / 10 videos: the same clips as ``data=synthetic``, which the skeleton
transformer and MAMP read), not the experiments' quick ``data=synthetic_video``.

Reports val / test top-1 and macro-F1 (best val checkpoint), means over seeds, and the
pretraining throughput (clips or windows per second = items per epoch x epochs / wall time,
startup included). Runs already done are reused (delete a folder to re-run it); ``--workers 2``
runs two at a time, one CPU thread each. Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from statistics import mean
from typing import Any

import run_helpers
from run_helpers import run, split_metrics, train_once

#: the full-size stand-in (the table in docs/pretraining.md), not the experiments' quick data=synthetic_video
VIDEO_FULL = "data=synthetic_video_full"
SKELETON_ONLY = [VIDEO_FULL, "data.modalities=null"]
#: this table measures what MaskFeat (an MViT pretraining) adds, so its token-fusion rows keep the
#: MViT xs RGB stream (as when the table was made; the same preset as mvit_rgb_synth, whose MaskFeat
#: checkpoint initialises it) although system_b_mg_synth now uses FrameStack2D
FUSION_MVIT = ["model/encoder@model.encoders.rgb=mvit",
               "model.encoders.rgb.preset=xs",
               "model.encoders.rgb.drop_path=0.1"]  # fmt: skip


class Jobs:
    """Runs named jobs on a small thread pool; a job waits for the jobs it depends on, which
    must have been added before it (so a worker never waits for a job not yet started)."""

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers)
        self.futures: dict[str, Future] = {}
        self.lock = threading.Lock()

    def add(self, name: str, fn: Callable[..., Any], deps: tuple[str, ...] = ()) -> None:
        def call() -> Any:
            return fn(*[self.futures[d].result() for d in deps])

        self.futures[name] = self.pool.submit(call)

    def result(self, name: str) -> Any:
        if name not in self.futures:  # not asked for (--only)
            return None
        try:
            return self.futures[name].result()
        except Exception as err:  # one failed run does not lose the table
            print(f"[{name}] failed: {err}", file=sys.stderr, flush=True)
            return None


def _eval(name: str, out: Path, overrides: list[str]) -> dict[str, Any]:
    """``migalab-eval`` into ``out`` unless done; its metrics.json payload."""
    if not (out / "metrics.json").is_file():
        print(f"[{name}] migalab-eval {' '.join(overrides)}", flush=True)
        run([sys.executable, "-m", "migalab.eval", f"hydra.run.dir={out}", *overrides],
            out / "stdout.log")  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def _pseudo_then_train(d: Path, seed: int, ckpt: str, overrides: list[str]) -> dict[str, Any]:
    """``migalab-pseudolabel`` with the AGCN joint checkpoint, then the same run again with
    its windows added (``data.pseudo_labels``)."""
    out = d / "pseudo_labels"
    if not (out / "pseudo_labels.csv").is_file():
        print(f"[seed {seed} pseudo-labels] scoring the unlabelled windows", flush=True)
        run([sys.executable, "-m", "migalab.pseudolabel", f"ckpt_path={ckpt}",
             f"hydra.run.dir={out}", *run_helpers.path_overrides(overrides)],
            out / "stdout.log")  # fmt: skip
    csv_path = out / "pseudo_labels.csv"
    return train_once("migalab.train", f"seed {seed} AGCN joint + pseudo-labels",
                      d / "agcn_joint_pseudo", [*overrides, f"data.pseudo_labels={csv_path}"])  # fmt: skip


#: --report-only: nothing runs, nothing is waited for
_REPORT_ONLY = {"on": False}


def _wait_if_running(folder: Path) -> None:
    """Wait while another process (an earlier invocation of this script) is training into
    ``folder``, so its run is reused instead of started twice."""
    while not _REPORT_ONLY["on"] and subprocess.run(["pgrep", "-f", f"hydra.run.dir={folder} "],
                         capture_output=True, check=False).returncode == 0:  # fmt: skip
        time.sleep(30)


def _items(log: Path, pattern: str) -> int | None:
    found = re.search(pattern, log.read_text()) if log.is_file() else None
    return int(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results/pretrain_table"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="MaskFeat epochs")
    parser.add_argument("--mamp-epochs", type=int, default=5)
    parser.add_argument("--finetune-epochs", type=int, default=10,
                        help="RGB, fusion and AGCN runs")  # fmt: skip
    parser.add_argument("--stt-epochs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--only", nargs="+", metavar="JOB",
                        help="run just these jobs (e.g. 0/agcn_bone 0/crt) and what they need")  # fmt: skip
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: the table of the runs already finished")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run")
    args = parser.parse_args()
    if args.report_only:
        global run

        def run(cmd: list[str], log: Path) -> None:  # noqa: ARG001 - replaces run_helpers.run
            raise RuntimeError("not run (--report-only)")

        run_helpers.run = run
        _REPORT_ONLY["on"] = True
    out: Path = args.out.resolve()
    if args.workers > 1:  # share the cores instead of oversubscribing them
        threads = max(1, (os.cpu_count() or 1) // args.workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    extra = list(args.overrides)
    jobs = Jobs(args.workers)
    ft = f"trainer.max_epochs={args.finetune_epochs}"
    specs: dict[str, tuple[Callable, tuple[str, ...]]] = {}

    class _Specs:  # collects the jobs; they are started below in order of priority
        @staticmethod
        def add(name: str, fn: Callable, deps: tuple[str, ...] = ()) -> None:
            specs[name] = (fn, deps)

    todo = _Specs()

    def train(script: str, name: str, folder: Path, overrides: list[str]) -> Callable:
        return lambda *deps: (
            _wait_if_running(folder) or train_once(script, name, folder, [*overrides, *extra])
        )

    def with_init(key: str, script: str, name: str, folder: Path, overrides: list[str]):
        return lambda pre: (
            _wait_if_running(folder)
            or train_once(script, name, folder, [*overrides, f"{key}={pre['ckpt_path']}", *extra])
        )

    todo.add("maskfeat", train("migalab.pretrain", "MaskFeat pretraining", out / "pretrain_maskfeat",
             ["experiment=pretrain/maskfeat_mvit_synth", VIDEO_FULL, "seed=0",
              f"trainer.max_epochs={args.pretrain_epochs}"]))  # fmt: skip
    todo.add("mamp", train("migalab.pretrain", "MAMP pretraining", out / "pretrain_mamp",
             ["experiment=pretrain/mamp_skeleton_synth", "seed=0",
              f"trainer.max_epochs={args.mamp_epochs}"]))  # fmt: skip
    init = "model.encoder.init"
    rgb_init = "model.encoders.rgb.init"
    stt = ["experiment=stt_joint_synth", "model.optimizer.lr=0.001",
           f"trainer.max_epochs={args.stt_epochs}"]  # fmt: skip
    #: (row, folder, experiment overrides, init key or None, pretraining job or None)
    rows: list[tuple[str, str, list[str], str | None, str | None]] = [
        ("RGB only (MViT xs), from scratch", "rgb_scratch", ["experiment=mvit_rgb_synth", VIDEO_FULL, ft], None, None),
        ("RGB only, from MaskFeat", "rgb_maskfeat", ["experiment=mvit_rgb_synth", VIDEO_FULL, ft], init, "maskfeat"),
        ("2s-AGCN joint", "agcn_joint", ["experiment=agcn_joint_synth", *SKELETON_ONLY, ft], None, None),
        ("2s-AGCN bone", "agcn_bone", ["experiment=agcn_bone_synth", *SKELETON_ONLY, ft], None, None),
        ("token fusion RGB+joint+bone, from scratch", "fusion_scratch", ["experiment=system_b_mg_synth", VIDEO_FULL, *FUSION_MVIT, ft], None, None),
        ("token fusion, MViT from MaskFeat", "fusion_maskfeat", ["experiment=system_b_mg_synth", VIDEO_FULL, *FUSION_MVIT, ft], rgb_init, "maskfeat"),
        ("token fusion joint+bone only (no RGB: what RGB adds)", "fusion_skeleton",
         ["experiment=system_b_mg_synth", VIDEO_FULL, "data.modalities=[joint,bone]", ft], None, None),
        ("skeleton transformer (joint), from scratch", "stt_scratch", stt, None, None),
        ("skeleton transformer, from MAMP", "stt_mamp", stt, init, "mamp"),
        ("2s-AGCN joint on train+val (final model)", "agcn_joint_trainval",
         ["experiment=agcn_joint_synth", *SKELETON_ONLY, ft, "data.train_splits=[train,validate]"], None, None),
    ]  # fmt: skip
    for seed in args.seeds:
        d = out / f"seed{seed}"
        for name, folder, overrides, key, pre in rows:
            run_overrides = [*overrides, f"seed={seed}"]
            label = f"seed {seed} {name}"
            if pre is None:
                todo.add(
                    f"{seed}/{folder}", train("migalab.train", label, d / folder, run_overrides)
                )
            else:
                todo.add(f"{seed}/{folder}", with_init(key, "migalab.train", label, d / folder,
                         run_overrides), (pre,))  # fmt: skip
        todo.add(f"{seed}/crt", lambda joint, d=d, seed=seed: train_once(
            "migalab.train", f"seed {seed} cRT", d / "agcn_joint_crt",
            ["experiment=agcn_joint_synth", *SKELETON_ONLY, "recipe=crt", f"seed={seed}",
             f"{init}={joint['ckpt_path']}", *extra]), (f"{seed}/agcn_joint",))  # fmt: skip
        todo.add(f"{seed}/score", lambda j, b, d=d: _eval(
            "joint + bone score fusion", d / "score_joint_bone",
            [f"ckpt_path=[{j['ckpt_path']},{b['ckpt_path']}]", *run_helpers.path_overrides(extra)]),
            (f"{seed}/agcn_joint", f"{seed}/agcn_bone"))  # fmt: skip
        todo.add(f"{seed}/pseudo", lambda joint, d=d, seed=seed: _pseudo_then_train(
            d, seed, joint["ckpt_path"], ["experiment=agcn_joint_synth", *SKELETON_ONLY, ft,
                                          f"seed={seed}", *extra]),
            (f"{seed}/agcn_joint",))  # fmt: skip
        members = ("agcn_joint", "agcn_bone", "rgb_maskfeat", "fusion_scratch")
        todo.add(f"{seed}/ensemble", lambda *runs, d=d: _eval(
            "ensemble", d / "ensemble",
            ["ckpt_path=[" + ",".join(r["ckpt_path"] for r in runs) + "]",
             "fusion.search=true", "fusion.temperature=fit", *run_helpers.path_overrides(extra)]),
            tuple(f"{seed}/{m}" for m in members))  # fmt: skip

    seeds = [str(x) for x in args.seeds]
    first = seeds[0]
    order = ["maskfeat", "mamp"]
    order += [f"{x}/{r}" for x in seeds for r in ("agcn_joint", "rgb_scratch")]
    order += [f"{first}/fusion_scratch"]
    order += [f"{x}/rgb_maskfeat" for x in seeds] + [f"{first}/fusion_maskfeat"]
    order += [f"{first}/{r}" for r in ("agcn_bone", "crt", "score", "agcn_joint_trainval",
                                      "pseudo", "ensemble")]  # fmt: skip
    order += [n for n in specs if n not in order and "stt_" not in n] + list(specs)
    wanted = set(specs)
    if args.only:
        wanted, stack = set(), list(args.only)
        while stack:  # the jobs named and, transitively, those they depend on
            name = stack.pop()
            if name not in specs:
                parser.error(f"no job {name!r}; jobs: {', '.join(specs)}")
            if name not in wanted:
                wanted.add(name)
                stack += list(specs[name][1])
    for name in dict.fromkeys(order):  # every dependency comes before its dependents
        if name in wanted:
            fn, deps = specs[name]
            jobs.add(name, fn, deps)

    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        for name, folder, *_ in rows:
            payload = jobs.result(f"{seed}/{folder}")
            if payload:
                results.append({"seed": seed, "row": name, **split_metrics(payload),
                                "train_time_s": payload.get("wall_time_s")})  # fmt: skip
        for job, name in [("crt", "cRT on the AGCN joint run (frozen encoder, balanced sampling)"),
                          ("pseudo", "2s-AGCN joint + pseudo-labelled windows of the train "
                                     "videos (p >= 0.9, from the AGCN joint run)"),
                          ("score", "2s-AGCN joint + bone score fusion (equal weights)"),
                          ("ensemble", "ensemble: AGCN joint, bone, RGB (MaskFeat), fusion "
                                       "(from scratch); val-fitted temperatures and weights")]:  # fmt: skip
            payload = jobs.result(f"{seed}/{job}")
            if payload:
                results.append({"seed": seed, "row": name, **split_metrics(payload),
                                "train_time_s": payload.get("wall_time_s")})  # fmt: skip
    for job, unit, pattern, folder in [
        ("maskfeat", "clips", r"unlabelled: the (\d+) prepared clips", "pretrain_maskfeat"),
        ("mamp", "windows", r"unlabelled: (\d+) windows", "pretrain_mamp"),
    ]:
        pre = jobs.result(job)
        if pre:
            items = _items(out / folder / "stdout.log", pattern)
            epochs = args.pretrain_epochs if job == "maskfeat" else args.mamp_epochs
            results.append({"seed": 0, "row": f"{job} pretraining", "val_loss": pre["val"]["loss"],
                            "items_per_epoch": items, "unit": unit, "epochs": epochs,
                            "train_time_s": pre.get("wall_time_s"),
                            "items_per_s": items * epochs / pre["wall_time_s"] if items else None})  # fmt: skip
    jobs.pool.shutdown()
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = table(results, args.seeds)
    (out / "results.md").write_text(text + "\n")
    print(text)


def _fmt(value: Any, digits: str = ".3f") -> str:
    return "" if value is None else format(value, digits)


def table(results: list[dict[str, Any]], seeds: list[int]) -> str:
    """The markdown table: one line per seed and row, then the mean of each row over seeds."""
    lines = ["| seed | row | val top-1 | test top-1 | test macro-F1 | train time (s) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    scored = [r for r in results if "test_top1" in r]
    for r in scored:
        lines.append(f"| {r['seed']} | {r['row']} | {_fmt(r.get('val_top1'))} | "
                     f"{_fmt(r['test_top1'])} | {_fmt(r['test_macro_f1'])} | "
                     f"{_fmt(r.get('train_time_s'), '.0f')} |")  # fmt: skip
    if len(seeds) > 1:
        for name in dict.fromkeys(r["row"] for r in scored):
            sel = [r for r in scored if r["row"] == name]
            lines.append(f"| mean of {len(sel)} | {name} | "
                         f"{_fmt(mean(r['val_top1'] for r in sel if 'val_top1' in r) if any('val_top1' in r for r in sel) else None)} | "
                         f"{mean(r['test_top1'] for r in sel):.3f} | "
                         f"{mean(r['test_macro_f1'] for r in sel):.3f} | |")  # fmt: skip
    for r in results:
        if r["row"].endswith("pretraining"):
            rate = _fmt(r.get("items_per_s"), ".1f")
            lines.append(f"\n{r['row']}: {r['epochs']} epochs x {r['items_per_epoch']} "
                         f"{r['unit']} in {_fmt(r['train_time_s'], '.0f')} s ({rate} {r['unit']}/s), "
                         f"best val loss {r['val_loss']:.4f}")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
