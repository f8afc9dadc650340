"""Tests for ``migalab.data.samplers``: seeds, epoch-determined order, DDP shards, weighted
draws, skipping for a mid-epoch resume, transform generator states."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from migalab.data.samplers import (
    DistributedWeightedSampler,
    EpochShuffleSampler,
    EpochWeightedRandomSampler,
    epoch_seed,
    global_seed,
    reseed_global_rngs,
    restore_transform_rngs,
    transform_rngs,
    weighted_draw,
)
from migalab.data.skeleton.transforms import Compose, RandomFlip, UniformSample


def test_global_seed_prefers_the_argument_then_lightning(monkeypatch) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    assert global_seed() == 0
    monkeypatch.setenv("PL_GLOBAL_SEED", "17")
    assert global_seed() == 17 and global_seed(3) == 3


def test_epoch_seed_is_a_32_bit_function_of_seed_epoch_rank() -> None:
    seeds = {epoch_seed(1, e, r) for e in range(4) for r in range(3)}
    assert len(seeds) == 12 and all(0 <= s < 2**32 for s in seeds)
    assert epoch_seed(1, 2, 1) == epoch_seed(1, 2, 1) != epoch_seed(2, 2, 1)


def test_reseed_global_rngs_repeats_every_generator() -> None:
    def draws() -> tuple[float, float, float]:
        return torch.rand(1).item(), float(np.random.rand()), random.random()  # noqa: NPY002

    reseed_global_rngs(123)
    first = draws()
    reseed_global_rngs(123)
    assert draws() == first


@pytest.mark.parametrize("n", [20, 23])
def test_ddp_shards_are_disjoint_equal_and_cover_the_dataset(n: int) -> None:
    data = list(range(n))
    shards = []
    for rank in range(4):
        s = EpochShuffleSampler(data, num_replicas=4, rank=rank, seed=5)
        s.set_epoch(2)
        shards.append(list(s))
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-n // 4)
    flat = [i for s in shards for i in s]
    assert set(flat) == set(data)
    assert len(flat) - len(set(flat)) == 4 * -(-n // 4) - n  # only the padding repeats
    if n % 4 == 0:
        assert all(set(a).isdisjoint(b) for i, a in enumerate(shards) for b in shards[i + 1 :])


def test_shuffle_depends_on_epoch_and_seed_only() -> None:
    data = list(range(30))
    a, b = EpochShuffleSampler(data, seed=1), EpochShuffleSampler(data, seed=1)
    a.set_epoch(5)
    b.set_epoch(5)
    assert list(a) == list(b) and sorted(a) == data
    b.set_epoch(6)
    assert list(a) != list(b)
    assert list(a) != list(EpochShuffleSampler(data, seed=2))


def test_skip_in_epoch_drops_the_trained_indices_of_that_epoch_only() -> None:
    data = list(range(12))
    s = EpochShuffleSampler(data, seed=0)
    s.set_epoch(1)
    full = list(s)
    s.skip_in_epoch(1, 5)
    assert list(s) == full[5:]
    s.set_epoch(2)  # another epoch: the skip is forgotten
    assert len(list(s)) == 12
    s.set_epoch(1)
    assert list(s) == full


def test_weighted_draw_is_deterministic_and_respects_zero_weights() -> None:
    w = torch.tensor([0.0, 1.0, 3.0, 0.0])
    a = weighted_draw(w, 200, seed=4, epoch=1)
    assert a == weighted_draw(w, 200, seed=4, epoch=1) != weighted_draw(w, 200, seed=4, epoch=2)
    assert set(a) <= {1, 2} and a.count(2) > a.count(1)


def test_epoch_weighted_sampler_draws_per_epoch_and_skips() -> None:
    w = [1.0, 1.0, 2.0, 0.0]
    s = EpochWeightedRandomSampler(w, num_samples=10, seed=3)
    s.set_epoch(2)
    draw = list(s)
    assert draw == weighted_draw(torch.as_tensor(w, dtype=torch.double), 10, 3, 2)
    s.skip_in_epoch(2, 4)
    assert list(s) == draw[4:] and len(s) == 10
    s.set_epoch(3)
    assert len(list(s)) == 10


def test_distributed_weighted_shards_stride_one_global_draw() -> None:
    data, w = list(range(10)), [1.0] * 5 + [4.0] * 5
    shards = []
    for rank in range(3):
        s = DistributedWeightedSampler(data, w, num_replicas=3, rank=rank, seed=9)
        s.set_epoch(1)
        shards.append(list(s))
    total = 3 * 4  # ceil(10 / 3) per rank
    draw = weighted_draw(torch.as_tensor(w, dtype=torch.double), total, 9, 1)
    assert [len(s) for s in shards] == [4, 4, 4]
    assert [draw[r::3] for r in range(3)] == shards


def test_transform_generators_only_of_training_streams() -> None:
    torch.manual_seed(0)
    pipeline = Compose([UniformSample(4), RandomFlip(seed=1), UniformSample(4, test_mode=True)])
    assert transform_rngs(pipeline) == {}  # nothing drawn yet; the fixed seed is never saved
    pipeline[0].rng.random()
    saved = transform_rngs(pipeline)
    assert list(saved) == ["dataset.transforms[0]"] and saved["dataset.transforms[0]"]["seed"] == 0
    expected = pipeline[0].rng.random()
    other = Compose([UniformSample(4), RandomFlip(seed=1), UniformSample(4, test_mode=True)])
    restore_transform_rngs(other, saved)
    assert other[0].rng.random() == expected
