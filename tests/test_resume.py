"""Resume and fault tolerance: ``ckpt_path=last`` continues a run exactly from an epoch-end
checkpoint; SIGTERM mid-epoch saves ``interrupted.ckpt`` and the run resumes from it; the
training order is a function of (seed, epoch) and the loader position survives checkpoints."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning import Callback, LightningModule, Trainer

import migalab
from migalab.data.samplers import EpochShuffleSampler, ResumableDataLoader
from migalab.train import train
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides

ROOT = Path(__file__).resolve().parents[1]


class StopAfterEpochs(Callback):
    """Stop fitting after ``epochs`` epochs without changing max_epochs (so the lr schedule,
    built from max_epochs, is that of the full run): an interrupted run."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class SigtermAtStep(Callback):
    """Send this process SIGTERM (as SLURM preemption does) after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def _overrides(release: Path, cache: Path, epochs: int) -> list[str]:
    return [
        "trainer=cpu", "logger=csv", *tiny_data_overrides(release, cache),
        "model.encoder.base_channels=8", f"trainer.max_epochs={epochs}", "test=false",
        "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null",
    ]  # fmt: skip


def _state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_resume_from_last_matches_uninterrupted_run(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    base = _overrides(tiny_release, tiny_cache, epochs=4)
    full, full_trainer = train(compose_config("train", base, output_dir=tmp_path / "full"))

    stop = [
        "+callbacks.stop._target_=tests.test_resume.StopAfterEpochs",
        "+callbacks.stop.epochs=2",
    ]
    run = tmp_path / "run"
    _, part = train(compose_config("train", [*base, *stop], output_dir=run))
    assert part.current_epoch == 2
    last = _state(run / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, 2 * full_trainer.num_training_batches)

    resumed, trainer = train(compose_config("train", [*base, "ckpt_path=last"], output_dir=run))
    assert trainer.current_epoch == full_trainer.current_epoch == 4
    assert trainer.global_step == full_trainer.global_step
    for key in ("top1", "top5", "macro_f1", "mean_class_acc", "num_samples", "per_class_acc"):
        assert resumed["val"][key] == pytest.approx(full["val"][key], rel=0, abs=0, nan_ok=True)
    # same weights, bit for bit (order, augmentation, dropout, optimizer and schedule all match)
    a = _state(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    b = _state(run / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the CSV log continues in the same file: one train/top1 row per epoch 0..3
    with (run / "csv" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows if r["train/top1"]] == ["0", "1", "2", "3"]


def test_ckpt_path_last_without_checkpoint_is_an_error(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cfg = compose_config(
        "train", [*_overrides(tiny_release, tiny_cache, 1), "ckpt_path=last"], output_dir=tmp_path
    )
    with pytest.raises(FileNotFoundError, match=r"no checkpoint to resume from.*hydra\.run\.dir"):
        train(cfg)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # the child imports the same migalab as this process (and `tests` for the test callback)
    src = str(Path(migalab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(ROOT)])}
    cmd = [sys.executable, "-m", "migalab.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


@pytest.mark.slow  # two training subprocesses (~15 s)
def test_sigterm_mid_epoch_saves_checkpoint_and_resumes(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    base = [*_overrides(tiny_release, tiny_cache, epochs=3), f"hydra.run.dir={run}"]
    # 3 training batches per epoch: step 4 is the middle of the second epoch
    kill = ["+callbacks.kill._target_=tests.test_resume.SigtermAtStep", "+callbacks.kill.step=4"]
    proc = _cli([*base, *kill], cwd=tmp_path)
    assert proc.returncode == 143, proc.stderr[-3000:]  # 128 + SIGTERM, after a graceful stop
    assert "ckpt_path=last" in proc.stderr + proc.stdout
    interrupted = _state(run / "checkpoints" / "interrupted.ckpt")
    assert (interrupted["epoch"], interrupted["global_step"]) == (1, 4)
    # the loader position: epoch 1, one of its batches done
    assert interrupted["SkeletonDataModule"]["train_position"]["epoch"] == 1
    assert interrupted["SkeletonDataModule"]["train_position"]["batches"] == 1
    assert not (run / "metrics.json").exists()

    proc = _cli([*base, "ckpt_path=last"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "interrupted.ckpt" in proc.stdout + proc.stderr  # resumed from the interrupt
    last = _state(run / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (2, 9)  # 3 epochs x 3 steps, none repeated
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()  # removed once finished
    payload = json.loads((run / "metrics.json").read_text())
    assert payload["epochs"] == 3 and payload["val"]["num_samples"] > 0


def test_train_order_is_a_function_of_seed_and_epoch() -> None:
    data = list(range(20))
    a, b = EpochShuffleSampler(data, seed=7), EpochShuffleSampler(data, seed=7)
    a.set_epoch(3)
    for e in (0, 1, 2, 3):  # b went through the earlier epochs first
        b.set_epoch(e)
        list(b)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(b) != list(a) and sorted(b) == data


def test_loader_position_skips_trained_batches() -> None:
    data = list(range(20))
    sampler = EpochShuffleSampler(data, seed=0)
    loader = ResumableDataLoader(data, batch_size=4, sampler=sampler, drop_last=True)
    sampler.set_epoch(2)
    full = [b.tolist() for b in loader]
    loader.progress = lambda: (2, 5)  # 2 of 5 batches of epoch 2 trained
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 2, "batch_size": 4}

    fresh = ResumableDataLoader(data, batch_size=4, sampler=EpochShuffleSampler(data, seed=0),
                                drop_last=True)  # fmt: skip
    fresh.load_state_dict(state)
    assert [b.tolist() for b in fresh] == full[2:]
    fresh.sampler.set_epoch(3)  # the next epoch is complete again
    assert len([b for b in fresh]) == 5

    loader.progress = lambda: (5, 5)  # a finished epoch is stored as the next one, batch 0
    assert loader.state_dict() == {"epoch": 3, "batches": 0, "batch_size": 4}
