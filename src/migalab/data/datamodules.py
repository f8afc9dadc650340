"""LightningDataModules: prepare data once (synthesise if asked, convert to the cache), then serve
split datasets.

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

import logging
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, WeightedRandomSampler

from migalab.data.cache import SkeletonCache
from migalab.data.datasets import SkeletonClipDataset
from migalab.data.formats.miga2025 import NUM_CLASSES
from migalab.data.prepare import is_cache_current, prepare_release
from migalab.data.skeleton.transforms import build_skeleton_pipeline

log = logging.getLogger(__name__)

DEFAULT_SPLITS = {"train": "train", "val": "validate", "test": "test"}


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
        if self.epoch_seed_fn is not None and not (skip and skip[0] == sampler.epoch):
            reseed_global_rngs(self.epoch_seed_fn(sampler.epoch))
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        sampler = self.epoch_sampler
        epoch = int(sampler.epoch) if sampler is not None else 0
        done, total = self.progress() if self.progress is not None else (0, 0)
        if total and done >= total:  # the epoch is complete: the next one starts from its top
            epoch, done = epoch + 1, 0
        return {"epoch": epoch, "batches": int(done), "batch_size": int(self.batch_size or 1)}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        sampler = self.epoch_sampler
        if sampler is None:
            return
        sampler.set_epoch(int(state["epoch"]))
        sampler.skip_in_epoch(int(state["epoch"]), int(state["batches"]) * int(state["batch_size"]))


class SkeletonDataModule(LightningDataModule):
    """iMiGUE skeleton clips (real MiGA release or the synthetic stand-in) for gesture training.

    ``prepare_data`` (rank 0 of each node) generates the synthetic release when ``synthetic`` is
    given and the release on disk does not match it, then converts the release into the
    skeleton cache unless the cache is current. ``setup`` builds one
    :class:`SkeletonClipDataset` per split. Batches: ``x`` (N, C, T, V, M), ``label`` (N,),
    ``index`` (N,).

    Args:
        release_root: MiGA 2025 release folder (``train/``, ``validate/``, ``test/``).
        cache_dir: where ``migalab-prepare`` output lives (created if missing).
        synthetic: :class:`~migalab.data.synthetic.SynthConfig` fields, or None for real data.
        layout: joint layout (``imigue22``, ``mg36``, ...).
        num_frames: T after uniform temporal sampling.
        stream: ``joint``, ``bone``, ``joint_motion`` or ``bone_motion``.
        num_persons: M.
        augment: keyword arguments of the training augmentations (see transforms).
        batch_size: per-device batch size (global batch = batch_size x devices x nodes x
            accumulate_grad_batches; ``model.lr_scaling`` can scale the lr with it).
        eval_batch_size: per-device batch size of validation / test / predict (default batch_size).
        num_workers, pin_memory, persistent_workers: DataLoader options.
        prefetch_factor: batches loaded in advance per worker (only used when num_workers > 0;
            None = torch's default, 2).
        sampler: ``random`` or ``class_balanced`` (sample clips with probability ∝ 1/n_class).
        splits: map of stage → release split name.
        prepare_per_node: run ``prepare_data`` on local rank 0 of every node (True, node-local
            disks) or only on global rank 0 (False, a filesystem shared by all nodes); Lightning's
            ``prepare_data_per_node``.
        seed: seed of the training order (None: the run seed from ``seed_everything``, else 0).
    """

    def __init__(
        self,
        release_root: str,
        cache_dir: str,
        synthetic: Mapping[str, Any] | None = None,
        layout: str = "imigue22",
        num_frames: int = 32,
        stream: str = "joint",
        num_persons: int = 1,
        augment: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        sampler: str = "random",
        splits: Mapping[str, str] | None = None,
        img_shape: tuple[int, int] = (720, 1280),
        prepare_workers: int = 1,
        num_classes: int = NUM_CLASSES,
        prefetch_factor: int | None = None,
        prepare_per_node: bool = True,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if sampler not in ("random", "class_balanced"):
            raise ValueError(f"sampler must be 'random' or 'class_balanced', got {sampler!r}")
        self.release_root = Path(release_root)
        self.cache_dir = Path(cache_dir)
        self.synthetic = dict(synthetic) if synthetic is not None else None
        self.layout = layout
        self.num_frames = num_frames
        self.stream = stream
        self.num_persons = num_persons
        self.augment = dict(augment) if augment is not None else None
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.sampler = sampler
        self.splits = dict(splits) if splits is not None else dict(DEFAULT_SPLITS)
        self.img_shape = tuple(img_shape)
        self.prepare_workers = prepare_workers
        self.num_classes = num_classes
        self.prefetch_factor = prefetch_factor
        self.prepare_data_per_node = prepare_per_node  # read by Lightning
        self.seed = seed
        self.datasets: dict[str, SkeletonClipDataset] = {}
        self._train_loader: ResumableDataLoader | None = None
        self._resume_position: dict[str, int] | None = None

    # -- preparation (rank 0) -------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.synthetic is not None:
            from migalab.data.synthetic import SynthConfig, generate_release, release_is_current

            cfg = SynthConfig(**self.synthetic)
            if not release_is_current(self.release_root, cfg):
                log.info("generating synthetic iMiGUE in %s", self.release_root)
                generate_release(self.release_root, cfg)
        elif not self.release_root.is_dir():
            raise FileNotFoundError(
                f"iMiGUE release folder {self.release_root} does not exist; set data.release_root "
                "to the MiGA release (train/ validate/ test/) or use data=synthetic"
            )
        if not is_cache_current(self.release_root, self.cache_dir):
            log.info("converting %s into the skeleton cache %s", self.release_root, self.cache_dir)
            prepare_release(
                self.release_root,
                self.cache_dir,
                splits=tuple(self.splits.values()),
                img_shape=self.img_shape,
                workers=self.prepare_workers,
            )

    # -- datasets -------------------------------------------------------------------------------
    def pipeline(self, train: bool) -> Any:
        """The clip → (C, T, V, M) transform of the training or evaluation side."""
        return build_skeleton_pipeline(
            self.layout,
            self.num_frames,
            stream=self.stream,
            train=train,
            augment=self.augment,
            num_persons=self.num_persons,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        cache = SkeletonCache(self.cache_dir)
        for key, split in self.splits.items():
            self.datasets[key] = SkeletonClipDataset(
                cache, split, self.pipeline(train=key == "train"), layout=self.layout
            )

    @property
    def class_counts(self) -> np.ndarray:
        """(K,) number of training clips per class (after ``setup``)."""
        labels = self.datasets["train"].labels
        return np.bincount(labels[labels >= 0], minlength=self.num_classes)

    def has_labels(self, key: str) -> bool:
        """Whether split ``key`` (train/val/test) exists, is non-empty and is fully labelled."""
        ds = self.datasets.get(key)
        return ds is not None and ds.has_labels

    def _distributed(self) -> tuple[int, int] | None:
        """(world size, global rank) when attached to a distributed trainer that injects
        distributed samplers, else None."""
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        connector = getattr(trainer, "_accelerator_connector", None)
        if connector is not None and not getattr(connector, "use_distributed_sampler", True):
            return None  # the user asked Lightning not to touch samplers: neither do we
        kwargs = trainer.distributed_sampler_kwargs or {}
        return int(kwargs.get("num_replicas", trainer.world_size)), int(
            kwargs.get("rank", trainer.global_rank)
        )

    def _train_sampler(self, ds: SkeletonClipDataset) -> Any:
        dist = self._distributed()
        replicas, rank = dist if dist is not None else (1, 0)
        seed = global_seed(self.seed)
        if self.sampler == "class_balanced":
            counts = self.class_counts
            weights = torch.as_tensor(1.0 / np.maximum(counts[ds.labels], 1), dtype=torch.double)
            if dist is None:
                return EpochWeightedRandomSampler(weights, num_samples=len(ds), seed=seed)
            return DistributedWeightedSampler(ds, weights, replicas, rank, seed=seed)
        return EpochShuffleSampler(ds, replicas, rank, seed=seed)

    def _loader_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )
        if self.num_workers > 0 and self.prefetch_factor is not None:
            kwargs["prefetch_factor"] = self.prefetch_factor
        return kwargs

    def _eval_loader(self, key: str) -> DataLoader:
        ds = self.datasets[key]
        sampler = None
        dist = self._distributed()
        if dist is not None:
            # every clip exactly once: no padding with repeated clips (Lightning's default)
            sampler = UnrepeatedDistributedSampler(ds, num_replicas=dist[0], rank=dist[1],
                                                   shuffle=False)  # fmt: skip
        return DataLoader(
            ds, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler,
            **self._loader_kwargs(),
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        ds = self.datasets["train"]
        sampler = self._train_sampler(ds)
        loader = ResumableDataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=len(sampler) > self.batch_size,
            **self._loader_kwargs(),
        )
        trainer = self.trainer
        if trainer is not None:
            seed, rank = global_seed(self.seed), trainer.global_rank
            loader.epoch_seed_fn = lambda epoch: epoch_seed(seed, epoch, rank)
            loader.progress = lambda: _epoch_progress(trainer)
            sampler.set_epoch(trainer.current_epoch)
        if self._resume_position is not None:  # restored from a checkpoint (load_state_dict)
            loader.load_state_dict(self._resume_position)
            self._resume_position = None
        self._train_loader = loader
        return loader

    # -- checkpointed state (Lightning stores it in every checkpoint) ---------------------------
    def state_dict(self) -> dict[str, Any]:
        """The training loader's position (epoch, batches done), when fitting."""
        trainer = self.trainer
        if self._train_loader is None or trainer is None or trainer.state.fn != "fit":
            return {}
        return {"train_position": self._train_loader.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restored before the training loader is built (which then starts at the position)."""
        self._resume_position = state_dict.get("train_position")
        if self._resume_position is not None and self._train_loader is not None:
            self._train_loader.load_state_dict(self._resume_position)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


def _epoch_progress(trainer: Any) -> tuple[int, int]:
    """(batches trained in the current epoch, batches per epoch) of a fitting trainer."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    total = trainer.num_training_batches
    return int(done), int(total) if math.isfinite(total) else 0
