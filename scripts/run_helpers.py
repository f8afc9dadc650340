"""Helpers shared by the comparison scripts (ablation_system_a.py, compare_system_b.py): run
``migalab-train`` / ``migalab-eval`` as subprocesses into per-row folders."""

from __future__ import annotations

import subprocess
from pathlib import Path


def slug(name: str) -> str:
    """Folder name of a row: its words joined by ``_``, letters and digits only."""
    words = ["".join(ch for ch in w if ch.isalnum()) for w in name.split()]
    return "_".join(w for w in words if w)


def run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; raise with the log's tail when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
