"""What a prepare run reports: :class:`PrepareResult` (counts, skipped files, warnings), its
``prepare_report.json`` and its Rich summary; :class:`PrepareError` for strict runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migalab.data.cache import META_FILE
from migalab.errors import UserError
from migalab.utils.io import atomic_write_text

REPORT_FILE = "prepare_report.json"


class PrepareError(UserError, RuntimeError):
    """A strict prepare met a problem (``problems`` lists (file, message) pairs); its message is
    the problem's own (``<file>: <problem>``): ``migalab-prepare`` prints it as one line."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class PrepareResult:
    """Outcome of a prepare (:func:`migalab.data.prepare.prepare_release` and the clip-release
    converters).

    Attributes:
        out_dir: the cache folder.
        num_videos: source sequences converted (videos; clips for clip-level releases).
        num_clips: clips in ``index.csv``.
        skipped: (file, error message) per video (or release file) that was not converted.
        warnings: (file, message) for videos converted with something to say (e.g. an empty
            label file: no clips).
        missing_splits: requested splits without a folder in the release (not an error).
        complete: True when meta.json was written (at least one video converted).
        seconds: wall time.
    """

    out_dir: Path
    num_videos: int = 0
    num_clips: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    missing_splits: list[str] = field(default_factory=list)
    complete: bool = False
    seconds: float = 0.0

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE

    @property
    def meta_path(self) -> Path:
        return self.out_dir / META_FILE

    def print_summary(self, console: Any = None) -> None:
        """Print the counts and, when any, tables of skipped files and warnings (Rich)."""
        print_summary(self, console)


def write_report(result: PrepareResult, splits: Sequence[str], src_root: str | Path) -> None:
    """Write ``<cache>/prepare_report.json``: counts, skipped files and warnings."""
    report = {
        "source_root": str(src_root),
        "splits": list(splits),
        "missing_splits": result.missing_splits,
        "num_videos": result.num_videos,
        "num_clips": result.num_clips,
        "num_skipped": len(result.skipped),
        "seconds": round(result.seconds, 3),
        "skipped": [{"file": f, "error": m} for f, m in result.skipped],
        "warnings": [{"file": f, "warning": m} for f, m in result.warnings],
    }
    atomic_write_text(result.report_path, json.dumps(report, indent=2) + "\n")


def fail(result: PrepareResult, splits: Sequence[str], src_root: str | Path) -> None:
    """Stop a strict prepare at its last skipped file: write the report, raise PrepareError."""
    write_report(result, splits, src_root)
    file, message = result.skipped[-1]
    if not message.startswith(file):
        message = f"{file}: {message}"
    raise PrepareError(f"{message} (--strict: stopped at the first bad file)", result.skipped)


def print_summary(result: PrepareResult, console: Any = None) -> None:
    """Print the counts and, when any, a table of skipped files with their errors (Rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    summary = Table(title="prepare summary", show_header=False)
    summary.add_row("cache", str(result.out_dir))
    summary.add_row("videos converted", str(result.num_videos))
    summary.add_row("clips", str(result.num_clips))
    summary.add_row("skipped", str(len(result.skipped)))
    if result.warnings:
        summary.add_row("warnings", str(len(result.warnings)))
    if result.missing_splits:
        summary.add_row("splits not in the release", ", ".join(result.missing_splits))
    summary.add_row("complete", "yes" if result.complete else "NO (no meta.json)")
    summary.add_row("seconds", f"{result.seconds:.1f}")
    console.print(summary)
    for title, column, rows in (
        ("skipped", "problem", result.skipped),
        ("warnings", "warning", result.warnings),
    ):
        if rows:
            console.print(
                _file_table(f"{title} ({len(rows)}), see {result.report_path}", column, rows)
            )


def _file_table(title: str, column: str, rows: list[tuple[str, str]]) -> Any:
    """A Rich table of (file, message) rows; a message's leading ``<file>: `` is not repeated."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("file", overflow="fold")
    table.add_column(column, overflow="fold")
    for file, message in rows:
        table.add_row(file, message.removeprefix(f"{file}: "))
    return table
