"""LightningDataModules: prepare data once (synthesise if asked, convert to the cache), then serve
split datasets."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, WeightedRandomSampler

from migalab.data.cache import SkeletonCache
from migalab.data.datasets import SkeletonClipDataset
from migalab.data.formats.miga2025 import NUM_CLASSES
from migalab.data.prepare import is_cache_current, prepare_release
from migalab.data.skeleton.transforms import build_skeleton_pipeline

log = logging.getLogger(__name__)

DEFAULT_SPLITS = {"train": "train", "val": "validate", "test": "test"}


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
        batch_size: per-device batch size (global batch = batch_size x devices x nodes).
        sampler: ``random`` or ``class_balanced`` (sample clips with probability ∝ 1/n_class).
        splits: map of stage → release split name.
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
        self.datasets: dict[str, SkeletonClipDataset] = {}

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

    def _loader(self, key: str, train: bool) -> DataLoader:
        ds = self.datasets[key]
        sampler = None
        if train and self.sampler == "class_balanced":
            counts = self.class_counts
            weights = 1.0 / np.maximum(counts[ds.labels], 1)
            sampler = WeightedRandomSampler(
                torch.as_tensor(weights, dtype=torch.double), num_samples=len(ds), replacement=True
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            drop_last=train and len(ds) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
