"""Human-readable run summaries (Rich) and the ``metrics.json`` every run writes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from migalab.tasks.metrics import SCALAR_METRICS
from migalab.utils.io import atomic_write_json

#: the emotion task's scalar metrics (video-level acc / macro-F1 / AUROC, clip accuracy)
EMOTION_SCALARS = ("acc", "macro_f1", "auroc", "clip_acc")


def write_metrics(output_dir: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``<output_dir>/metrics.json`` atomically and return its path."""
    return atomic_write_json(Path(output_dir) / "metrics.json", dict(payload))


def print_summary(title: str, results: Mapping[str, Mapping[str, Any]], footer: str = "") -> None:
    """A table of the scalar metrics of each split/stream in ``results`` (gesture metrics, or
    the emotion task's video-level ones when the results have no ``top1``)."""
    rows = {n: m for n, m in results.items() if isinstance(m, Mapping)}
    gesture = any("top1" in m for m in rows.values())
    keys, required = (SCALAR_METRICS, "top1") if gesture else (EMOTION_SCALARS, "acc")
    table = Table(title=title)
    table.add_column("split")
    for key in keys:
        table.add_column(key, justify="right")
    for name, metrics in rows.items():
        if required in metrics:
            table.add_row(
                name, *(f"{float(metrics[k]):.4f}" if k in metrics else "-" for k in keys)
            )
    console = Console()
    console.print(table)
    if footer:
        console.print(footer)
