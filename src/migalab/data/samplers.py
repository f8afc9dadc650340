"""Training samplers and the resumable training loader.

Sampling, distributed training and resume
-----------------------------------------
* Training order is a function of ``(seed, epoch)`` only (a ``DistributedSampler`` with its
  ``set_epoch``, also with one process), so epoch *k* sees the same clips in the same order
  whether the run went straight through or was resumed from a checkpoint.
* When the trainer is distributed, the datamodule builds the distributed samplers itself
  (Lightning does not re-wrap a ``DistributedSampler``): training shards are padded to equal
  length (DDP needs the same number of steps on every rank); validation / test / predict use
  :class:`~lightning.pytorch.overrides.distributed.UnrepeatedDistributedSampler`, so every clip
  is evaluated exactly once (no padding duplicates; per-rank counts differ by at most one and
  torchmetrics syncs uneven counts).
* The training loader is resumable (:class:`ResumableDataLoader`): a checkpoint records the
  epoch and the number of batches already trained in it, and a mid-epoch resume skips those
  batches instead of restarting the epoch. When iterated under a trainer it also re-seeds the
  global torch / numpy / python RNGs from ``(seed, epoch, rank)`` at the start of every training
  epoch, so augmentations and dropout of epoch *k* do not depend on how many epochs ran in this
  process (exact with ``num_workers=0`` or non-persistent workers; persistent workers keep their
  own streams across epochs).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler


def global_seed(seed: int | None = None) -> int:
    """``seed``, else the seed of ``seed_everything`` (``PL_GLOBAL_SEED``), else 0."""
    if seed is not None:
        return int(seed)
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A 32-bit seed that is a function of (seed, epoch, rank) only."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])


def reseed_global_rngs(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's and python's global RNGs."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the global state is what we reseed)
    random.seed(seed)


class _ResumeSkipMixin:
    """Sampler part of mid-epoch resume: skip the first ``n`` indices of one epoch."""

    epoch: int
    _skip: tuple[int, int] | None = None

    def skip_in_epoch(self, epoch: int, num_indices: int) -> None:
        """Drop the first ``num_indices`` indices whenever epoch ``epoch`` is iterated."""
        self._skip = (int(epoch), int(num_indices)) if num_indices > 0 else None

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)  # type: ignore[misc]
        if self._skip is not None and self._skip[0] != epoch:
            self._skip = None

    def _apply_skip(self, indices: Sequence[int]) -> Iterator[int]:
        if self._skip is not None and self._skip[0] == self.epoch:
            indices = indices[self._skip[1] :]
        return iter(indices)


class EpochShuffleSampler(_ResumeSkipMixin, DistributedSampler):
    """Training sampler: a permutation drawn from ``seed + epoch`` (torch's DistributedSampler
    rule), sharded over ``num_replicas`` ranks (padded to equal length). Works without a process
    group when ``num_replicas``/``rank`` are given (one process: ``1``/``0``)."""

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[int]:
        return self._apply_skip(list(super().__iter__()))


def weighted_draw(weights: torch.Tensor, num: int, seed: int, epoch: int) -> list[int]:
    """``num`` indices drawn with replacement ∝ ``weights``, a function of (seed, epoch)."""
    g = torch.Generator()
    g.manual_seed(int(seed) + int(epoch))
    return torch.multinomial(weights, num, replacement=True, generator=g).tolist()


class EpochWeightedRandomSampler(_ResumeSkipMixin, WeightedRandomSampler):
    """``WeightedRandomSampler`` (with replacement) whose draw is a function of (seed, epoch)."""

    def __init__(self, weights: Sequence[float] | torch.Tensor, num_samples: int, seed: int = 0):
        super().__init__(weights, num_samples, replacement=True)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # WeightedRandomSampler has no set_epoch
        self.epoch = int(epoch)
        if self._skip is not None and self._skip[0] != epoch:
            self._skip = None

    def __iter__(self) -> Iterator[int]:
        return self._apply_skip(
            weighted_draw(self.weights, self.num_samples, self.seed, self.epoch)
        )


class DistributedWeightedSampler(_ResumeSkipMixin, DistributedSampler):
    """Class-balanced training sampler for DDP: one global weighted draw per (seed, epoch) of
    ``num_replicas x ceil(N / num_replicas)`` indices, strided over the ranks."""

    def __init__(
        self,
        dataset: Dataset,
        weights: Sequence[float] | torch.Tensor,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.weights = torch.as_tensor(weights, dtype=torch.double)

    def __iter__(self) -> Iterator[int]:
        draw = weighted_draw(self.weights, self.total_size, self.seed, self.epoch)
        return self._apply_skip(draw[self.rank : self.total_size : self.num_replicas])


class _LazyEpochIterator:
    """Iterator of one epoch of a :class:`ResumableDataLoader`, created at the first batch.

    Lightning creates the first training iterator early (``estimated_stepping_batches``, before
    a checkpoint's loop state is restored; with workers, DataLoader iterators draw worker seeds
    and prefetch sample indices as soon as they are created). Deferring the real iterator to the
    first ``next`` makes it use the sampler's final epoch and the re-seeded RNGs.
    """

    def __init__(self, loader: ResumableDataLoader) -> None:
        self.loader = loader
        self._it: Iterator[Any] | None = None

    def __iter__(self) -> _LazyEpochIterator:
        return self

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        if self._it is None:
            self._it = self.loader._start_epoch()
        return next(self._it)


class ResumableDataLoader(DataLoader):
    """Training DataLoader with a checkpointable position and per-epoch RNG seeding.

    ``state_dict`` is ``{"epoch", "batches", "batch_size"}``: the epoch and the number of its
    batches already trained (read from the trainer through ``progress``; a finished epoch is
    stored as the next epoch at batch 0). ``load_state_dict`` sets the sampler's epoch and makes
    it skip ``batches x batch_size`` indices of that epoch, so a mid-epoch resume continues with
    the next batch instead of repeating the start of the epoch. When ``epoch_seed_fn`` is set (the
    datamodule does so under a trainer), each epoch's first batch is preceded by re-seeding the
    global RNGs with ``epoch_seed_fn(epoch)`` (not when resuming mid-epoch: the checkpoint's RNG
    states then stand). Attributes set after construction are dropped if Lightning
    re-instantiates the loader (e.g. ``overfit_batches``); it then behaves as a plain DataLoader.
    """

    #: () -> (batches trained in the current epoch, batches per epoch)
    progress: Callable[[], tuple[int, int]] | None = None
    #: epoch -> seed for the global RNGs at the start of that epoch
    epoch_seed_fn: Callable[[int], int] | None = None
    #: (resume) this rank's transform generator states, applied when the epoch resumes
    _transform_rngs: dict[str, Any] | None = None

    @property
    def epoch_sampler(self) -> Any:
        """The sampler with ``set_epoch``/``skip_in_epoch`` (None if Lightning replaced it)."""
        sampler = self.sampler
        if not hasattr(sampler, "skip_in_epoch") and self.batch_sampler is not None:
            sampler = getattr(self.batch_sampler, "sampler", sampler)
        return sampler if hasattr(sampler, "skip_in_epoch") else None

    def __iter__(self) -> Any:
        if self.epoch_seed_fn is None or self.epoch_sampler is None:
            return super().__iter__()
        return _LazyEpochIterator(self)

    def _start_epoch(self) -> Iterator[Any]:
        sampler = self.epoch_sampler
        skip = getattr(sampler, "_skip", None)
        if not (skip and skip[0] == sampler.epoch):
            if self.epoch_seed_fn is not None:
                reseed_global_rngs(self.epoch_seed_fn(sampler.epoch))
            return super().__iter__()
        # mid-epoch resume: the checkpoint's RNG states stand, and creating the iterator draws
        # the workers' base seed from torch's global RNG -- a draw the interrupted run made at
        # the start of the epoch, not here. Undo it, so the remaining batches' augmentations and
        # dropout are drawn exactly as in the uninterrupted run.
        from migalab.utils.callbacks import collect_rng_states, set_rng_states

        states = collect_rng_states()
        iterator = super().__iter__()
        set_rng_states(states)
        if self._transform_rngs is not None:  # the augmentation streams, where they stopped
            restore_transform_rngs(self.dataset, self._transform_rngs)
            self._transform_rngs = None
        return iterator

    def state_dict(self) -> dict[str, Any]:
        sampler = self.epoch_sampler
        epoch = int(sampler.epoch) if sampler is not None else 0
        done, total = self.progress() if self.progress is not None else (0, 0)
        state: dict[str, Any] = {"batch_size": int(self.batch_size or 1)}
        if total and done >= total:  # the epoch is complete: the next one starts from its top
            epoch, done = epoch + 1, 0
        elif done > 0 and self.progress is not None:
            # mid-epoch: every rank's augmentation generators (gathered: rank 0 writes the
            # checkpoint; collective under DDP, as checkpoint saving is)
            state["transform_rngs"] = _gather_object(transform_rngs(self.dataset))
        return {"epoch": epoch, "batches": int(done), **state}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        sampler = self.epoch_sampler
        if sampler is None:
            return
        sampler.set_epoch(int(state["epoch"]))
        sampler.skip_in_epoch(int(state["epoch"]), int(state["batches"]) * int(state["batch_size"]))
        per_rank = state.get("transform_rngs") or []
        if len(per_rank) == _world_size():
            self._transform_rngs = per_rank[_rank()]


def _random_transforms(root: Any) -> dict[str, Any]:
    """The random transforms (``RandomTransform``) reachable from a dataset, by attribute path:
    its pipeline's steps, nested pipelines, per-modality pipelines of a multimodal dataset."""
    from migalab.data.transforms_base import RandomTransform

    found: dict[str, Any] = {}
    seen: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if id(obj) in seen or depth > 8:
            return
        seen.add(id(obj))
        if isinstance(obj, RandomTransform):
            found[path] = obj
        if isinstance(obj, list | tuple):
            for i, item in enumerate(obj):
                visit(item, f"{path}[{i}]", depth + 1)
        elif isinstance(obj, dict):
            for key, item in obj.items():
                visit(item, f"{path}[{key!r}]", depth + 1)
        elif type(obj).__module__.startswith("migalab.") and hasattr(obj, "__dict__"):
            for key, item in vars(obj).items():
                visit(item, f"{path}.{key}", depth + 1)

    visit(root, "dataset", 0)
    return found


def transform_rngs(dataset: Any) -> dict[str, Any]:
    """The state of every training-mode random transform's numpy generator in ``dataset``
    (this process' copies: exact for ``num_workers=0``, whose transforms run here)."""
    states = {path: t.rng_state() for path, t in _random_transforms(dataset).items()}
    return {path: state for path, state in states.items() if state is not None}


def restore_transform_rngs(dataset: Any, states: Mapping[str, Any]) -> None:
    """Put the generators saved by :func:`transform_rngs` back (matched by attribute path)."""
    found = _random_transforms(dataset)
    for path, saved in states.items():
        if path in found:
            found[path].set_rng_state(saved)


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _gather_object(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` without a process group)."""
    if _world_size() == 1:
        return [obj]
    out: list[Any] = [None] * _world_size()
    torch.distributed.all_gather_object(out, obj)
    return out
