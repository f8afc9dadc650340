"""Human-readable run summaries (Rich) and the ``metrics.json`` every run writes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from migalab.tasks.metrics import SCALAR_METRICS
from migalab.utils.io import atomic_write_json


def write_metrics(output_dir: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``<output_dir>/metrics.json`` atomically and return its path."""
    return atomic_write_json(Path(output_dir) / "metrics.json", dict(payload))


def print_summary(title: str, results: Mapping[str, Mapping[str, Any]], footer: str = "") -> None:
    """A table of the scalar metrics of each split/stream in ``results``."""
    table = Table(title=title)
    table.add_column("split")
    for key in SCALAR_METRICS:
        table.add_column(key, justify="right")
    for name, metrics in results.items():
        if isinstance(metrics, Mapping) and "top1" in metrics:
            table.add_row(name, *(f"{float(metrics[k]):.4f}" for k in SCALAR_METRICS))
    console = Console()
    console.print(table)
    if footer:
        console.print(footer)
