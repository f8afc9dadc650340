#!/usr/bin/env python
"""GPU readiness check of the full-size experiments, and a GPU-hours plan for them.

No training step of this suite had run on a GPU when this was written, and GPU time comes in
short slots; this script is meant to be ready before a slot starts and to use it well:

    make gpu-check                      # on the GPU slot: at most ~7 minutes (--budget-s 420)
    python scripts/gpu_check.py --compile         # + torch.compile / channels_last ratios
    python scripts/gpu_check.py --experiments mvit_rgb agcn_joint --steps 50
    make gpu-plan                       # CPU only: FLOPs and H100-hours per recipe (Markdown)
    python scripts/gpu_check.py --plan --measured gpu_check_results/gpu_check.json

**Check** (default, ``--device cuda``). For each full-size experiment of :data:`EXPERIMENTS`
(``conf/experiment/<name>.yaml``; the pretraining ones through ``conf/pretrain.yaml`` as
``migalab-pretrain`` composes them, the others through ``conf/train.yaml``) it composes the
experiment's Hydra config, instantiates its LightningModule exactly as ``migalab.train`` does
(``hydra.utils.instantiate(cfg.model)``, then the module's own ``setup("fit")``) and its
datamodule (``cfg.data``), and times training steps on **synthetic input**: a small skeleton
cache of random keypoints is written to a temporary folder in the cache format
(:mod:`migalab.data.cache`), RGB and face frames come from a stand-in for the prepared clips
(random uint8 frames of the prepared size), and the datamodule's own ``setup`` and training
loader turn them into one batch, so the batch has exactly the structure, shapes, dtypes and
batch size of training (``data.batch_size``; heatmaps of ``data.heatmap.render=device`` are
rendered on the device every step, as the trainer's ``on_after_batch_transfer`` does).

A timed step is: the datamodule's ``on_after_batch_transfer`` + the module's ``training_step``
(forward + loss) under autocast, ``backward``, gradient clipping when the recipe sets
``trainer.gradient_clip_val``, the optimiser of ``cfg.model.optimizer`` (its step and
``zero_grad``). Not included: the data loading, Lightning's loop and logging overhead, the lr
scheduler and lr scaling (they do not change the cost of a step), pretrained weights (random
initialisation). Every experiment runs under bf16 autocast; ``agcn_joint`` also in fp32 (with
PyTorch's default TF32 flags, recorded). The recipes themselves set
``trainer.precision=16-mixed`` (fp16 + loss scaling), whose tensor-core peak equals bf16's.

Per experiment and precision: the median step time over ``--steps`` steps after ``--warmup``
steps (the device is synchronised after each step), clips/s (batch / median step; for MAMP a
clip is a 120-frame window), peak memory (``torch.cuda.max_memory_allocated`` over warm-up and
timed steps; null on CPU), FLOPs of one training step (forward + backward, counted by
``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions and attention, not
element-wise work nor the optimiser), the achieved TFLOP/s and the MFU against the dense peak of
the device (:data:`PEAKS`, by device name; an unknown device gets MFU null and a note).
``--compile``: also the step time with ``model.compile=true`` (the encoder compiled in place,
as training does) and, for the conv nets, with channels-last memory format, as a speed-up
factor over eager (eager ms / variant ms).

Results are written after every experiment to ``--out`` (default
``gpu_check_results/gpu_check.json``, atomically) and printed as a table at the end. An
experiment that fails (CUDA out of memory or any error) gets a row with ``skipped: <reason>``
(the traceback goes to stderr and the row's ``traceback``) and the next one runs. Once
``--budget-s`` seconds (default 420) have passed, the remaining experiments are skipped (the one
running then finishes first).

Last, the decoder: torchcodec reading 16 frames spread over a 62-frame prepared clip, on one
CPU thread (a loader worker) and on the GPU's video decoder (NVDEC, ``device="cuda"``), in clips
per second (``decode`` in the JSON; a decoder that cannot run gets its reason).

``--device cpu --tiny --steps 1`` runs the same code on the CPU with the experiments' ``_synth``
variants (CPU-sized models and inputs) at batch 2, bf16 autocast included; the tests run it. It
shows that every step runs (bf16 included); its times mean nothing (CPU bf16 is slow).

**Plan** (``--plan``, CPU only, nothing is timed). Per full-size experiment: FLOPs of one training
clip (a batch of 1 at the real input size through the training step, forward + backward) and of
one validation clip (the validation step, forward), the clips per epoch on the real iMiGUE
release (train 12,893 / val 777 / test 4,562 clips; pretraining uses all 18,232), the recipe's
epochs (``trainer.max_epochs``) and validation interval, hence the total FLOPs and the time on
one H100 SXM (989 dense bf16 TFLOP/s) at an MFU that is ASSUMED (``--mfu``, default 0.35) unless
``--measured <gpu_check json>`` gives the MFU measured by the check, and on 8 H100s assuming
perfect scaling. ``--markdown`` prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import platform
import re
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: the full-size experiments (conf/experiment/<name>.yaml) -> the entry point that runs them
EXPERIMENTS: dict[str, str] = {
    "system_a": "train",
    "posec3d_limb": "train",
    "agcn_joint": "train",
    "stt_joint": "train",
    "mvit_rgb": "train",
    "system_b_mg": "train",
    "emotion_face": "train",
    "system_b_emotion": "train",
    "maskfeat_mvit": "pretrain",
    "mamp_skeleton": "pretrain",
}


def experiment_option(name: str) -> str:
    """The ``experiment=`` option of a row or of its ``_synth`` CPU variant (``--tiny``):
    pretraining experiments live in experiment/pretrain/."""
    entry = EXPERIMENTS[name.removesuffix("_synth")]
    return f"pretrain/{name}" if entry == "pretrain" else name


#: experiments also timed in fp32 (besides bf16 autocast)
FP32_EXPERIMENTS = ("agcn_joint",)
#: conv nets (--compile also times channels-last): spatial dims of their convolutions
CONV_NETS: dict[str, int] = {"system_a": 3, "posec3d_limb": 3, "agcn_joint": 2}

#: the real iMiGUE (MiGA 2025 release): clips per split
IMIGUE_CLIPS = {"train": 12_893, "val": 777, "test": 4_562}
IMIGUE_ALL_CLIPS = sum(IMIGUE_CLIPS.values())  # 18,232: what pretraining trains on
#: the real iMiGUE videos: the dataset's statistics table (github.com/linuxsino/iMiGUE,
#: pictures/dataset.png): 359 videos, 2,092 minutes in all, 25 fps, 1280 x 720, clips 2.5 s
#: long on average
IMIGUE_VIDEO_MINUTES = 2_092
IMIGUE_VIDEOS = 359
IMIGUE_FPS = 25
IMIGUE_MEAN_CLIP_S = 2.5
#: OpenPose keypoints per frame of a MiGA release table (the skeleton cache's V)
OPENPOSE_POINTS = 137

DEFAULT_OUT = Path("gpu_check_results/gpu_check.json")
DEFAULT_PLAN_OUT = Path("gpu_check_results/gpu_plan.json")
DEFAULT_MFU = 0.35


@dataclass(frozen=True)
class Peak:
    """Dense (no sparsity) peak TFLOP/s of a GPU, from NVIDIA's datasheets."""

    label: str
    bf16: float  # tensor cores, bf16 / fp16
    tf32: float  # tensor cores, tf32
    fp32: float  # CUDA cores, fp32


