"""Tests for ``migalab.utils.csv_logger.ResumableCSVLogger`` (metrics.csv across a resume)."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from lightning.pytorch.loggers import CSVLogger

from migalab.utils.csv_logger import ResumableCSVLogger
from migalab.utils.hydra import compose_config


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _first_run(tmp_path: Path) -> Path:
    """A run's log with rows at steps 0, 5, 10 and 15 (what a plain CSVLogger writes)."""
    first = CSVLogger(tmp_path, name="csv", version="")
    for step in (0, 5, 10, 15):
        first.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    first.save()
    return Path(first.log_dir) / "metrics.csv"


def test_keep_history_keeps_rows_before_the_checkpoint_step(tmp_path: Path) -> None:
    path = _first_run(tmp_path)
    ckpt = tmp_path / "last.ckpt"
    torch.save({"global_step": 10, "state_dict": {}}, ckpt)

    logger = ResumableCSVLogger(tmp_path, name="csv", version="")
    assert logger.keep_history(ckpt)
    logger.log_metrics({"val/top1": 0.5}, step=10)
    logger.save()

    rows = _rows(path)
    assert [r["step"] for r in rows] == ["0", "5", "10"]  # 10 and 15 of the old run dropped
    assert rows[0]["train/loss"] == "1.0" and rows[-1]["val/top1"] == "0.5"
    assert rows[-1]["train/loss"] == ""  # the columns of both runs are kept


def test_without_a_readable_step_the_log_restarts(tmp_path: Path) -> None:
    path = _first_run(tmp_path)
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    logger = ResumableCSVLogger(tmp_path, name="csv", version="")
    assert not logger.keep_history(bad)
    logger.log_metrics({"val/top1": 0.25}, step=3)
    logger.save()
    assert [r["step"] for r in _rows(path)] == ["3"]


def test_no_old_file_is_a_no_op_and_the_config_uses_the_logger(tmp_path: Path) -> None:
    logger = ResumableCSVLogger(tmp_path, name="csv", version="")
    assert not logger.keep_history(tmp_path / "missing.ckpt")
    assert not (tmp_path / "csv").exists()  # nothing created before the first log
    cfg = compose_config("train", ["logger=csv"], output_dir=tmp_path)
    assert cfg.logger.csv._target_ == "migalab.utils.csv_logger.ResumableCSVLogger"
