"""Tests for ``migalab.utils.callbacks``: config and RNG states in checkpoints, the interrupt
checkpoint, and finding the checkpoint to resume from (on hand-made files)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from migalab.utils.callbacks import (
    CONFIG_KEY,
    RNG_KEY,
    InterruptCheckpoint,
    RNGStateCheckpoint,
    StoreConfigInCheckpoint,
    checkpoint_problem,
    collect_rng_states,
    find_resume_checkpoint,
    resume_candidates,
    set_rng_states,
)


def _draws() -> tuple[float, float, float]:
    return torch.rand(1).item(), float(np.random.rand()), random.random()  # noqa: NPY002


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    states = collect_rng_states()
    first = _draws()
    torch.save(states, tmp_path / "rng.pt")
    set_rng_states(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert _draws() == first


def test_config_and_rng_states_go_into_each_checkpoint() -> None:
    ckpt: dict = {}
    StoreConfigInCheckpoint({"model": {"x": 1}}).on_save_checkpoint(None, None, ckpt)
    assert ckpt[CONFIG_KEY] == {"model": {"x": 1}}
    trainer = SimpleNamespace(world_size=1, global_rank=0)
    RNGStateCheckpoint().on_save_checkpoint(trainer, None, ckpt)
    assert ckpt[RNG_KEY]["world_size"] == 1 and len(ckpt[RNG_KEY]["states"]) == 1
    after_save = _draws()
    RNGStateCheckpoint().on_load_checkpoint(trainer, None, ckpt)
    assert _draws() == after_save  # restored to where the save was


def test_rng_states_of_another_world_size_restore_rank_zero_only() -> None:
    ckpt: dict = {}
    RNGStateCheckpoint().on_save_checkpoint(SimpleNamespace(world_size=1), None, ckpt)
    saved_draws = _draws()
    rank1 = SimpleNamespace(world_size=2, global_rank=1)
    with pytest.warns(UserWarning, match="only rank 0"):
        RNGStateCheckpoint().on_load_checkpoint(rank1, None, ckpt)
    assert _draws() != saved_draws  # rank 1 keeps its own state
    with pytest.warns(UserWarning, match="only rank 0"):
        RNGStateCheckpoint().on_load_checkpoint(SimpleNamespace(world_size=2, global_rank=0),
                                                None, ckpt)  # fmt: skip
    assert _draws() == saved_draws


def test_interrupt_checkpoint_path_and_cleanup(tmp_path: Path) -> None:
    cb = InterruptCheckpoint(str(tmp_path), filename="stop")
    assert cb.ckpt_path == str(tmp_path / "stop.ckpt")
    Path(cb.ckpt_path).write_bytes(b"x")
    cb.on_fit_end(SimpleNamespace(is_global_zero=False), None)
    assert Path(cb.ckpt_path).exists()  # only rank 0 removes it
    cb.on_fit_end(SimpleNamespace(is_global_zero=True), None)
    assert not Path(cb.ckpt_path).exists()


def _full(path: Path, step: int, mtime: int) -> Path:
    torch.save({"state_dict": {}, "loops": {}, "global_step": step}, path)
    os.utime(path, ns=(mtime, mtime))
    return path


def _trainer(tmp_path: Path) -> SimpleNamespace:
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    callbacks = [ModelCheckpoint(dirpath=str(ckpts)), InterruptCheckpoint(str(ckpts))]
    return SimpleNamespace(callbacks=callbacks, default_root_dir=str(tmp_path))


def test_resume_candidates_newest_first(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    last = _full(tmp_path / "checkpoints" / "last.ckpt", 10, 1_000_000_000)
    last_v1 = _full(tmp_path / "checkpoints" / "last-v1.ckpt", 12, 2_000_000_000)
    hpc = _full(tmp_path / "hpc_ckpt_3.ckpt", 14, 3_000_000_000)
    _full(tmp_path / "checkpoints" / "epoch_001.ckpt", 8, 4_000_000_000)  # not a resume file
    found, searched = resume_candidates(trainer)
    assert found == [hpc, last_v1, last]
    assert str(tmp_path / "checkpoints" / "interrupted.ckpt") in searched
    assert find_resume_checkpoint(trainer) == str(hpc)


def test_a_newer_unreadable_checkpoint_is_skipped(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    last = _full(tmp_path / "checkpoints" / "last.ckpt", 10, 1_000_000_000)
    cut = tmp_path / "checkpoints" / "interrupted.ckpt"
    cut.write_bytes(b"PK\x03\x04 cut short by kill -9")
    os.utime(cut, ns=(2_000_000_000, 2_000_000_000))
    weights_only = tmp_path / "hpc_ckpt_1.ckpt"
    torch.save({"state_dict": {}}, weights_only)
    os.utime(weights_only, ns=(3_000_000_000, 3_000_000_000))
    assert "not a full training checkpoint (no loops, global_step)" == checkpoint_problem(
        weights_only
    )
    assert checkpoint_problem(cut) and checkpoint_problem(last) is None
    with pytest.warns(UserWarning, match="cannot resume from"):
        assert find_resume_checkpoint(trainer) == str(last)


def test_nothing_to_resume_from(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path)
    assert find_resume_checkpoint(trainer, required=False) is None
    with pytest.raises(FileNotFoundError, match=r"last\*\.ckpt.*hydra\.run\.dir"):
        find_resume_checkpoint(trainer)
    bare = SimpleNamespace(callbacks=[], default_root_dir="")
    with pytest.raises(FileNotFoundError, match="no ModelCheckpoint with a dirpath"):
        find_resume_checkpoint(bare)