#: (words that must all appear in the device name, upper-cased; its peak), first match wins
PEAKS: tuple[tuple[tuple[str, ...], Peak], ...] = (
    (("H100", "PCIE"), Peak("H100 PCIe", 756.0, 378.0, 51.0)),
    (("H100", "NVL"), Peak("H100 NVL", 835.0, 417.5, 60.0)),
    (("H100",), Peak("H100 SXM", 989.0, 494.5, 67.0)),
    (("H200", "NVL"), Peak("H200 NVL", 835.0, 417.5, 60.0)),
    (("H200",), Peak("H200 SXM", 989.0, 494.5, 67.0)),
    (("A100",), Peak("A100", 312.0, 156.0, 19.5)),
    (("L40S",), Peak("L40S", 362.0, 183.0, 91.6)),
)
#: what the plan assumes a GPU to be
PLAN_PEAK = PEAKS[2][1]


def peak_for(device_name: str) -> Peak | None:
    """The peak of a device by its name (``torch.cuda.get_device_name()``), None when unknown
    or a MIG slice (a fraction of the GPU)."""
    name = device_name.upper()
    if re.search(r"\bMIG\b", name):
        return None
    for words, peak in PEAKS:
        if all(w in name for w in words):
            return peak
    return None


def mfu(flops: float | None, seconds: float | None, peak_tflops: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak (None when anything is unknown)."""
    if not flops or not seconds or not peak_tflops:
        return None
    return flops / seconds / (peak_tflops * 1e12)


# -- synthetic data ------------------------------------------------------------------------------
class SyntheticFrames:
    """Stands in for :class:`migalab.data.representations.multimodal.VideoSource` (prepared clips):
    every clip has a video, whose frames are random uint8 crops of the prepared size."""

    source = "prepared"

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = int(size)
        self.rng = np.random.default_rng(seed)

    def has_video(self, record: Any) -> bool:
        return True

    def flags(self, record: Any) -> None:
        return None  # every face frame visible

    def read(self, record: Any, offsets: np.ndarray) -> tuple[np.ndarray, None]:
        shape = (len(offsets), self.size, self.size, 3)
        return self.rng.integers(0, 256, shape, dtype=np.uint8), None


class DecodedFrames(SyntheticFrames):
    """Like :class:`SyntheticFrames`, but every read decodes a real short-GOP mp4 of the
    prepared size (as ``prepare_data`` writes them) with the configured reader, so the loader
    rate of ``--plan`` includes decoding. Its frames are a smooth random pattern drifting over
    time: compressible like a person crop (a flat-shaded render would decode faster, sensor
    noise slower)."""

    def __init__(self, size: int, folder: Path, frames: int, backend: str, gop: int = 16,
                 seed: int = 0, footage: Path | None = None) -> None:  # fmt: skip
        from migalab.data.video.readers import ReaderPool
        from migalab.data.video.writer import write_video

        super().__init__(size, seed)
        clip = stand_in_clip(size, frames, seed, footage)
        self.path = folder / f"clip_{size}_{seed}.mp4"
        write_video(self.path, clip, fps=25, gop=gop)
        self.pool = ReaderPool(backend=backend, max_open=2)

    def read(self, record: Any, offsets: np.ndarray) -> tuple[np.ndarray, None]:
        reader = self.pool.get(self.path)
        return reader.read(np.minimum(offsets, reader.num_frames - 1)), None


def release_windows(window: int, stride: int) -> int:
    """Sliding windows (``window`` frames every ``stride``) over every video of the real release,
    estimated from its total length: each video of ``T`` frames gives ``(T - window) // stride
    + 1``, i.e. about ``T / stride - (window / stride - 1)``, summed over the videos."""
    frames = IMIGUE_VIDEO_MINUTES * 60 * IMIGUE_FPS
    return round(frames / stride - IMIGUE_VIDEOS * (window / stride - 1))


def stand_in_clip(size: int, frames: int, seed: int = 0, footage: Path | None = None) -> np.ndarray:
    """(frames, size, size, 3) uint8 frames standing in for a prepared crop: the centre square of
    a real video's first ``frames`` frames resized to ``size`` (``footage``, looped if shorter),
    else a smooth random pattern drifting over time (compressible like a person crop)."""
    if footage is None:
        rng = np.random.default_rng(seed)
        coarse = rng.integers(0, 256, (size // 16 + 2, size // 16 + 2, 3), dtype=np.uint8)
        big = np.repeat(np.repeat(coarse, 16, 0), 16, 1)
        return np.stack(
            [big[t % 16 : t % 16 + size, t % 16 : t % 16 + size] for t in range(frames)]
        )
    from migalab.data.video.readers import ReaderPool
    from migalab.data.video.transforms import crop_resize

    pool = ReaderPool(backend="auto", max_open=1)  # closes its readers when collected
    reader = pool.get(footage)
    n = min(frames, reader.num_frames)
    video = reader.read(np.arange(n))  # (n, H, W, 3) uint8
    pool.close()
    h, w = video.shape[1:3]
    side = min(h, w)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    clip = crop_resize(video, box, size).permute(0, 2, 3, 1).numpy()  # (n, size, size, 3)
    return clip[np.arange(frames) % n]


def cache_sizes(folder: Path, footage: Path | None, frames: int = 64) -> list[dict[str, Any]]:
    """Disk size of the prepared caches of the real iMiGUE: the skeleton cache from its format
    (whole per-video (T, 137, 3) tables over every frame of the release), the prepared RGB and
    face clips (one short-GOP mp4 per labelled clip, its frames only) from the bytes per frame
    of :func:`stand_in_clip` (``footage`` or the pattern) written as ``prepare_data`` writes them
    (the ``imigue`` data config's size, GOP and CRF)."""
    from migalab.data.video.writer import write_video

    video_frames = IMIGUE_VIDEO_MINUTES * 60 * IMIGUE_FPS
    clip_frames = round(IMIGUE_ALL_CLIPS * IMIGUE_MEAN_CLIP_S * IMIGUE_FPS)
    rows = [
        {"cache": f"skeleton cache ({dtype})", "per": "video frame", "frames": video_frames,
         "bytes_per_frame": OPENPOSE_POINTS * 3 * itemsize, "measured_on": "the format"}
        for dtype, itemsize in (("float32", 4), ("float16", 2))
    ]  # fmt: skip
    data = compose("mvit_rgb", []).data
    source = str(footage.name) if footage is not None else "the drifting pattern (stand-in)"
    for name, size, gop, crf in (
        ("RGB person crops", data.video.prepared_size, data.video.prepared_gop,
         data.video.prepared_crf),
        ("face crops", data.face.size, data.face.prepared_gop, data.face.prepared_crf),
    ):  # fmt: skip
        path = folder / f"size_{size}.mp4"
        write_video(path, stand_in_clip(int(size), frames, 1, footage), fps=IMIGUE_FPS,
                    gop=int(gop), crf=int(crf))  # fmt: skip
        rows.append({"cache": f"{name} ({size}x{size}, GOP {gop}, CRF {crf})",
                     "per": "labelled-clip frame", "frames": clip_frames,
                     "bytes_per_frame": path.stat().st_size / frames,
                     "measured_on": source})  # fmt: skip
    for r in rows:
        r["gib"] = r["frames"] * r["bytes_per_frame"] / 2**30
    return rows


def write_synthetic_cache(
    root: Path,
    splits: Mapping[str, str],
    *,
    train_clips: int,
    clip_frames: int,
    num_classes: int,
    img_shape: tuple[int, int],
    seed: int = 0,
) -> None:
    """A skeleton cache (:mod:`migalab.data.cache` format, 137 OpenPose keypoints) of random
    poses: 4 training videos holding ``train_clips`` clips or more, 2 videos of every other
    split, clips of ``clip_frames`` frames back to back; labels cycle over the classes (test
    hidden), videos alternate win / lose."""
    from migalab.data.cache import FORMAT_VERSION, write_index, write_meta

    rng = np.random.default_rng(seed)
    h, w = img_shape
    rows: list[dict[str, Any]] = []
    video = 0
    for key, split in splits.items():
        videos = 4 if key == "train" else 2
        per_video = max(2, math.ceil(train_clips / videos)) if key == "train" else 2
        for _ in range(videos):
            video += 1
            vid = f"{video:04d}"
            frames = per_video * clip_frames
            # a person in the middle of the frame, joints jittering around their places
            base = np.stack([rng.uniform(0.35 * w, 0.65 * w, 137),
                             rng.uniform(0.15 * h, 0.95 * h, 137)], -1)  # fmt: skip
            xy = base[None] + rng.normal(0.0, 0.01 * h, (frames, 137, 2))
            arr = np.concatenate([xy, rng.uniform(0.6, 1.0, (frames, 137, 1))], -1)
            (root / split).mkdir(parents=True, exist_ok=True)
            np.save(root / split / f"{vid}.npy", arr.astype(np.float32))
            for row in range(per_video):
                label = -1 if key == "test" else len(rows) % num_classes
                rows.append({
                    "name": f"{vid}_{row}", "video_id": vid, "split": split, "row": row,
                    "label": label, "start": row * clip_frames,
                    "end": (row + 1) * clip_frames - 1, "video_frames": frames, "height": h,
                    "width": w, "emotion": video % 2, "video_path": "",
                    "file": f"{split}/{vid}.npy",
                })  # fmt: skip
    write_index(root, rows)
    write_meta(root, {"format_version": FORMAT_VERSION, "layout": "openpose137",
                      "source": "scripts/gpu_check.py (random poses)"})  # fmt: skip


# -- configs, models, batches ---------------------------------------------------------------------
def compose(name: str, overrides: list[str]) -> Any:
    """The experiment's config as its entry point composes it (``train`` / ``pretrain``)."""
    from migalab.utils.hydra import compose_config

    base = name.removesuffix("_synth")
    return compose_config(EXPERIMENTS[base], [f"experiment={experiment_option(name)}", *overrides])


@dataclass
class Setup:
    """An experiment ready to step: config, datamodule, a training batch on the device."""

    name: str
    cfg: Any
    datamodule: Any
    batch: dict[str, Any]
    val_batch: dict[str, Any] | None
    batch_size: int


def data_overrides(cache_dir: Path, batch_size: int | None) -> list[str]:
    """Overrides reading the synthetic cache in this process (no loader workers)."""
    out = [f"data.cache_dir={cache_dir}", "data.num_workers=0", "data.persistent_workers=false",
           "data.pin_memory=false"]  # fmt: skip
    if batch_size is not None:
        out += [f"data.batch_size={batch_size}", f"data.eval_batch_size={batch_size}"]
    return out


def build_setup(
    name: str, tmp: Path, device: Any, *, tiny: bool, batch_size: int | None, val: bool = False,
    decode: bool = False, footage: Path | None = None, overrides: Sequence[str] = (),
) -> Setup:  # fmt: skip
    """Compose ``name`` (its ``_synth`` variant when ``tiny``), write a synthetic cache fitting
    its data config, and build one training batch (and one validation batch) through the
    datamodule's ``setup`` and loaders, moved to ``device``."""
    import hydra
    from lightning.pytorch.utilities import move_data_to_device

    from migalab.data.representations import MultiModalRepresentation

    exp = f"{name}_synth" if tiny else name
    cache = tmp / "cache"
    cfg = compose(exp, [*data_overrides(cache, batch_size), *overrides])
    dm = hydra.utils.instantiate(cfg.data)
    rep = dm.representation
    # clips as long as the real ones on average (2.5 s at 25 fps): clip sampling spreads the
    # frames over the whole clip, so the decoder reads its whole span (--tiny: short clips)
    span = 2 * int(dm.clip.num_frames) if tiny else round(IMIGUE_MEAN_CLIP_S * IMIGUE_FPS)
    if isinstance(rep, MultiModalRepresentation):
        if not hasattr(rep, "_video_source") or not hasattr(rep, "_face_source"):
            raise RuntimeError("MultiModalRepresentation no longer caches its video sources in "
                               "_video_source / _face_source: update gpu_check.py")  # fmt: skip
        if decode:  # real mp4s through the configured reader (the --plan loader rate)
            frames = max(span, int(dm.clip.num_frames))
            rep._video_source = DecodedFrames(rep.video.prepared_size, tmp, frames,
                                              rep.video.backend, seed=1, footage=footage)  # fmt: skip
            rep._face_source = DecodedFrames(rep.face.size, tmp, frames, rep.face.backend, seed=2,
                                             footage=footage)  # fmt: skip
        else:
            rep._video_source = SyntheticFrames(rep.video.prepared_size, seed=1)
            rep._face_source = SyntheticFrames(rep.face.size, seed=2)
    splits = dict(dm.splits)
    val_split = (dm.unlabelled or {}).get("val_split")
    if val_split and val_split not in splits.values():
        splits["val"] = val_split
    window = int((dm.unlabelled or {}).get("window") or 0)
    write_synthetic_cache(
        cache, splits, train_clips=dm.batch_size, clip_frames=max(span, window),
        num_classes=dm.num_classes, img_shape=tuple(dm.img_shape),
    )  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    val_batch = next(iter(dm.val_dataloader())) if val and "val" in dm.datasets else None
    n = int(batch["index"].shape[0])
    if n != dm.batch_size:
        raise RuntimeError(f"the synthetic training batch has {n} clips, not {dm.batch_size}")
    return Setup(
        name=name, cfg=cfg, datamodule=dm, batch=move_data_to_device(batch, device),
        val_batch=move_data_to_device(val_batch, device) if val_batch is not None else None,
        batch_size=n,
    )  # fmt: skip


def build_model(cfg: Any, datamodule: Any, device: Any) -> Any:
    """The LightningModule as ``migalab.train`` builds it, set up for fitting on ``device``."""
    import hydra

    model = hydra.utils.instantiate(cfg.model)
    loss = getattr(model, "loss_fn", None)
    if datamodule.unlabelled is None and hasattr(loss, "set_class_counts"):
        loss.set_class_counts(datamodule.class_counts)  # what the module's setup takes
    model.setup("fit")  # channels-last, torch.compile (model.compile / model.channels_last)
    return model.to(device).train()


def describe(x: Any) -> Any:
    """Shapes and dtypes of a batch input (a tensor or a dict of them)."""
    import torch

    if isinstance(x, torch.Tensor):
        return f"{tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    if isinstance(x, Mapping):
        return {k: describe(v) for k, v in x.items()}
    return repr(x)


def to_memory_format(x: Any, fmt: Any) -> Any:
    """5-D float tensors of a batch input in ``fmt`` (channels_last_3d)."""
    import torch

    if isinstance(x, torch.Tensor) and x.dim() == 5 and x.is_floating_point():
        return x.contiguous(memory_format=fmt)
    if isinstance(x, Mapping):
        return {k: to_memory_format(v, fmt) for k, v in x.items()}
    return x


def flop_counter() -> Any:
    """``FlopCounterMode`` that also counts the CPU flash-attention kernels (PyTorch registers
    only the CUDA ones; F.scaled_dot_product_attention on the CPU would count 0)."""
    import torch
    from torch.utils.flop_counter import (
        FlopCounterMode,
        sdpa_backward_flop_count,
        sdpa_flop_count,
    )

    aten = torch.ops.aten

    def fwd(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_flop_count(q, k, v)

    def bwd(g: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kw: Any) -> int:
        return sdpa_backward_flop_count(g, q, k, v)

    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: fwd,
               aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}  # fmt: skip
    return FlopCounterMode(display=False, custom_mapping=mapping)


class Stepper:
    """One training step of a module on a fixed batch (module docstring: what it includes)."""

    def __init__(
        self,
        setup: Setup,
        model: Any,
        precision: str,
        memory_format: Any = None,
    ) -> None:
        import torch

        self.setup, self.model, self.precision = setup, model, precision
        self.device = next(model.parameters()).device
        self.optimizer = model.build_optimizer()  # configure_optimizers without a trainer
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.clip = setup.cfg.trainer.get("gradient_clip_val")
        self.memory_format = memory_format
        self.autocast: Callable[[], Any] = (
            (lambda: torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
            if precision == "bf16" else contextlib.nullcontext
        )  # fmt: skip
        self.step_index = 0

    def batch(self) -> dict[str, Any]:
        b = self.setup.datamodule.on_after_batch_transfer(self.setup.batch, 0)
        if self.memory_format is not None:
            b = dict(b, x=to_memory_format(b["x"], self.memory_format))
        return b

    def forward_backward(self, batch: dict[str, Any]) -> Any:
        with self.autocast():
            loss = self.model.training_step(batch, self.step_index)
        loss.backward()
        return loss

    def __call__(self) -> float:
        import torch

        loss = self.forward_backward(self.batch())
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, float(self.clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_index += 1
        return float(loss.detach())

    def count_flops(self) -> int:
        """FLOPs of forward + backward of one step (the optimiser does not step)."""
        batch = self.batch()
        with flop_counter() as counter:
            self.forward_backward(batch)
        self.optimizer.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(stepper: Stepper, warmup: int, steps: int) -> dict[str, Any]:
    """Warm-up steps, then ``steps`` timed steps (synchronised each): times in ms, peak
    memory, the last loss."""
    import torch

    device = stepper.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    first_s = None
    loss = float("nan")
    for i in range(warmup):
        t0 = time.perf_counter()
        loss = stepper()
        synchronize(device)
        if i == 0:
            first_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = stepper()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "step_ms": statistics.median(times),
        "step_ms_min": min(times),
        "step_ms_max": max(times),
        "first_step_s": first_s,
        "peak_mem_gib": peak,
        "loss_last": loss if math.isfinite(loss) else None,
        "loss_finite": math.isfinite(loss),
    }


def release(device: Any) -> None:
    """Free what the last experiment left (after an OOM too)."""
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- the check ------------------------------------------------------------------------------------
class Budget:
    """Wall-clock budget of the check."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = float(seconds), time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def exhausted(self) -> bool:
        return self.elapsed > self.seconds

    def reason(self) -> str:
        return (f"time budget exhausted: {self.elapsed:.0f} s elapsed of --budget-s "
                f"{self.seconds:.0f}")  # fmt: skip


def skip_reason(err: BaseException, batch_size: int | None, precision: str) -> str:
    """One line naming the failure (never a traceback)."""
    import torch

    if isinstance(err, torch.OutOfMemoryError):
        return f"CUDA out of memory at batch {batch_size} ({precision})"
    lines = str(err).strip().splitlines() or [""]
    return f"{type(err).__name__}: {lines[0][:300]}".rstrip(": ")


def device_info(device: Any) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__,
                            "python": platform.python_version(), "host": platform.node()}  # fmt: skip
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        props = torch.cuda.get_device_properties(device)
        peak = peak_for(name)
        info.update(
            name=name, capability=".".join(map(str, torch.cuda.get_device_capability(device))),
            memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            peak=None if peak is None else {"label": peak.label, "bf16_tflops": peak.bf16,
                                            "tf32_tflops": peak.tf32, "fp32_tflops": peak.fp32},
            tf32={"matmul": torch.backends.cuda.matmul.allow_tf32,
                  "cudnn": torch.backends.cudnn.allow_tf32},
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )  # fmt: skip
        if peak is None:
            info["note"] = (f"no peak figure for device {name!r} (unknown, or a MIG slice): MFU "
                            "is null; add it to PEAKS in scripts/gpu_check.py")  # fmt: skip
    else:
        info.update(name=platform.processor() or platform.machine(), peak=None,
                    note="CPU: no peak figure, MFU is null")  # fmt: skip
    return info


def measure(
    setup: Setup, model: Any, precision: str, args: argparse.Namespace, peak: Peak | None,
    memory_format: Any = None, flops: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Time ``model`` on ``setup``'s batch and count a step's FLOPs (unless given)."""
    stepper = Stepper(setup, model, precision, memory_format)
    timing = time_steps(stepper, args.warmup, args.steps)
    if flops is None:
        flops = stepper.count_flops()
    seconds = timing["step_ms"] / 1e3
    peak_tflops = None
    if peak is not None:
        peak_tflops = peak.bf16 if precision == "bf16" else peak.fp32
    row = {
        **timing,
        "clips_per_s": setup.batch_size / seconds,
        "flops_per_step": flops,
        "tflops_per_s": flops / seconds / 1e12 if flops else None,
        "mfu": mfu(flops, seconds, peak_tflops),
        "peak_tflops": peak_tflops,
    }
    if precision == "fp32" and peak is not None:
        row["mfu_vs_tf32"] = mfu(flops, seconds, peak.tf32)
    return row


def check_experiment(
    name: str, args: argparse.Namespace, device: Any, peak: Peak | None, budget: Budget,
    emit: Callable[[dict[str, Any]], None],
) -> None:  # fmt: skip
    """Every row of one experiment (a row per precision), each passed to ``emit``."""
    import torch

    precisions = ["bf16", *(["fp32"] if name in FP32_EXPERIMENTS else [])]
    entry = EXPERIMENTS[name]
    batch_size = 2 if args.tiny else None
    with tempfile.TemporaryDirectory(prefix=f"gpu_check_{name}_") as tmp:
        setup: Setup | None
        try:
            setup = build_setup(name, Path(tmp), device, tiny=args.tiny, batch_size=batch_size)
        except Exception as err:  # any failure: a row, then the next experiment
            trace = traceback.format_exc()
            print(trace, file=sys.stderr)
            for p in precisions:
                emit({"experiment": name, "entry": entry, "precision": p,
                      "skipped": skip_reason(err, batch_size, p), "traceback": trace})  # fmt: skip
            setup = None
        if setup is None:
            release(device)
            return
        base = {"experiment": name, "entry": entry, "config": f"experiment={experiment_option(name)}"
                + ("_synth (--tiny)" if args.tiny else ""), "batch_size": setup.batch_size,
                "input": describe(setup.batch["x"]),
                "trainer_precision": str(setup.cfg.trainer.get("precision")),
                "epochs": int(setup.cfg.trainer.max_epochs)}  # fmt: skip
        model = None
        eager: dict[str, Any] = {}
        for p in precisions:
            if budget.exhausted():
                emit({**base, "precision": p, "skipped": budget.reason()})
                continue
            row: dict[str, Any] = {**base, "precision": p}
            try:
                if model is None:
                    torch.manual_seed(0)
                    model = build_model(setup.cfg, setup.datamodule, device)
                    base["params_m"] = sum(q.numel() for q in model.parameters()) / 1e6
                    row["params_m"] = base["params_m"]
                row["model_input"] = describe(setup.datamodule.on_after_batch_transfer(
                    setup.batch, 0)["x"])  # fmt: skip
                row.update(measure(setup, model, p, args, peak))
                eager[p] = row
                print(f"[{name}] {p}: {row['step_ms']:.1f} ms/step, "
                      f"{row['clips_per_s']:.1f} clips/s, {row['flops_per_step'] / 1e9:.1f} "
                      f"GFLOP/step", flush=True)  # fmt: skip
            except Exception as err:
                trace = traceback.format_exc()
                print(trace, file=sys.stderr)
                row.update(skipped=skip_reason(err, setup.batch_size, p), traceback=trace)
                model = None
            if row.get("skipped"):
                release(device)  # outside the except block: its frames hold the tensors
            emit(row)
        del model
        release(device)
        if args.compile and "bf16" in eager:
            for variant in variants(name, args):
                emit_variant(name, variant, setup, args, device, peak, budget, eager["bf16"],
                             emit)  # fmt: skip
        del setup
        release(device)


def variants(name: str, args: argparse.Namespace) -> list[str]:
    """The --compile variants of an experiment."""
    out = ["compile"]
    if name in CONV_NETS:
        out.append("channels_last" if CONV_NETS[name] == 2 else "channels_last_3d")
    return out


def emit_variant(
    name: str, variant: str, setup: Setup, args: argparse.Namespace, device: Any,
    peak: Peak | None, budget: Budget, eager: dict[str, Any],
    emit: Callable[[dict[str, Any]], None],
) -> None:  # fmt: skip
    """Time one --compile variant (bf16) against the eager row."""
    import torch

    row: dict[str, Any] = {"experiment": name, "entry": EXPERIMENTS[name], "precision": "bf16",
                           "variant": variant, "batch_size": setup.batch_size}  # fmt: skip
    if budget.exhausted():
        emit({**row, "skipped": budget.reason()})
        return
    model = None
    try:
        exp = f"{name}_synth" if args.tiny else name
        overrides = data_overrides(Path(setup.cfg.data.cache_dir),
                                   setup.batch_size if args.tiny else None)  # fmt: skip
        memory_format = None
        if variant == "compile":
            overrides.append(f"model.compile={{backend: {args.compile_backend}}}")
            row["note"] = "model.compile (the encoder compiled in place, as in training)"
        elif variant == "channels_last":
            overrides.append("model.channels_last=true")
            row["note"] = "model.channels_last=true (4-D weights and inputs channels-last)"
        else:
            memory_format = torch.channels_last_3d
            row["note"] = ("channels_last_3d applied by this script (model.channels_last=true "
                           "converts 4-D tensors only and fails on 3-D conv weights)")  # fmt: skip
        cfg = compose(exp, overrides)
        torch.manual_seed(0)
        model = build_model(cfg, setup.datamodule, device)
        if memory_format is not None:
            model = model.to(memory_format=memory_format)
        row.update(measure(setup, model, "bf16", args, peak, memory_format,
                           flops=eager.get("flops_per_step")))  # fmt: skip
        row["speedup_vs_eager"] = eager["step_ms"] / row["step_ms"]
        print(f"[{name}] {variant}: {row['step_ms']:.1f} ms/step "
              f"({row['speedup_vs_eager']:.2f}x eager)", flush=True)  # fmt: skip
    except Exception as err:
        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        row.update(skipped=skip_reason(err, setup.batch_size, "bf16"), traceback=trace)
    del model
    release(device)
    emit(row)


def finite(obj: Any) -> Any:
    """NaN / inf floats as None (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def decode_check(folder: Path, device: Any, clips: int = 24, size: int = 256,
                 frames: int = 16) -> list[dict[str, Any]]:  # fmt: skip
    """torchcodec decoding of a prepared clip on the CPU (one FFmpeg thread: one loader worker)
    and on ``device``'s video decoder (NVDEC, ``VideoDecoder(device="cuda")``): clips per second
    reading ``frames`` frames spread over a clip of the real mean length (62 frames at 25 fps,
    GOP 16, ``size``² as ``prepare_data`` writes them). A decoder that cannot run is a row with
    its reason (e.g. a torchcodec build without CUDA)."""
    import torch

    from migalab.data.video.readers import torchcodec_problem
    from migalab.data.video.writer import write_video

    span = round(IMIGUE_MEAN_CLIP_S * IMIGUE_FPS)
    path = folder / "decode_check.mp4"
    write_video(path, stand_in_clip(size, span, 3), fps=IMIGUE_FPS, gop=16, crf=20)
    indices = np.linspace(0, span - 1, frames).round().astype(int).tolist()
    targets = ["cpu"] + (["cuda"] if device.type == "cuda" else [])
    rows: list[dict[str, Any]] = []
    for target in targets:
        row: dict[str, Any] = {"decoder": f"torchcodec ({target})", "clip": f"{frames} of {span} "
                               f"frames, {size}x{size}"}  # fmt: skip
        problem = torchcodec_problem()
        if problem:
            rows.append({**row, "skipped": problem})
            continue
        try:
            from torchcodec.decoders import VideoDecoder

            def read(target: str = target) -> torch.Tensor:
                dec = VideoDecoder(str(path), device=target, seek_mode="exact",
                                   num_ffmpeg_threads=1)  # fmt: skip
                return dec.get_frames_at(indices=indices).data

            read()  # warm-up (CUDA context, decoder creation)
            synchronize(torch.device(target))
            t0 = time.perf_counter()
            for _ in range(clips):
                out = read()
            synchronize(torch.device(target))
            seconds = time.perf_counter() - t0
            rows.append({**row, "clips_per_s": clips / seconds, "frames_on": str(out.device)})
        except Exception as err:  # a decoder this build or card cannot run
            rows.append({**row, "skipped": f"{type(err).__name__}: {str(err).splitlines()[0]}"})
    if len(rows) == 2 and all("clips_per_s" in r for r in rows):
        rows[1]["vs_cpu_worker"] = rows[1]["clips_per_s"] / rows[0]["clips_per_s"]
    return rows


def run_check(args: argparse.Namespace) -> int:
    import torch

    from migalab.utils.io import atomic_write_json

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here: run on a GPU, or --device cpu --tiny to test",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = Budget(args.budget_s)
    info = device_info(device)
    peak = peak_for(info["name"]) if device.type == "cuda" else None
    out = Path(args.out or DEFAULT_OUT)
    payload: dict[str, Any] = {
        "script": "scripts/gpu_check.py",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": None,
        "device": info,
        "settings": {
            "steps": args.steps,
            "warmup": args.warmup,
            "tiny": args.tiny,
            "compile": args.compile,
            "budget_s": args.budget_s,
        },  # fmt: skip
        "notes": [
            "synthetic inputs of the experiments' real shapes; a step = on_after_batch_transfer "
            "+ training_step under autocast + backward + grad clipping + optimizer step",
            "flops_per_step: forward + backward (torch.utils.flop_counter.FlopCounterMode)",
            "mfu: achieved FLOP/s over the device's dense peak of the row's precision (fp32 "
            "rows: CUDA-core fp32 peak; mfu_vs_tf32 against the TF32 tensor-core peak)",
        ],
        "rows": [],
    }

    def emit(row: dict[str, Any]) -> None:
        payload["rows"].append(finite(row))
        payload["elapsed_s"] = round(budget.elapsed, 1)
        atomic_write_json(out, payload)

    names = args.experiments or list(EXPERIMENTS)
    for i, name in enumerate(names):
        if budget.exhausted():
            print(f"{budget.reason()}: skipping {', '.join(names[i:])}", flush=True)
            for rest in names[i:]:
                emit({"experiment": rest, "entry": EXPERIMENTS[rest], "precision": "bf16",
                      "skipped": budget.reason()})  # fmt: skip
            break
        print(f"[{name}] {EXPERIMENTS[name]} ({budget.elapsed:.0f} s elapsed)", flush=True)
        check_experiment(name, args, device, peak, budget, emit)
    with tempfile.TemporaryDirectory(prefix="gpu_check_decode_") as tmp:
        payload["decode"] = [finite(r) for r in decode_check(Path(tmp), device)]
    payload["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    payload["elapsed_s"] = round(budget.elapsed, 1)
    atomic_write_json(out, finite(payload))
    print_check_table(payload)
    for r in payload["decode"]:
        print(f"decode, {r['decoder']}, {r['clip']}: "
              + (f"{r['clips_per_s']:.1f} clips/s" if "clips_per_s" in r else r["skipped"])
              + (f" ({r['vs_cpu_worker']:.1f}x one CPU worker)" if "vs_cpu_worker" in r else ""))  # fmt: skip
    print(f"results: {out}")
    return 0


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _num(value: float | None) -> str:
    """2 decimals below 10, else a whole number with thousands separators; None: empty."""
    if value is None:
        return ""
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def print_check_table(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    dev = payload["device"]
    table = Table(title=f"gpu_check on {dev.get('name')} ({payload['elapsed_s']:.0f} s)")
    for col in ("experiment", "prec", "batch", "step ms", "clips/s", "peak GiB", "GFLOP/step",
                "TFLOP/s", "MFU", "vs eager", "skipped"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("experiment", "skipped") else "right")
    for r in payload["rows"]:
        name = r["experiment"] + (f" ({r['variant']})" if r.get("variant") else "")
        flops = r.get("flops_per_step")
        table.add_row(
            name, r.get("precision", ""), str(r.get("batch_size", "")), _fmt(r.get("step_ms")),
            _fmt(r.get("clips_per_s")), _fmt(r.get("peak_mem_gib"), ".2f"),
            _fmt(flops / 1e9 if flops else None), _fmt(r.get("tflops_per_s"), ".2f"),
            _fmt(r.get("mfu"), ".1%"), _fmt(r.get("speedup_vs_eager"), ".2f"),
            r.get("skipped") or "",
        )  # fmt: skip
    console = Console(width=200)
    console.print(table)
    if dev.get("note"):
        console.print(dev["note"])


# -- the plan -------------------------------------------------------------------------------------
def loader_rate(setup: Setup, samples: int = 24) -> float:
    """Training samples per second of one loader worker: ``dataset[i]`` of the training split
    (reading the cache, the training transforms, decoding the prepared clips where the recipe
    reads video), timed in this process after one warm-up sample; a worker is one process on
    one CPU core. The batch hooks that run on the GPU (heatmaps rendered there) are not in it."""
    ds = setup.datamodule.datasets["train"]
    ds[0]
    t0 = time.perf_counter()
    for i in range(samples):
        ds[i % len(ds)]
    return samples / (time.perf_counter() - t0)


def count_clip_flops(setup: Setup, model: Any) -> tuple[int, int | None]:
    """FLOPs of a training step (forward + backward) and of a validation step (forward) on
    ``setup``'s batches (batch 1), fp32."""
    import torch

    stepper = Stepper(setup, model, "fp32")
    train = stepper.count_flops()
    val = None
    if setup.val_batch is not None:
        vb = setup.datamodule.on_after_batch_transfer(setup.val_batch, 0)
        model.eval()
        with torch.no_grad(), flop_counter() as counter:
            model.validation_step(vb, 0)
        model.train()
        val = int(counter.get_total_flops())
    return train, val


def load_measured(path: Path) -> dict[str, dict[str, Any]]:
    """Measured bf16 (eager) rows of a gpu_check JSON by experiment, with the device name."""
    import json

    payload = json.loads(path.read_text())
    device = payload.get("device", {}).get("name")
    out = {}
    for r in payload.get("rows", []):
        if r.get("precision") == "bf16" and not r.get("variant") and r.get("mfu"):
            out[r["experiment"]] = {"mfu": float(r["mfu"]), "device": device}
    return out


def plan_row(
    name: str, cfg: Any, train_flops: int, val_flops: int | None, *, mfu_value: float,
    mfu_source: str, mamp_windows: int | None, worker_clips_per_s: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Clips, epochs, total FLOPs and H100 hours of one recipe; the training clips per second
    one H100 consumes at that MFU and, given one loader worker's measured rate, the workers
    (CPU cores) per GPU that keep up with it."""
    entry = EXPERIMENTS[name]
    batch = int(cfg.data.batch_size)
    epochs = int(cfg.trainer.max_epochs)
    val_every = int(cfg.trainer.get("check_val_every_n_epoch") or 1)
    notes = []
    val_items = IMIGUE_CLIPS["val"]
    if entry == "pretrain":
        unlabelled = cfg.data.get("unlabelled") or {}
        if unlabelled.get("source", "windows") == "windows":
            window, stride = int(unlabelled.get("window")), int(unlabelled.get("stride"))
            estimate = release_windows(window, stride)
            items = mamp_windows or estimate
            val_items = round(items * IMIGUE_CLIPS["val"] / IMIGUE_ALL_CLIPS)
            if mamp_windows is None:
                notes.append(f"ESTIMATED {estimate:,} windows of {window} frames every {stride} "
                             f"over the whole per-video tables from the release's total length "
                             f"({IMIGUE_VIDEO_MINUTES:,} min at {IMIGUE_FPS} fps in "
                             f"{IMIGUE_VIDEOS} videos: iMiGUE's statistics; give --mamp-windows "
                             f"to override); validation: the val split's share of the clips, "
                             f"{val_items:,} windows")  # fmt: skip
        else:
            items = IMIGUE_ALL_CLIPS
    else:
        items = IMIGUE_CLIPS["train"]
    steps = items // batch if items > batch else 1  # drop_last
    clips_per_epoch = steps * batch
    validations = epochs // val_every
    train_total = train_flops * clips_per_epoch * epochs
    val_total = (val_flops or 0) * val_items * validations
    total = train_total + val_total
    seconds = total / (PLAN_PEAK.bf16 * 1e12 * mfu_value)
    needed = PLAN_PEAK.bf16 * 1e12 * mfu_value / train_flops if train_flops else None
    workers = (math.ceil(needed / worker_clips_per_s)
               if needed is not None and worker_clips_per_s else None)  # fmt: skip
    return {
        "experiment": name, "entry": entry, "batch_size": batch, "epochs": epochs,
        "gflop_per_clip_train": train_flops / 1e9,
        "gflop_per_clip_val": None if val_flops is None else val_flops / 1e9,
        "clips_per_epoch": clips_per_epoch, "steps_per_epoch": steps,
        "validations": validations, "total_pflop": total / 1e15,
        "val_share": val_total / total if total else 0.0,
        "mfu": mfu_value, "mfu_source": mfu_source,
        "h100_hours": seconds / 3600, "hours_on_8_h100": seconds / 3600 / 8,
        "gpu_clips_per_s": needed, "worker_clips_per_s": worker_clips_per_s,
        "workers_per_gpu": workers,
        "notes": notes,
    }  # fmt: skip


def run_plan(args: argparse.Namespace) -> int:
    import torch

    from migalab.utils.io import atomic_write_json

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    measured = load_measured(Path(args.measured)) if args.measured else {}
    footage = Path(args.footage) if args.footage else None
    with tempfile.TemporaryDirectory(prefix="gpu_plan_caches_") as tmp:
        caches = cache_sizes(Path(tmp), footage)
    rows: list[dict[str, Any]] = []
    for name in args.experiments or list(EXPERIMENTS):
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"gpu_plan_{name}_") as tmp:
            try:
                # one setup for both: decoded frames have the shapes the FLOPs depend on
                setup = build_setup(name, Path(tmp), device, tiny=args.tiny, batch_size=1,
                                    val=True, decode=True, footage=footage)  # fmt: skip
                torch.manual_seed(0)
                model = build_model(setup.cfg, setup.datamodule, device)
                train_flops, val_flops = count_clip_flops(setup, model)
                worker_rate = loader_rate(setup)
            except Exception as err:
                print(traceback.format_exc(), file=sys.stderr)
                rows.append({"experiment": name, "entry": EXPERIMENTS[name],
                             "skipped": skip_reason(err, 1, "fp32")})  # fmt: skip
                continue
        recipe = compose(f"{name}_synth" if args.tiny else name, [])  # its batch and epochs
        if name in measured:
            m = measured[name]
            mfu_value, source = m["mfu"], f"measured ({m['device']})"
        else:
            mfu_value, source = args.mfu, "assumed"
        row = plan_row(name, recipe, train_flops, val_flops, mfu_value=mfu_value,
                       mfu_source=source, mamp_windows=args.mamp_windows,
                       worker_clips_per_s=worker_rate)  # fmt: skip
        row["input"] = describe(setup.datamodule.on_after_batch_transfer(setup.batch, 0)["x"])
        rows.append(row)
        print(f"[{name}] {row['gflop_per_clip_train']:.1f} GFLOP per training clip "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
        del model, setup
        gc.collect()
    payload = {
        "script": "scripts/gpu_check.py --plan",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "tiny": args.tiny,
        "gpu": {"label": PLAN_PEAK.label, "bf16_tflops": PLAN_PEAK.bf16},
        "clips": {**IMIGUE_CLIPS, "all": IMIGUE_ALL_CLIPS},
        "rows": rows,
        "caches": caches,
        "notes": plan_notes(args, measured),
    }
    atomic_write_json(Path(args.out or DEFAULT_PLAN_OUT), finite(payload))
    if args.markdown:
        print(plan_markdown(rows, payload["notes"]))
        print("\n" + caches_markdown(caches))
    else:
        print_plan_table(rows, payload["notes"])
        print_caches_table(caches)
    return 0


def plan_notes(args: argparse.Namespace, measured: Mapping[str, Any]) -> list[str]:
    notes = [
        f"FLOPs counted on the CPU (fp32) with torch.utils.flop_counter at batch 1 at the real "
        f"input size: training = forward + backward of the training step, validation = forward "
        f"(one val pass over {IMIGUE_CLIPS['val']} clips every check_val_every_n_epoch epochs); "
        f"matmuls, convolutions and attention only (no element-wise work, no optimiser).",
        f"Clips per epoch: iMiGUE train {IMIGUE_CLIPS['train']:,} (pretraining: all "
        f"{IMIGUE_ALL_CLIPS:,}), whole batches only (drop_last); epochs = trainer.max_epochs.",
        f"Hours on one {PLAN_PEAK.label} at {PLAN_PEAK.bf16:.0f} dense bf16 TFLOP/s x MFU; "
        "'8 x H100' = the same GPU-hours / 8 (DDP with perfect scaling: ASSUMED).",
        "Compute only: data loading (video decoding, CPU-side work), checkpoints and the final "
        "test pass are not in the hours; where the loader cannot keep up they are lower bounds.",
        "Loader: 'clips/s one H100 takes' = peak x MFU / training FLOPs per clip; 'per loader "
        "worker' = training samples per second of one process here (cache read, training "
        "transforms, prepared clips decoded with data.video.backend; not the GPU-side batch "
        f"hooks), measured on this machine ({platform.processor() or platform.machine()}); "
        "workers per GPU = the ratio, rounded up (each worker one CPU core).",
    ]
    if len(measured) < len(args.experiments or EXPERIMENTS):
        notes.append(f"MFU {args.mfu:.0%} is ASSUMED (--mfu) where no measured MFU is given "
                     "(--measured <gpu_check json>).")  # fmt: skip
    if args.tiny:
        notes.append("--tiny: the _synth experiments' sizes, not the real recipes' (a test run).")
    return notes


def plan_markdown(rows: list[dict[str, Any]], notes: list[str]) -> str:
    lines = [
        "| experiment | entry | batch | GFLOP / clip (train, fwd+bwd) | GFLOP / clip (val) "
        "| clips / epoch | epochs | total PFLOP | MFU | hours on 1 x H100 (= GPU-hours) "
        "| hours on 8 x H100 | clips/s one H100 takes | clips/s per loader worker "
        "| loader workers per GPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("skipped"):
            lines.append(f"| {r['experiment']} | {r['entry']} | | | | | | | | skipped: "
                         f"{r['skipped']} | |")  # fmt: skip
            continue
        star = " *" if r["notes"] else ""
        lines.append(
            f"| {r['experiment']} | {r['entry']} | {r['batch_size']} "
            f"| {r['gflop_per_clip_train']:.1f} | {_fmt(r['gflop_per_clip_val'])} "
            f"| {r['clips_per_epoch']:,}{star} | {r['epochs']} | {_num(r['total_pflop'])} "
            f"| {r['mfu']:.0%} ({r['mfu_source']}) | {_num(r['h100_hours'])} "
            f"| {_num(r['hours_on_8_h100'])} | {_num(r.get('gpu_clips_per_s'))} "
            f"| {_num(r.get('worker_clips_per_s'))} | {r.get('workers_per_gpu') or ''} |"
        )
    extra = [f"\\* {r['experiment']}: {n}" for r in rows for n in r.get("notes", [])]
    return "\n".join([*lines, "", *[f"- {n}" for n in [*notes, *extra]]])


def caches_markdown(caches: list[dict[str, Any]]) -> str:
    """The prepared caches' disk sizes on the real release, as a Markdown table."""
    lines = ["| cache | frames (real release) | bytes / frame | size (GiB) | bytes / frame from |",
             "|---|---:|---:|---:|---|"]  # fmt: skip
    for c in caches:
        lines.append(f"| {c['cache']} | {c['frames']:,} ({c['per']}s) | {c['bytes_per_frame']:,.0f} "
                     f"| {c['gib']:.1f} | {c['measured_on']} |")  # fmt: skip
    return "\n".join(lines)


def print_caches_table(caches: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Prepared caches on the real iMiGUE (2,092 min at 25 fps; clips 2.5 s)")
    for col in ("cache", "frames", "bytes/frame", "GiB", "bytes/frame from"):
        table.add_column(col, justify="left" if col in ("cache", "bytes/frame from") else "right")
    for c in caches:
        table.add_row(c["cache"], f"{c['frames']:,} ({c['per']}s)", f"{c['bytes_per_frame']:,.0f}",
                      f"{c['gib']:.1f}", c["measured_on"])  # fmt: skip
    Console(width=200).print(table)


def print_plan_table(rows: list[dict[str, Any]], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="GPU plan: full-size recipes on the real iMiGUE")
    for col in ("experiment", "entry", "batch", "GFLOP/clip train", "GFLOP/clip val",
                "clips/epoch", "epochs", "PFLOP", "MFU", "h on 1xH100", "h on 8xH100",
                "clips/s GPU", "clips/s worker", "workers/GPU"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("experiment", "entry", "MFU") else "right")
    for r in rows:
        if r.get("skipped"):
            table.add_row(r["experiment"], r["entry"], *[""] * 7, "skipped", r["skipped"],
                          *[""] * 3)  # fmt: skip
            continue
        table.add_row(
            r["experiment"], r["entry"], str(r["batch_size"]), f"{r['gflop_per_clip_train']:.1f}",
            _fmt(r["gflop_per_clip_val"]), f"{r['clips_per_epoch']:,}", str(r["epochs"]),
            _num(r["total_pflop"]), f"{r['mfu']:.0%} {r['mfu_source']}",
            _num(r["h100_hours"]), _num(r["hours_on_8_h100"]), _num(r.get("gpu_clips_per_s")),
            _num(r.get("worker_clips_per_s")), str(r.get("workers_per_gpu") or ""),
        )  # fmt: skip
    console = Console(width=200)
    console.print(table)
    for n in notes + [f"{r['experiment']}: {n}" for r in rows for n in r.get("notes", [])]:
        console.print(f"- {n}")


# -- command line ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=None,
                   help="a subset (default: all, in the order of EXPERIMENTS)")  # fmt: skip
    p.add_argument("--steps", type=int, default=20, help="timed steps per row (default 20)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed steps first (default 3; 0 with --tiny)")  # fmt: skip
    p.add_argument("--tiny", action="store_true",
                   help="the _synth experiments at batch 2 (a CPU test of this script)")  # fmt: skip
    p.add_argument("--compile", action="store_true",
                   help="also time torch.compile and channels-last (conv nets) vs eager")  # fmt: skip
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="skip the remaining experiments after this many seconds (default 420)")  # fmt: skip
    p.add_argument("--out", default=None,
                   help=f"results JSON (default {DEFAULT_OUT}; --plan: {DEFAULT_PLAN_OUT})")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = p.add_argument_group("plan (--plan: CPU only, no timing)")
    g.add_argument("--plan", action="store_true", help="FLOPs and H100-hours per recipe")
    g.add_argument("--markdown", action="store_true", help="print the plan as Markdown")
    g.add_argument("--mfu", type=float, default=DEFAULT_MFU,
                   help=f"ASSUMED MFU of the plan (default {DEFAULT_MFU})")  # fmt: skip
    g.add_argument("--measured", default=None,
                   help="a gpu_check JSON: its measured bf16 MFU per experiment replaces --mfu")  # fmt: skip
    g.add_argument("--footage", default=None,
                   help="a real video whose centre crops stand in for the prepared clips (the "
                        "loader rate and the caches' bytes per frame; default: a synthetic "
                        "pattern)")  # fmt: skip
    g.add_argument("--mamp-windows", type=int, default=None,
                   help="MAMP's training windows per epoch on the real release (default: "
                        "ASSUMED one per clip)")  # fmt: skip
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = 0 if args.tiny else 3
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    if not 0 < args.mfu <= 1:
        p.error("--mfu must be in (0, 1]")
    return args


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the warnings of calling ``training_step`` without a trainer (``self.log``)."""
    import logging

    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log.*")
        warnings.filterwarnings("ignore", message=r".*self\.trainer.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning.*")
        logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with quiet():
        return run_plan(args) if args.plan else run_check(args)


if __name__ == "__main__":
    sys.exit(main())
