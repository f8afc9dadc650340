"""Resume and fault tolerance: ``ckpt_path=last`` continues a run exactly from an epoch-end
checkpoint; SIGTERM mid-epoch saves ``interrupted.ckpt`` and the run resumes from it; the
training order is a function of (seed, epoch) and the loader position survives checkpoints."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

import migalab
from migalab.data.samplers import EpochShuffleSampler, ResumableDataLoader
from migalab.train import train
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides
from tests.test_console_scripts import run_script

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
    """``migalab-train`` by name; the child also imports ``tests`` (for the test callbacks)."""
    src = str(Path(migalab.__file__).resolve().parents[1])
    env = {"PYTHONPATH": os.pathsep.join([src, str(ROOT)])}
    return run_script(["migalab-train", *args], cwd=cwd, env=env)


def _requeue_run(base: list[str], run: Path, cwd: Path) -> list[subprocess.CompletedProcess]:
    """The same command, started until it exits 0 (at most 3 times), as a requeue would."""
    procs = []
    for _ in range(3):
        procs.append(_cli([*base, f"hydra.run.dir={run}"], cwd=cwd))
        if procs[-1].returncode != 143:
            break
    return procs


def _assert_same_run(a: Path, b: Path) -> None:
    """Same epochs, steps, metrics and weights (bit for bit) in run dirs ``a`` and ``b``."""
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    assert ma["epochs"] == mb["epochs"]
    for key in ("top1", "top5", "macro_f1", "mean_class_acc", "num_samples", "per_class_acc"):
        assert ma["val"][key] == pytest.approx(mb["val"][key], rel=0, abs=0, nan_ok=True), key
    la, lb = (_state(r / "checkpoints" / "last.ckpt") for r in (a, b))
    assert (la["epoch"], la["global_step"]) == (lb["epoch"], lb["global_step"])
    assert all(torch.equal(la["state_dict"][k], lb["state_dict"][k]) for k in la["state_dict"])


@pytest.mark.slow  # three training subprocesses (~20 s)
def test_requeued_command_continues_and_matches_uninterrupted_run(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """One command, started twice with a SIGTERM in between (a preempted, requeued job):
    ``ckpt_path=auto`` starts fresh, then resumes mid-epoch, and the run ends exactly as an
    uninterrupted one (same steps, metrics and weights: augmentation draws included)."""
    base = [*_overrides(tiny_release, tiny_cache, epochs=3), "ckpt_path=auto"]
    # 3 training batches per epoch: step 4 is the middle of the second epoch. The callback
    # fires once: the resumed run's steps are 5.. (a preemption does not come back either).
    kill = ["+callbacks.kill._target_=tests.test_resume.SigtermAtStep", "+callbacks.kill.step=4"]
    first, second = _requeue_run([*base, *kill], tmp_path / "run", tmp_path)
    assert first.returncode == 143, first.stderr[-3000:]  # 128 + SIGTERM, after a graceful stop
    assert "starting fresh" in first.stdout + first.stderr
    assert second.returncode == 0, second.stderr[-3000:]
    assert "ckpt_path=auto: resuming from" in second.stdout + second.stderr
    assert "interrupted.ckpt" in second.stdout + second.stderr
    run = tmp_path / "run"
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()  # removed once finished

    straight = tmp_path / "straight"
    (proc,) = _requeue_run(base, straight, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _state(run / "checkpoints" / "last.ckpt")["global_step"] == 9  # none repeated
    _assert_same_run(run, straight)


def test_sigterm_checkpoint_holds_position_and_rng_states(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    kill = ["+callbacks.kill._target_=tests.test_resume.SigtermAtStep", "+callbacks.kill.step=4"]
    cfg = compose_config(
        "train", [*_overrides(tiny_release, tiny_cache, epochs=3), *kill], output_dir=run
    )
    with pytest.raises(SIGTERMException):
        train(cfg)
    interrupted = _state(run / "checkpoints" / "interrupted.ckpt")
    assert (interrupted["epoch"], interrupted["global_step"]) == (1, 4)
    position = interrupted["ClipDataModule"]["train_position"]
    assert (position["epoch"], position["batches"]) == (1, 1)  # epoch 1, one batch trained
    assert interrupted["migalab_rng_states"]["world_size"] == 1
    assert not (run / "metrics.json").exists()


def test_ckpt_path_auto_skips_an_unreadable_newest_checkpoint(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint cut short (kill -9 while writing) is skipped for the previous one; with no
    checkpoint at all ``auto`` starts fresh."""
    base = [*_overrides(tiny_release, tiny_cache, epochs=2), "ckpt_path=auto"]
    stop = [
        "+callbacks.stop._target_=tests.test_resume.StopAfterEpochs",
        "+callbacks.stop.epochs=1",
    ]
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="migalab.train"):
        _, first = train(compose_config("train", [*base, *stop], output_dir=run))
    assert "starting fresh" in caplog.text and first.current_epoch == 1
    last = run / "checkpoints" / "last.ckpt"
    broken = run / "checkpoints" / "interrupted.ckpt"
    broken.write_bytes(last.read_bytes()[:1000])  # newer than last.ckpt, truncated
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="migalab.train"),
        pytest.warns(UserWarning, match=r"cannot resume from .*interrupted\.ckpt"),
    ):
        _, trainer = train(compose_config("train", base, output_dir=run))
    assert f"resuming from {last}" in caplog.text
    assert trainer.current_epoch == 2 and trainer.global_step == 2 * trainer.num_training_batches


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
    state = loader.state_dict()  # mid-epoch: also the augmentation generators (none here)
    assert state == {"epoch": 2, "batches": 2, "batch_size": 4, "transform_rngs": [{}]}

    fresh = ResumableDataLoader(data, batch_size=4, sampler=EpochShuffleSampler(data, seed=0),
                                drop_last=True)  # fmt: skip
    fresh.load_state_dict(state)
    assert [b.tolist() for b in fresh] == full[2:]
    fresh.sampler.set_epoch(3)  # the next epoch is complete again
    assert len([b for b in fresh]) == 5

    loader.progress = lambda: (5, 5)  # a finished epoch is stored as the next one, batch 0
    assert loader.state_dict() == {"epoch": 3, "batches": 0, "batch_size": 4}


def test_transform_generators_are_saved_and_restored() -> None:
    """Mid-epoch checkpoints keep each random transform's stream where it stopped."""
    import numpy as np

    from migalab.data.samplers import restore_transform_rngs, transform_rngs
    from migalab.data.skeleton.transforms import Compose, RandomAffine, RandomFlip

    pipeline = Compose([RandomAffine(), Compose([RandomFlip()])])
    torch.manual_seed(5)
    first = [t.rng.random() for t in (pipeline[0], pipeline[1][0])]  # streams in use
    saved = transform_rngs(pipeline)
    assert set(saved) == {"dataset.transforms[0]", "dataset.transforms[1].transforms[0]"}
    after = [t.rng.random() for t in (pipeline[0], pipeline[1][0])]
    fresh = Compose([RandomAffine(), Compose([RandomFlip()])])
    restore_transform_rngs(fresh, saved)
    assert [t.rng.random() for t in (fresh[0], fresh[1][0])] == after != first
    assert np.isfinite(after).all()
