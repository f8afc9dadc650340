"""Helpers shared by the comparison scripts (ablation_system_a.py, compare_system_b.py,
emotion_table.py, pretrain_table.py): run
``migalab-train`` / ``migalab-eval`` as subprocesses into per-row folders."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def slug(name: str) -> str:
    """Folder name of a row: its words joined by ``_``, letters and digits only."""
    words = ["".join(ch for ch in w if ch.isalnum()) for w in name.split()]
    return "_".join(w for w in words if w)


def path_overrides(overrides: list[str]) -> list[str]:
    """The ``paths.*`` overrides among a run's Hydra ``overrides``: what a ``migalab-eval`` of
    its checkpoints needs too. The evaluation rebuilds the data from the checkpoint's config,
    re-rooted under its own ``paths.data_dir``; without the training runs' data dir it would
    look for (and regenerate a synthetic release in) the default ``data/`` of the checkout,
    replacing whatever release of another size lies there."""
    return [o for o in overrides if o.lstrip("+~").startswith("paths.")]


def run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; raise with the log's tail when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")


def train_once(script: str, name: str, run_dir: Path, overrides: list[str]) -> dict[str, Any]:
    """``python -m <script>`` (``migalab.train`` / ``migalab.pretrain``) into ``run_dir`` with
    a CSV logger and no progress bar, unless the run finished already (its ``metrics.json``
    is reused: delete the folder to re-run); returns the payload. A run stopped part-way (a
    session ended, a job was preempted) goes on from its newest readable checkpoint:
    ``ckpt_path=auto`` (``last.ckpt``, ``interrupted.ckpt`` or a SLURM requeue checkpoint of
    the folder, else a fresh start; the same folder holds the same overrides)."""
    if not (run_dir / "metrics.json").is_file():
        start = time.time()
        cmd = [sys.executable, "-m", script, "logger=csv", f"hydra.run.dir={run_dir}",
               "callbacks.progress_bar.refresh_rate=0", *overrides, "ckpt_path=auto"]  # fmt: skip
        print(f"[{name}] {' '.join(cmd[2:])}", flush=True)
        run(cmd, run_dir / "stdout.log")
        print(f"[{name}] done in {time.time() - start:.0f} s", flush=True)
    return json.loads((run_dir / "metrics.json").read_text())


def split_metrics(payload: dict[str, Any]) -> dict[str, float]:
    """``val_top1``, ``val_macro_f1``, ``test_top1``, ``test_macro_f1`` of a run's
    ``metrics.json`` payload (splits it lacks are left out)."""
    return {
        f"{split}_{key}": round(float(payload[split][key]), 4)
        for split in ("val", "test")
        for key in ("top1", "macro_f1")
        if split in payload
    }


def write_results(
    out: Path, results: list[dict[str, Any]], last: tuple[str, Callable[[dict], Any]]
) -> str:
    """Write ``results.json`` and the markdown table ``results.md`` (row, val / test top-1 and
    macro-F1, and a last column ``last = (header, row -> value)``) under ``out``; returns the
    table."""
    (out / "results.json").write_text(json.dumps(results, indent=2))
    header, value = last
    lines = [f"| row | val top-1 | val macro-F1 | test top-1 | test macro-F1 | {header} |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r['row']} | {r.get('val_top1', '')} | {r.get('val_macro_f1', '')} | "
                     f"{r.get('test_top1', '')} | {r.get('test_macro_f1', '')} | {value(r)} |")  # fmt: skip
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n")
    return table
