"""The LightningDataModule of every experiment: splits, samplers, loaders and resume.

What a dataset is comes from its spec (:mod:`migalab.data.specs`), how a clip becomes an input
from a representation (:mod:`migalab.data.representations`), and what is written to disk before
training from :mod:`migalab.data.prepare`; sampling, DDP and resume details live in
:mod:`migalab.data.samplers`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.utils.data import DataLoader

from migalab.data.background import background_options, with_background
from migalab.data.cache import SkeletonCache
from migalab.data.datasets import TARGETS, SkeletonClipDataset
from migalab.data.formats.miga2025 import read_video_labels, read_video_subjects
from migalab.data.prepare.datamodule_files import prepare_datamodule_files
from migalab.data.representations import ClipOptions, Representation, build_representation
from migalab.data.samplers import (
    DistributedWeightedSampler,
    EpochShuffleSampler,
    EpochWeightedRandomSampler,
    ResumableDataLoader,
    epoch_seed,
    global_seed,
)
from migalab.data.specs import DatasetSpec, get_dataset
from migalab.data.splits import check_disjoint_splits, label_balance
from migalab.errors import MissingInputError
from migalab.utils.io import file_lock

_CLIP = ClipOptions()


#: the split name of pseudo-labelled windows in the training index
PSEUDO_SPLIT = "pseudo"
PSEUDO_COLUMNS = ("video_id", "start", "end", "label")


def read_pseudo_labels(path: str | os.PathLike, num_classes: int) -> Any:
    """The pseudo-label table of ``migalab-pseudolabel`` (a DataFrame with at least
    :data:`PSEUDO_COLUMNS`); a missing file or column, a non-integer frame or a class id
    outside 0..num_classes-1 is a ValueError naming the file and row."""
    import pandas as pd

    if not os.path.isfile(path):
        raise FileNotFoundError(f"pseudo_labels: no file {path}")
    table = pd.read_csv(path, dtype={"video_id": str}, keep_default_na=False)
    missing = [c for c in PSEUDO_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (have {list(table.columns)})")
    for col in ("start", "end", "label"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() | (values % 1 != 0)
        if col == "label":
            bad |= (values < 0) | (values >= num_classes)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ValueError(
                f"{path}: row {row + 1}: {col} {str(table[col].iloc[row])!r} is not "
                + (
                    "a class id in 0.." + str(num_classes - 1)
                    if col == "label"
                    else "a frame number"
                )
            )
        table[col] = values.astype("int64")
    return table


class ClipDataModule(LightningDataModule):
    """Clips of one dataset (a real release or the synthetic stand-in) for training, evaluation
    and prediction.

    ``prepare_data`` (rank 0 of each node) generates the synthetic release when ``synthetic`` is
    given, converts the release into the skeleton cache unless it is current
    (:func:`~migalab.data.prepare.datamodule_files.prepare_datamodule_files`) and runs the representation's
    own preparation (person-cropped video clips). ``setup`` builds one
    :class:`SkeletonClipDataset` per split. Batches: ``x``, ``label`` (N,), ``index`` (N,) and,
    for multi-view heatmaps, ``views``. ``x`` by representation:

    * ``gcn`` (2s-AGCN): (N, C=3, T, V, M) normalised skeletons of ``stream``.
    * ``heatmap`` (PoseC3D): (N, C, T, H, W), or (N, K, C, T, H, W) with K evaluation views;
      with ``heatmap.render=device`` the loader ships keypoints and
      :meth:`on_after_batch_transfer` renders them on the training device.
    * multimodal (``modalities`` given): ``{"rgb": (N, 3, T_v, S, S), "joint": (N, 3, T, V, M),
      ..., "present": {"rgb": (N,) bool}}``; with ``face``: ``"face"`` (N, T_f, 3, S_f, S_f)
      uint8, ``"face_visible"`` (N, T_f) bool and ``present["face"]``.

    Args:
        release_root: the release: a folder (the ``.pkl`` file for ``dataset=pyskl``), a list of
            folders (each split from the first that holds it, e.g. the two MiGA 2025 archives
            unpacked apart) or a mapping split -> folder.
        cache_dir: where the skeleton cache lives (created if missing).
        dataset: the dataset spec's name (:data:`migalab.data.specs.BUILTIN_DATASETS`) or
            ``package.module:SPEC``; it gives the class names and count, split names, reader.
        synthetic: :class:`~migalab.synthetic.SynthConfig` fields, or None for real data.
        layout: joint layout of the clips (:class:`~migalab.data.representations.ClipOptions`
            documents this and the next five, with their defaults).
        num_frames: T, frames sampled per clip.
        stream: skeleton stream (``joint``, ``bone``, ...).
        num_persons: M, persons per clip.
        augment: training augmentations.
        interpolate: filling of missing keypoints.
        representation: ``gcn`` or ``heatmap`` (:mod:`migalab.data.representations`).
        heatmap: :class:`~migalab.data.representations.HeatmapOptions` fields.
        modalities: None (one skeleton stream), or a list of ``rgb``, ``face``, ``joint``,
            ``bone``, ... for multimodal samples.
        video: :class:`~migalab.data.representations.VideoOptions` fields (RGB modalities).
        face: :class:`~migalab.data.representations.FaceOptions` fields (the ``face`` modality).
        batch_size: per-device batch size (global batch = batch_size x devices x nodes x
            accumulate_grad_batches; ``model.lr_scaling`` can scale the lr with it).
        eval_batch_size: per-device batch size of validation / test / predict (default batch_size).
        num_workers: DataLoader worker processes.
        pin_memory: DataLoader ``pin_memory``.
        persistent_workers: DataLoader ``persistent_workers``.
        prefetch_factor: batches loaded in advance per worker (only used when num_workers > 0;
            None = torch's default, 2).
        sampler: ``random`` or ``class_balanced`` (sample clips with probability ∝ 1/n_class).
        splits: map of stage (train / val / test) -> release split name (default: the spec's).
        img_shape: (height, width) of the source frames (default: the spec's).
        prepare_workers: processes converting the release.
        num_classes: K (default: the spec's; a label >= K is refused before training).
        prepare_per_node: run ``prepare_data`` on local rank 0 of every node (True, node-local
            disks) or only on global rank 0 (False, a filesystem shared by all nodes); Lightning's
            ``prepare_data_per_node``.
        seed: seed of the training order (None: the run seed from ``seed_everything``, else 0).
        target: what ``label`` is: ``gesture`` (the clip's class, default) or ``emotion`` (the
            clip's video's win = 1 / lose = 0; batches then also carry ``video`` (N,), the
            position of the clip's video in ``datasets[key].video_ids``). With ``emotion``,
            ``setup`` refuses train / val clips of unknown emotion (naming them) and any video
            in two splits (:func:`~migalab.data.splits.check_disjoint_splits`), and logs each
            split's win / lose balance (:attr:`emotion_balance`).
        emotion_labels: a ``video_id,label`` CSV (label ``win``/``lose`` or ``1``/``0``, win =
            1) whose videos' labels replace the release's ``emotion_labels.csv``
            (:func:`~migalab.data.formats.miga2025.read_video_labels`); ``target=emotion`` only.
        subjects: a CSV with ``video_id`` and ``subject`` columns (the labels file may carry
            them): with ``target=emotion`` no subject may appear in two splits either
            (:func:`~migalab.data.formats.miga2025.read_video_subjects`). The synthetic
            release's subjects are known without it (its ``synth_meta.json``).
        train_splits: release splits whose clips together form the training set (e.g.
            ``[train, validate]`` for a final model, as the MiGA winners fine-tune on train + val);
            null: ``splits.train`` alone. Validation still runs on ``splits.val``, which is then
            not held out (its numbers are no longer an estimate); refused with
            ``target=emotion`` (videos would be in two splits).
        pseudo_labels: a CSV of ``migalab-pseudolabel`` (``video_id``, ``start``, ``end``,
            ``label`` columns: windows of the cached sequences and their 0-based classes) whose
            windows join the training set (:meth:`SkeletonCache.with_windows`); skeleton
            streams only (RGB and face are prepared per labelled clip), gesture target only.
        unlabelled: self-supervised pretraining (``migalab-pretrain``): ``{source, window,
            stride, splits, val_split}``. ``source: windows`` (default): training samples are
            sliding windows of ``window`` frames every ``stride`` over every cached sequence of
            ``splits`` (null: all; labelled or not, no label is read:
            :meth:`SkeletonCache.windows`), through the training pipeline; ``val`` holds the
            windows of ``val_split`` (null: no validation), a monitor of the pretext loss.
            ``source: clips``: the prepared clips of ``splits`` instead (modalities prepared
            per clip, e.g. face crops; labels, hidden or not, are not read). null (default):
            the labelled clips.
        background: ``target=actionness`` (a gesture-vs-background model for online
            recognition): ``{window, stride, ratio}`` of the background windows each split
            adds to its labelled clips (:mod:`migalab.data.background`; defaults 32, 16, 1.0:
            at most one window per clip). Skeleton streams only.
        overfit_clips: the overfit check (``debug=overfit``, :mod:`migalab.overfit`): train on
            this many fixed clips of the training split (:func:`overfit_selection`: round-robin
            over the classes, so several are present) with the *evaluation* transforms (no
            augmentation, deterministic frames, centre crop, one view), validate on the very
            same clips (``datasets["val"]`` is ``datasets["train"]``); no test split. More than
            the split holds: all its clips, with a warning. null (default): normal training.
    """

    def __init__(
        self,
        release_root: str | Sequence[str] | Mapping[str, str] | None,
        cache_dir: str | None,
        dataset: str = "miga2025",
        synthetic: Mapping[str, Any] | None = None,
        layout: str = _CLIP.layout,
        num_frames: int = _CLIP.num_frames,
        stream: str = _CLIP.stream,
        num_persons: int = _CLIP.num_persons,
        augment: Mapping[str, Any] | None = _CLIP.augment,
        interpolate: bool | Mapping[str, Any] = _CLIP.interpolate,
        representation: str = "gcn",
        heatmap: Mapping[str, Any] | None = None,
        modalities: list[str] | None = None,
        video: Mapping[str, Any] | None = None,
        face: Mapping[str, Any] | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        prefetch_factor: int | None = None,
        sampler: str = "random",
        splits: Mapping[str, str] | None = None,
        img_shape: tuple[int, int] | None = None,
        prepare_workers: int = 1,
        num_classes: int | None = None,
        prepare_per_node: bool = True,
        seed: int | None = None,
        target: str = "gesture",
        emotion_labels: str | None = None,
        subjects: str | None = None,
        unlabelled: Mapping[str, Any] | None = None,
        train_splits: Sequence[str] | None = None,
        pseudo_labels: str | None = None,
        overfit_clips: int | None = None,
        background: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if overfit_clips is not None and (
            isinstance(overfit_clips, bool)
            or not isinstance(overfit_clips, numbers.Integral)
            or overfit_clips <= 0
        ):
            raise ValueError(
                f"data.overfit_clips must be a positive number of clips (or null), "
                f"got {overfit_clips!r}"
            )
        if overfit_clips is not None and unlabelled:
            raise ValueError(
                "data.overfit_clips (debug=overfit) fits labelled clips of migalab-train: "
                "not for pretraining (data.unlabelled)"
            )
        self.overfit_clips = int(overfit_clips) if overfit_clips is not None else None
        if sampler not in ("random", "class_balanced"):
            raise ValueError(f"sampler must be 'random' or 'class_balanced', got {sampler!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        if emotion_labels and target != "emotion":
            raise ValueError("emotion_labels is only used with target=emotion")
        self.target = target
        self.emotion_labels = str(emotion_labels) if emotion_labels else None
        self.subjects = str(subjects) if subjects else None
        self.unlabelled = dict(unlabelled) if unlabelled else None
        if self.unlabelled is not None:
            source = self.unlabelled.get("source", "windows")
            unknown = set(self.unlabelled) - {"source", "window", "stride", "splits", "val_split"}
            if (
                unknown
                or source not in ("windows", "clips")
                or (source == "windows" and not self.unlabelled.get("window"))
            ):
                raise ValueError(
                    "unlabelled takes source (windows | clips), window (required for windows), "
                    f"stride, splits, val_split; got {dict(self.unlabelled)}"
                )
        #: with target=emotion, per split key: clips / videos / videos_win / _lose / _unknown
        self.emotion_balance: dict[str, dict[str, int]] = {}
        self.spec: DatasetSpec = get_dataset(dataset)
        self.release_root = _release(release_root) if release_root is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.synthetic = dict(synthetic) if synthetic is not None else None
        interpolate = dict(interpolate) if isinstance(interpolate, Mapping) else interpolate
        self.clip = ClipOptions(
            layout=layout,
            num_frames=num_frames,
            stream=stream,
            num_persons=num_persons,
            augment=dict(augment) if augment is not None else None,
            interpolate=interpolate,
        )
        self.representation: Representation = build_representation(
            representation,
            self.clip,
            heatmap=heatmap,
            video=video,
            face=face,
            modalities=modalities,
            cache_dir=self.cache_dir,
        )
        self.modalities = list(modalities) if modalities else None
        self.predict_split = "test"
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.prefetch_factor = prefetch_factor
        self.sampler = sampler
        self.splits = dict(splits) if splits is not None else dict(self.spec.splits)
        self.train_splits = [str(x) for x in train_splits] if train_splits else None
        if self.train_splits and target == "emotion":
            raise ValueError(
                "train_splits is for gesture models: with target=emotion a video "
                "in training and in validation leaks its label"
            )
        self.pseudo_labels = str(pseudo_labels) if pseudo_labels else None
        if target == "actionness" and (modalities or pseudo_labels or unlabelled):
            raise ValueError(
                "target=actionness trains on skeleton clips and background "
                "windows: not with RGB / face modalities (prepared per labelled "
                "clip), pseudo_labels or unlabelled"
            )
        #: target=actionness: the background windows' options (migalab.data.background)
        self.background = background_options(dict(background) if background is not None else None)
        if self.pseudo_labels and (target == "emotion" or modalities):
            raise ValueError(
                "pseudo_labels add skeleton windows to a gesture model's training "
                "set: not for target=emotion or RGB / face modalities (prepared "
                "per labelled clip only)"
            )
        self.img_shape = tuple(img_shape) if img_shape is not None else self.spec.img_shape
        self.prepare_workers = prepare_workers
        if num_classes is None:
            num_classes = 2 if target in ("emotion", "actionness") else self.spec.num_classes
        self.num_classes = int(num_classes)
        self.prepare_data_per_node = prepare_per_node  # read by Lightning
        self.seed = seed
        self.datasets: dict[str, SkeletonClipDataset] = {}
        self._train_loader: ResumableDataLoader | None = None
        self._resume_position: dict[str, int] | None = None

    # -- preparation (rank 0) -------------------------------------------------------------------
    def _release_splits(self) -> list[str]:
        """Every release split a stage reads."""
        return list(dict.fromkeys([*self.splits.values(), *(self.train_splits or [])]))

    def prepare_data(self) -> None:
        """Generate (synthetic) and convert the release, then the representation's extras
        (prepared RGB / face clips), once: concurrent processes on the same cache take turns
        (a lock file beside the cache) and find the work done."""
        self._require_locations()
        cache = Path(self.cache_dir)
        with file_lock(cache.parent / f".{cache.name}.prepare.lock"):
            self._prepare_data()

    def _prepare_data(self) -> None:
        prepare_datamodule_files(
            self.spec,
            self.release_root,
            self.cache_dir,
            self._release_splits(),
            synthetic=self.synthetic,
            img_shape=self.img_shape,
            workers=self.prepare_workers,
        )
        self.representation.prepare(self.cache_dir, self._release_splits())

    @property
    def layout(self) -> str:
        return self.clip.layout

    @property
    def class_names(self) -> tuple[str, ...]:
        """The dataset's class names (by 0-based class id)."""
        return self.spec.class_names

    # -- datasets -------------------------------------------------------------------------------
    def pipeline(self, train: bool, key: str | None = None) -> Any:
        """The clip → sample transform of the training side or of evaluation split ``key``
        (``val`` / ``test``): a dict with ``x`` (see the class docstring) and, for multi-view or
        device-rendered heatmaps, ``views`` / ``canvas``."""
        return self.representation.pipeline(train, key)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The representation's device-side step (heatmaps rendered on the training device)."""
        return self.representation.on_after_batch_transfer(batch)

    def _require_locations(self) -> None:
        """Refuse to read data without ``release_root`` / ``cache_dir`` (a model rebuilt from a
        checkpoint gets None for a folder the checkpoint named outside its run's data dir:
        :mod:`migalab.utils.stored_config`)."""
        for key in ("release_root", "cache_dir"):
            if getattr(self, key) is None:
                raise MissingInputError(
                    f"data.{key} is not set: give data.{key}=<folder> on the command line (a "
                    f"checkpoint's own folders are used only when they lay under its training "
                    f"run's data dir, re-rooted under this run's paths.data_dir)"
                )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self._require_locations()
        cache = SkeletonCache(self.cache_dir)
        if self.unlabelled is not None:
            self._setup_unlabelled(cache)
            return
        overrides = read_video_labels(self.emotion_labels) if self.emotion_labels else None
        if self.overfit_clips is not None:
            self._setup_overfit(cache, overrides)
            return
        for key, split in self.splits.items():
            train = key == "train"
            source = cache
            if train and self.train_splits:
                split = self.train_splits
                rank_zero_info(
                    f"training on the clips of {', '.join(split)} (val is not held "
                    "out: its metrics are not an estimate)"
                )
            if train and self.pseudo_labels and stage in (None, "fit"):  # not to evaluate
                source = cache.with_windows(
                    read_pseudo_labels(self.pseudo_labels, self.num_classes),
                    PSEUDO_SPLIT,
                    source=self.pseudo_labels,
                )
                split = [*([split] if isinstance(split, str) else split), PSEUDO_SPLIT]
                added = int((source.index["split"] == PSEUDO_SPLIT).sum())
                rank_zero_info(
                    f"pseudo-labels: {added} windows of {self.pseudo_labels} join the training set"
                )
            if self.target == "actionness":
                source, split, added = with_background(source, split, self.background)
                rank_zero_info(
                    f"actionness, {key}: {added} background windows beside the labelled clips"
                )
            self.datasets[key] = SkeletonClipDataset(
                source,
                split,
                self.pipeline(train=train, key=key),
                layout=self.layout,
                target=self.target,
                emotion_labels=overrides,
            )
        if self.target == "emotion":
            self.check_emotion()
        else:
            self.check_labels()

    def _setup_overfit(self, cache: SkeletonCache, overrides: Mapping[str, int] | None) -> None:
        """``datasets`` of the overfit check: ``overfit_clips`` clips of the training split with
        the evaluation transforms, as ``train`` and as ``val``. The whole split's labels are
        checked first, as for training."""
        split = self.train_splits or self.splits["train"]
        if self.target == "actionness":
            cache, split, _ = with_background(cache, split, self.background)
        full = SkeletonClipDataset(
            cache,
            split,
            self.pipeline(train=False, key="train"),
            layout=self.layout,
            target=self.target,
            emotion_labels=overrides,
        )
        self.datasets = {"train": full}
        if self.target == "emotion":
            self.check_emotion()
        else:
            self.check_labels()
        picked = overfit_selection(full.labels, int(self.overfit_clips))
        if len(picked) < self.overfit_clips:
            rank_zero_warn(
                f"data.overfit_clips={self.overfit_clips} but the training split "
                f"{full.split} has {len(picked)} labelled clips: overfitting all of "
                "them"
            )
        clips = full.subset(picked)
        self.datasets = {"train": clips, "val": clips}
        if self.target == "emotion":
            balance = label_balance(clips.labels, clips.videos)
            self.emotion_balance = {"train": balance, "val": dict(balance)}
        classes = len(np.unique(clips.labels))
        rank_zero_info(
            f"overfit: {len(clips)} clips of {full.split} ({classes} classes), "
            "evaluation transforms; validated on the same clips"
        )

    def _setup_unlabelled(self, cache: SkeletonCache) -> None:
        """``datasets`` for pretraining: windows of every sequence (train) and of
        ``val_split`` (val)."""
        u = self.unlabelled
        if u.get("source", "windows") == "clips":
            splits = list(u["splits"]) if u.get("splits") else cache.splits
            self.datasets["train"] = SkeletonClipDataset(
                cache, splits, self.pipeline(train=True), layout=self.layout
            )
            rank_zero_info(
                f"unlabelled: the {len(self.datasets['train'])} prepared clips of "
                f"{', '.join(splits)} (their labels are not read)"
            )
            if u.get("val_split"):
                self.datasets["val"] = SkeletonClipDataset(
                    cache,
                    u["val_split"],
                    self.pipeline(train=False, key="val"),
                    layout=self.layout,
                )
            return
        window = int(u["window"])
        stride = int(u.get("stride") or window)
        splits = list(u["splits"]) if u.get("splits") else None
        train = cache.windows(window, stride, splits, split_name="unlabelled")
        if len(train) == 0:
            raise ValueError(f"{self.cache_dir}: no sequences in splits {splits} to pretrain on")
        self.datasets["train"] = SkeletonClipDataset(
            train, "unlabelled", self.pipeline(train=True), layout=self.layout
        )
        sequences = train.index["file"].nunique()
        rank_zero_info(
            f"unlabelled: {len(train)} windows of {window} frames (stride {stride}) "
            f"over {sequences} sequences"
        )
        val_split = u.get("val_split")
        if val_split:
            val = cache.windows(window, stride, [val_split], split_name=val_split)
            self.datasets["val"] = SkeletonClipDataset(
                val, val_split, self.pipeline(train=False, key="val"), layout=self.layout
            )

    def check_emotion(self) -> None:
        """``target=emotion``: raise ValueError naming the train / val clips whose video has no
        emotion label, or the videos found in two splits; then log each split's balance."""
        for key, ds in self.datasets.items():
            bad = ds.labels < 0
            if key not in ("train", "val") or not bad.any():
                continue
            idx = np.flatnonzero(bad)
            videos = sorted({ds.video_ids[ds.videos[i]] for i in idx})
            shown = ", ".join(ds.clip_name(int(i)) for i in idx[:10])
            more = f" and {len(idx) - 10} more" if len(idx) > 10 else ""
            raise ValueError(
                f"{len(idx)} {key} clip(s) of the cache {self.cache_dir} have no emotion label "
                f"(videos {', '.join(videos[:10])}{' ...' if len(videos) > 10 else ''}): "
                f"{shown}{more}. Add the videos to the release's emotion_labels.csv and prepare "
                "again, or give data.emotion_labels=<video_id,label csv>."
            )
        check_disjoint_splits(
            {key: ds.video_ids for key, ds in self.datasets.items()}, kind="video"
        )
        subjects = self.video_subjects()
        if subjects:
            groups = {
                key: [subjects[v] for v in ds.video_ids if v in subjects]
                for key, ds in self.datasets.items()
            }
            check_disjoint_splits(groups, kind="subject")
            known = sum(len(g) for g in groups.values())
            total = sum(len(ds.video_ids) for ds in self.datasets.values())
            rank_zero_info(
                f"emotion: no subject in two splits ({known} of {total} videos' subjects known)"
            )
        for key, ds in self.datasets.items():
            self.emotion_balance[key] = label_balance(ds.labels, ds.videos)
            b = self.emotion_balance[key]
            rank_zero_info(
                f"emotion {key}: {b['clips']} clips, {b['videos']} videos ({b['videos_win']} "
                f"win, {b['videos_lose']} lose, {b['videos_unknown']} unknown)"
            )

    def video_subjects(self) -> dict[str, str]:
        """``{video_id: subject}`` where known: ``subjects`` (a CSV), else a synthetic
        release's own; empty otherwise."""
        if self.subjects:
            return read_video_subjects(self.subjects)
        if self.synthetic is not None and isinstance(self.release_root, Path):
            from migalab.synthetic import read_subjects

            return read_subjects(self.release_root)
        return {}

    def check_labels(self) -> None:
        """Raise ValueError naming the clips whose class id cannot be used, once, before any
        batch: ids >= ``num_classes`` or below -1 (-1 = unknown) in any split, and unlabelled
        clips (-1) in training (a cross-entropy on -1 fails mid-epoch without naming the
        clip)."""
        for key, ds in self.datasets.items():
            labels = ds.labels
            bad = (labels >= self.num_classes) | (labels < (0 if key == "train" else -1))
            if not bad.any():
                continue
            idx = np.flatnonzero(bad)
            shown = ", ".join(f"{ds.clip_name(int(i))} (label {int(labels[i])})" for i in idx[:10])
            more = f" and {len(idx) - 10} more" if len(idx) > 10 else ""
            raise ValueError(
                f"{len(idx)} {key} clip(s) of the cache {self.cache_dir} have a class id outside "
                f"0..{self.num_classes - 1}{' (or no class)' if key == 'train' else ''}: "
                f"{shown}{more}. Fix the label files and prepare again (migalab-prepare)."
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
            sampler = UnrepeatedDistributedSampler(
                ds, num_replicas=dist[0], rank=dist[1], shuffle=False
            )
        return DataLoader(
            ds,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=sampler,
            **self._loader_kwargs(),
        )

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
        """Loader of split ``predict_split`` (``test`` by default; ``val`` for fusion search)."""
        return self._eval_loader(self.predict_split)


def overfit_selection(labels: np.ndarray, count: int) -> np.ndarray:
    """Positions of ``count`` labelled clips (label >= 0) chosen deterministically so that as
    many classes as possible are present: round-robin over the classes in the order they first
    appear, each class's clips in index order. Returned in index order; all labelled clips
    when there are fewer than ``count``.

    Raises:
        ValueError: ``count`` < 1, or no labelled clip.
    """
    if count < 1:
        raise ValueError(f"the overfit check needs at least 1 clip, got {count}")
    labels = np.asarray(labels)
    labelled = np.flatnonzero(labels >= 0)
    if len(labelled) == 0:
        raise ValueError("the training split has no labelled clip to overfit")
    _, first = np.unique(labels[labelled], return_index=True)
    queues = [labelled[labels[labelled] == labels[labelled][i]] for i in np.sort(first)]
    # round r takes the r-th clip of every class that has one
    order = [q[r] for r in range(max(len(q) for q in queues)) for q in queues if r < len(q)]
    return np.sort(np.asarray(order[:count], dtype=np.int64))


def _epoch_progress(trainer: Any) -> tuple[int, int]:
    """(batches trained in the current epoch, batches per epoch) of a fitting trainer."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    total = trainer.num_training_batches
    return int(done), int(total) if math.isfinite(total) else 0


def _release(root: Any) -> Path | list[Path] | dict[str, Path]:
    """``data.release_root`` as paths: one, a list, or a mapping split -> folder."""
    if isinstance(root, DictConfig | ListConfig):
        root = OmegaConf.to_container(root, resolve=True)
    if isinstance(root, Mapping):
        return {str(k): Path(v) for k, v in root.items()}
    if isinstance(root, list | tuple):
        return [Path(r) for r in root]
    return Path(root)
