"""LightningDataModules: prepare data once (synthesise if asked, convert to the cache), then serve
split datasets.

Sampling, DDP and resume details live in :mod:`migalab.data.samplers`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from migalab.data.cache import SkeletonCache
from migalab.data.datasets import SkeletonClipDataset
from migalab.data.formats.miga2025 import NUM_CLASSES
from migalab.data.multimodal import (
    MODALITIES,
    MultiModalPipeline,
    VideoSource,
    build_clip_jobs,
    video_options,
)
from migalab.data.prepare import is_cache_current, prepare_release
from migalab.data.samplers import (
    DistributedWeightedSampler,
    EpochShuffleSampler,
    EpochWeightedRandomSampler,
    ResumableDataLoader,
    epoch_seed,
    global_seed,
)
from migalab.data.skeleton.heatmaps import HEATMAP_STREAMS, HeatmapRenderer
from migalab.data.skeleton.heatmaps import heatmap_channels as _stream_channels
from migalab.data.skeleton.layouts import get_layout
from migalab.data.skeleton.transforms import build_skeleton_pipeline

log = logging.getLogger(__name__)

DEFAULT_SPLITS = {"train": "train", "val": "validate", "test": "test"}
REPRESENTATIONS = ("gcn", "heatmap")

#: PoseC3D heatmap options (pyskl's SlowOnly-R50 recipe); ``data.heatmap`` entries override them.
DEFAULT_HEATMAP: dict[str, Any] = {
    "size_train": 56,  # training crop side (pixels of the heatmap canvas)
    "size_eval": 64,  # evaluation canvas side
    "sigma": 0.6,
    "render": "cpu",  # cpu: loader workers render; device: the loader ships keypoints and the
    # training device (GPU when there is one) renders in on_after_batch_transfer
    "area_range": (0.56, 1.0),  # RandomResizedCrop area range (train)
    "flip_p": 0.5,  # training flip probability
    "val_clips": 1,  # temporal clips per validation sample
    "val_flip": False,
    "test_clips": 10,  # temporal clips per test / predict sample (pyskl: 10 clips + flip)
    "test_flip": True,
}


def heatmap_channels(layout: str, stream: str) -> int:
    """Input channels of a heatmap encoder: joints of ``layout`` (joint) or its limbs (limb)."""
    lay = get_layout(layout)
    return _stream_channels(lay.num_joints, stream, lay.limbs)


class ViewSample:
    """Wrap a pipeline's output as a dataset sample: ``{"x": output}`` plus ``views`` (K, for
    multi-view outputs with a leading view axis) and ``canvas`` ((H, W) of keypoints that the
    device renders into heatmaps)."""

    def __init__(
        self, pipeline: Any, views: int = 1, canvas: tuple[int, int] | None = None
    ) -> None:
        self.pipeline, self.views, self.canvas = pipeline, int(views), canvas

    def __call__(self, record: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"x": self.pipeline(record)}
        if self.views > 1:
            out["views"] = self.views
        if self.canvas is not None:
            out["canvas"] = np.asarray(self.canvas, dtype=np.int64)
        return out

    def __repr__(self) -> str:
        return f"ViewSample(views={self.views}, canvas={self.canvas}, pipeline={self.pipeline!r})"


class SkeletonDataModule(LightningDataModule):
    """iMiGUE skeleton clips (real MiGA release or the synthetic stand-in) for gesture training.

    ``prepare_data`` (rank 0 of each node) generates the synthetic release when ``synthetic`` is
    given and the release on disk does not match it, then converts the release into the
    skeleton cache unless the cache is current. ``setup`` builds one
    :class:`SkeletonClipDataset` per split. Batches: ``x``, ``label`` (N,), ``index`` (N,).

    Two input representations:

    * ``gcn`` (2s-AGCN): ``x`` (N, C=3, T, V, M) normalised skeletons; streams joint, bone,
      joint_motion, bone_motion.
    * ``heatmap`` (PoseC3D): ``x`` (N, C, T, H, W) Gaussian heatmap volumes, C = joints (stream
      joint) or limbs (stream limb) of ``layout``; training crops ``size_train``², evaluation
      ``size_eval``². Multi-view evaluation (``test_clips`` x ``test_flip``) gives ``x``
      (N, K, C, T, H, W) and a ``views`` entry; the task averages the views' probabilities.
      With ``heatmap.render=device`` the loader ships keypoints (N, [K,] M, T, V, 3) and
      :meth:`on_after_batch_transfer` renders them on the training device.
    * multimodal (``modalities`` given, System B): ``x`` is a dict ``{"rgb": (N, 3, T_v, S, S),
      "joint": (N, 3, T, V, M), "bone": ..., "present": {"rgb": (N,) bool}}`` with skeleton and
      RGB frames sampled at the same instants (see :mod:`migalab.data.multimodal`). With
      ``video.source=prepared`` (default), ``prepare_data`` also writes every clip's person
      crop once as a short-GOP mp4 (``migalab.data.video.clips``), so training never decodes
      the long interview videos.

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
        representation: ``gcn`` or ``heatmap`` (see above).
        heatmap: heatmap options (``DEFAULT_HEATMAP`` lists them with their defaults).
        interpolate: fill missing keypoints (score 0 or NaN) by linear interpolation over the
            clip's frames before sampling (True, or ``InterpolateMissing`` keyword arguments).
        modalities: None (one skeleton stream, ``stream``), or a list of ``MODALITIES``
            (``rgb``, ``joint``, ``bone``, ...) for multimodal samples.
        video: RGB options (``migalab.data.multimodal.DEFAULT_VIDEO`` lists them).
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
        representation: str = "gcn",
        heatmap: Mapping[str, Any] | None = None,
        interpolate: bool | Mapping[str, Any] = False,
        modalities: list[str] | None = None,
        video: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.modalities = list(modalities) if modalities else None
        if self.modalities is not None:
            unknown = set(self.modalities) - set(MODALITIES)
            if unknown:
                raise ValueError(f"unknown modalities {sorted(unknown)}; known: {MODALITIES}")
            if representation != "gcn":
                raise ValueError("multimodal samples use skeleton sequences: set "
                                 "representation=gcn with modalities")  # fmt: skip
        self.video = video_options(video)
        self._video_source: VideoSource | None = None
        if sampler not in ("random", "class_balanced"):
            raise ValueError(f"sampler must be 'random' or 'class_balanced', got {sampler!r}")
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, "
                             f"got {representation!r}")  # fmt: skip
        unknown = set(heatmap or {}) - set(DEFAULT_HEATMAP)
        if unknown:
            raise ValueError(f"unknown heatmap options {sorted(unknown)}; "
                             f"known: {sorted(DEFAULT_HEATMAP)}")  # fmt: skip
        self.representation = representation
        self.heatmap = {**DEFAULT_HEATMAP, **dict(heatmap or {})}
        if self.heatmap["render"] not in ("cpu", "device"):
            raise ValueError(f"heatmap.render must be 'cpu' or 'device', "
                             f"got {self.heatmap['render']!r}")  # fmt: skip
        if representation == "heatmap" and stream not in HEATMAP_STREAMS:
            raise ValueError(f"heatmap streams are {HEATMAP_STREAMS}, got {stream!r}")
        self.interpolate = dict(interpolate) if isinstance(interpolate, Mapping) else interpolate
        self.predict_split = "test"
        self._renderer: torch.nn.Module | None = None
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
        if self.uses_prepared_video:
            self._prepare_video_clips()

    @property
    def uses_rgb(self) -> bool:
        return self.modalities is not None and "rgb" in self.modalities

    @property
    def uses_prepared_video(self) -> bool:
        return self.uses_rgb and self.video["source"] == "prepared"

    @property
    def prepared_video_dir(self) -> Path:
        """Folder of the prepared person-cropped clips."""
        given = self.video["prepared_dir"]
        if given:
            return Path(given)
        return self.cache_dir / f"video_clips_{int(self.video['prepared_size'])}"

    def _prepare_video_clips(self) -> None:
        """Write every clip's person crop as a short-GOP mp4 unless the clips are current."""
        from migalab.data.video.clips import clips_are_current, prepare_clips

        v = self.video
        jobs, problems = build_clip_jobs(
            SkeletonCache(self.cache_dir), self.layout, list(self.splits.values()),
            box_margin=float(v["box_margin"]), on_error=v["on_error"],
        )  # fmt: skip
        for what, message in problems:
            log.warning("video: skipping %s: %s", what, message)
        size, gop, crf = int(v["prepared_size"]), int(v["prepared_gop"]), int(v["prepared_crf"])
        if clips_are_current(self.prepared_video_dir, jobs, size, gop, crf):
            return
        log.info("writing %d person-cropped clips (%d px, GOP %d) to %s", len(jobs), size, gop,
                 self.prepared_video_dir)  # fmt: skip
        result = prepare_clips(
            jobs, self.prepared_video_dir, size=size, gop=gop, crf=crf,
            workers=int(v["prepare_workers"]), on_error=v["on_error"],
        )  # fmt: skip
        for what, message in result.problems:
            log.warning("video: skipped %s: %s", what, message)

    @property
    def video_source(self) -> VideoSource:
        """Where RGB frames come from (shared by the split datasets)."""
        if self._video_source is None:
            v = self.video
            self._video_source = VideoSource(
                v["source"], backend=v["backend"],
                prepared_dir=self.prepared_video_dir if v["source"] == "prepared" else None,
                layout=self.layout, box_margin=float(v["box_margin"]),
            )  # fmt: skip
        return self._video_source

    # -- datasets -------------------------------------------------------------------------------
    def pipeline(self, train: bool, key: str | None = None) -> Any:
        """The clip → sample transform of the training side or of evaluation split ``key``
        (``val`` / ``test``): a dict with ``x`` (see the class docstring) and, for multi-view or
        device-rendered heatmaps, ``views`` / ``canvas``."""
        if self.modalities is not None:
            v = self.video
            return MultiModalPipeline(
                self.modalities, self.layout, self.num_frames, train=train,
                video=self.video_source if self.uses_rgb else None,
                video_frames=int(v["num_frames"]), video_size=int(v["size"]),
                area_range=v["area_range"], augment=self.augment,
                num_persons=self.num_persons, interpolate=self.interpolate,
            )  # fmt: skip
        if self.representation == "gcn":
            return ViewSample(
                build_skeleton_pipeline(
                    self.layout,
                    self.num_frames,
                    stream=self.stream,
                    train=train,
                    augment=self.augment,
                    num_persons=self.num_persons,
                    interpolate=self.interpolate,
                )
            )
        from migalab.data.skeleton.heatmap_pipeline import build_heatmap_pipeline

        hm = self.heatmap
        prefix = "val" if key in (None, "val") else "test"
        clips, flip = (
            (1, False) if train else (int(hm[f"{prefix}_clips"]), bool(hm[f"{prefix}_flip"]))
        )
        pipe = build_heatmap_pipeline(
            self.layout,
            self.num_frames,
            stream=self.stream,
            train=train,
            size_train=int(hm["size_train"]),
            size_eval=int(hm["size_eval"]),
            sigma=float(hm["sigma"]),
            interpolate=self.interpolate,
            render=hm["render"],
            num_clips=clips,
            flip_test=flip,
            flip_p=float(hm["flip_p"]),
            area_range=tuple(hm["area_range"]),
            num_persons=self.num_persons,
        )
        side = int(hm["size_train"] if train else hm["size_eval"])
        canvas = (side, side) if hm["render"] == "device" else None
        return ViewSample(pipe, views=clips * (2 if flip else 1), canvas=canvas)

    @property
    def renderer(self) -> torch.nn.Module:
        """The on-device heatmap renderer (``heatmap.render=device``)."""
        if self._renderer is None:
            limbs = get_layout(self.layout).limbs if self.stream == "limb" else None
            self._renderer = HeatmapRenderer(self.stream, limbs=limbs,
                                             sigma=float(self.heatmap["sigma"]))  # fmt: skip
        return self._renderer

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Render device-side heatmaps: keypoints (N, [K,] M, T, V, 3) → (N, [K,] C, T, H, W)."""
        if isinstance(batch, dict) and "canvas" in batch:
            h, w = (int(v) for v in batch["canvas"][0])
            points = batch["x"]
            batch = dict(batch)
            batch["x"] = self.renderer.to(points.device)(points, (h, w))
            del batch["canvas"]
        return batch

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        cache = SkeletonCache(self.cache_dir)
        for key, split in self.splits.items():
            train = key == "train"
            self.datasets[key] = SkeletonClipDataset(
                cache, split, self.pipeline(train=train, key=key), layout=self.layout
            )
        self.check_labels()

    def check_labels(self) -> None:
        """Raise ValueError naming the clips whose class id cannot be used, once, before any
        batch: ids >= ``num_classes`` in any split, and unlabelled clips (-1) in training (a
        cross-entropy on -1 fails mid-epoch without naming the clip)."""
        for key, ds in self.datasets.items():
            labels = ds.labels
            bad = labels >= self.num_classes
            if key == "train":
                bad |= labels < 0
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
        """Loader of split ``predict_split`` (``test`` by default; ``val`` for fusion search)."""
        return self._eval_loader(self.predict_split)


def _epoch_progress(trainer: Any) -> tuple[int, int]:
    """(batches trained in the current epoch, batches per epoch) of a fitting trainer."""
    done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
    total = trainer.num_training_batches
    return int(done), int(total) if math.isfinite(total) else 0
