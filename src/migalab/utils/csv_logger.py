"""``ResumableCSVLogger``: Lightning's ``CSVLogger`` whose ``metrics.csv`` survives a resume.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts, so a run resumed in
its run dir (``migalab-train hydra.run.dir=<run> ckpt_path=last``) would lose the rows of the
epochs before the checkpoint. ``ResumableCSVLogger.keep_history(ckpt_path)`` (called by
``migalab.train`` before the fit when it resumes) reads the old file first and keeps its rows
logged before the checkpoint's step, so the file stays one continuous log. Without a resume it
is Lightning's ``CSVLogger`` unchanged (``conf/logger/csv.yaml`` uses it).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger

from migalab.utils.checkpoints import load_checkpoint

log = logging.getLogger(__name__)

__all__ = ["ResumableCSVLogger"]


class ResumableCSVLogger(CSVLogger):
    """A ``CSVLogger`` (same arguments, same files) that can keep its history on a resume."""

    def keep_history(self, ckpt_path: str | Path) -> bool:
        """Before a fit resumes from ``ckpt_path``: keep the rows of an existing ``metrics.csv``
        logged before the checkpoint's ``global_step`` (the writer then starts with them, and the
        new rows follow). Returns whether history was kept.

        Does nothing when there is no such file; when the checkpoint's step cannot be read (not
        a plain Lightning checkpoint) the log restarts, with a warning. Call it on rank 0, before
        anything else touches ``experiment`` (creating the writer removes the old file).
        """
        path = Path(self.log_dir) / "metrics.csv"
        if not path.is_file():
            return False
        try:
            # mmap: read the step without loading every tensor (fit loads the checkpoint itself)
            ckpt = load_checkpoint(ckpt_path, mmap=True)
            step = ckpt["global_step"]
        except Exception as err:  # not a plain Lightning checkpoint: start a fresh log
            log.warning("could not read the step of %s (%s); %s restarts", ckpt_path, err, path)
            return False
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            keys, rows = list(reader.fieldnames or []), list(reader)
        rows = [r for r in rows if r.get("step", "").isdigit() and int(r["step"]) < step]
        writer = self.experiment  # the writer removes the old file here
        writer.metrics_keys = sorted(set(writer.metrics_keys) | set(keys))
        writer.metrics = [{k: v for k, v in r.items() if v != ""} for r in rows] + writer.metrics
        return True
