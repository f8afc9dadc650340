"""W&B integration: an offline training run with per-class tables, confusion matrices and the best
checkpoint as an artifact; one W&B run per job; the unreachable-service fallback to offline."""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import hydra
import pytest
import torch
import wandb

from migalab.train import train
from migalab.utils.hydra import compose_config, instantiate_callbacks, instantiate_loggers
from migalab.utils.wandb import (
    RUN_ID_FILE,
    MigalabWandbLogger,
    WandbReports,
    finish_wandb,
    per_class_rows,
    wandb_logger,
    wandb_loggers,
)
from tests.conftest import tiny_data_overrides


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline W&B whose caches and artifact staging stay under tmp_path."""
    home = tmp_path / "wandb_home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    yield home
    if wandb.run is not None:  # a failed test must not leave its run to the next one
        wandb.finish()


def test_logger_and_callbacks_configs(wandb_env: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", ["logger=wandb", "callbacks=wandb"], output_dir=tmp_path)
    assert cfg.logger.wandb.group == "agcn_joint_synth"  # the default experiment
    assert cfg.logger.wandb.job_type == "train"
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert any(isinstance(c, WandbReports) for c in callbacks)
    assert any(type(c).__name__ == "LearningRateMonitor" for c in callbacks)  # from default
    (lg,) = instantiate_loggers(cfg.logger)
    assert isinstance(lg, MigalabWandbLogger) and lg.offline and lg.save_dir == str(tmp_path)
    assert lg._experiment is None  # offline: started lazily by the trainer

    cfg = compose_config("train", ["logger=wandb", "experiment=agcn_bone_synth"], tmp_path)
    assert cfg.logger.wandb.group == "agcn_bone_synth"


def test_offline_training_run_logs_reports(
    wandb_env: Path,
    tiny_release: Path,
    tiny_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # train() finishes the run at its end; keep it open here to inspect what was logged
    monkeypatch.setattr("migalab.train.finish_wandb", lambda loggers, exit_code=None: None)
    overrides = [
        "trainer=cpu",
        "logger=wandb",
        "callbacks=wandb",
        "callbacks.wandb_reports.log_best_checkpoint=true",
        "callbacks.progress_bar.refresh_rate=0",
        *tiny_data_overrides(tiny_release, tiny_cache),
        "model.encoder.base_channels=8",
        "trainer.max_epochs=1",
    ]
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    payload, trainer = train(cfg)
    (lg,) = wandb_loggers(trainer.loggers)
    run = lg.experiment
    assert run.settings.mode == "offline"
    assert (run.group, run.job_type, run.project) == ("agcn_joint_synth", "train", "migalab")
    assert run.config["model"]["encoder"]["base_channels"] == 8  # the config
    summary_keys = set(run.summary.keys())
    for key in ("val/top1", "test/top1", "val/per_class", "val/confusion_matrix_table",
                "test/per_class", "test/confusion_matrix_table"):  # fmt: skip
        assert key in summary_keys, key
    assert any(k.startswith("lr-") for k in summary_keys)  # LearningRateMonitor
    finish_wandb(trainer.loggers)
    assert wandb.run is None

    # offline run files under the run dir, for `wandb sync`
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(run_dir.glob("run-*.wandb"))
    tables = run_dir / "files" / "media" / "table"
    per_class_files = sorted((tables / "val").glob("per_class_*.table.json"))
    assert per_class_files and list((tables / "val").glob("confusion_matrix_table_*.table.json"))
    table = json.loads(per_class_files[-1].read_text())
    assert table["columns"] == ["class_id", "class", "accuracy", "support"]
    assert len(table["data"]) == cfg.data.num_classes

    # what was logged: one report per validation (sanity check excluded) and per test
    (reports,) = [c for c in trainer.callbacks if isinstance(c, WandbReports)]
    assert [r["split"] for r in reports.records] == ["val", "val", "test"]  # fit, validate, test
    for record, split in ((reports.records[-2], "val"), (reports.records[-1], "test")):
        cm = torch.tensor(record["confusion_matrix"], dtype=torch.float64)
        summary = payload[split]
        assert cm.shape == (cfg.data.num_classes, cfg.data.num_classes)
        assert int(cm.sum()) == summary["num_samples"]
        assert float(cm.trace() / cm.sum()) == pytest.approx(summary["top1"], abs=1e-6)
        for i, name, acc, support in record["per_class"]:
            assert support == int(cm[i].sum()) == summary["support"][name]
            if support:
                assert acc == pytest.approx(float(cm[i, i] / support), abs=1e-6)
            else:
                assert acc is None and math.isnan(summary["per_class_acc"][name])
    (artifact,) = reports.artifacts
    assert artifact["path"] == payload["ckpt_path"] and "best" in artifact["aliases"]


def test_each_job_gets_its_own_run(wandb_env: Path, tmp_path: Path) -> None:
    ids = []
    for job in range(2):  # as the jobs of a multirun in one process: finish_wandb between them
        lg = wandb_logger(save_dir=str(tmp_path / str(job)), project="migalab-test")
        lg.log_metrics({"x": float(job)}, step=0)
        ids.append(lg.experiment.id)
        finish_wandb([lg])
    # a job that ended without finish_wandb: the next logger finishes its run first
    stale = wandb_logger(save_dir=str(tmp_path / "stale"), project="migalab-test")
    ids.append(stale.experiment.id)
    fresh = wandb_logger(save_dir=str(tmp_path / "fresh"), project="migalab-test")
    ids.append(fresh.experiment.id)
    finish_wandb(fresh)
    assert len(set(ids)) == 4 and wandb.run is None
    finish_wandb(None)  # no loggers: nothing to do


def _closed_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_service_falls_back_to_offline(
    wandb_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_closed_local_port()}"  # loopback, nothing listens there
    fake_key = "0" * 40
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.setenv("WANDB_API_KEY", fake_key)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="migalab.utils.wandb"):
        lg = wandb_logger(
            offline=False,
            init_timeout=5,
            save_dir=str(tmp_path),
            project="migalab-test",
            # wandb reads its environment once per process: name the service explicitly too
            settings={"base_url": url, "api_key": fake_key},
        )
    assert time.monotonic() - start < 60
    assert isinstance(lg, MigalabWandbLogger) and lg.offline
    assert "offline instead" in caplog.text
    lg.log_metrics({"x": 1.0}, step=0)  # the run goes on, offline
    assert lg.experiment.settings.mode == "offline"
    finish_wandb([lg])
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_per_class_rows_from_summary_or_confusion_matrix() -> None:
    """Per-class rows agree whether read from ``summarize`` output or derived from the matrix."""
    cm = [[2, 1, 0], [0, 0, 0], [1, 0, 3]]
    summary = {
        "per_class_acc": {"a": 2 / 3, "b": float("nan"), "c": 0.75},
        "support": {"a": 3, "b": 0, "c": 4},
        "confusion_matrix": cm,
    }
    from_summary = per_class_rows(summary, None)
    from_counts = per_class_rows(None, torch.tensor(cm), ["a", "b", "c"])
    assert from_summary == from_counts == [[0, "a", 2 / 3, 3], [1, "b", None, 0], [2, "c", 0.75, 4]]


def test_reports_without_wandb_logger_do_not_fail(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """callbacks=wandb with the csv logger: records are kept, nothing is sent, nothing fails."""
    overrides = [
        "trainer=cpu",
        "logger=csv",
        "callbacks=wandb",
        *tiny_data_overrides(tiny_release, tiny_cache),
        "model.encoder.base_channels=8",
    ]
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    callbacks = instantiate_callbacks(cfg.callbacks)
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    model = hydra.utils.instantiate(cfg.model)
    datamodule = hydra.utils.instantiate(cfg.data)
    trainer.validate(model, datamodule=datamodule, verbose=False)
    (reports,) = [c for c in callbacks if isinstance(c, WandbReports)]
    (record,) = reports.records
    assert record["split"] == "val"
    assert sum(map(sum, record["confusion_matrix"])) == model.last_summaries["val"]["num_samples"]


def test_resumed_run_continues_the_same_wandb_run(
    wandb_env: Path, tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """A job started again in its run dir (requeue, ``ckpt_path=auto``) logs into the W&B run
    of its first start: the same run id, resumed (offline here; online takes the same id)."""
    overrides = [
        "trainer=cpu", "logger=wandb", "callbacks.progress_bar.refresh_rate=0",
        *tiny_data_overrides(tiny_release, tiny_cache), "model.encoder.base_channels=8",
        "ckpt_path=auto", "test=false",
    ]  # fmt: skip
    train(compose_config("train", [*overrides, "trainer.max_epochs=1"], output_dir=tmp_path))
    first_id = (tmp_path / "wandb" / RUN_ID_FILE).read_text().strip()
    _, trainer = train(
        compose_config("train", [*overrides, "trainer.max_epochs=2"], output_dir=tmp_path)
    )
    assert trainer.current_epoch == 2  # resumed from last.ckpt, not restarted
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # offline-run-<date>_<time>-<run id>[-<n> when two starts share a second]
    ids = [re.fullmatch(r"offline-run-\d{8}_\d{6}-([a-z0-9]+)(-\d+)?", r.name) for r in runs]
    assert len(runs) == 2 and [m.group(1) for m in ids if m] == [first_id, first_id]
    # a new run dir gets a new W&B run
    other = tmp_path / "other"
    train(compose_config("train", [*overrides, "trainer.max_epochs=1"], output_dir=other))
    assert (other / "wandb" / RUN_ID_FILE).read_text().strip() != first_id
