"""PoseC3D (pyskl) geometric pipeline: skeleton clip -> heatmap canvas -> heatmaps or keypoints.

The transforms here work on ``ClipRecord`` in PIXEL space (no ``NormalizeSkeleton``): each one
moves the keypoints into a new canvas and sets ``record.img_shape`` to that canvas (H, W), so the
last step can render Gaussian pseudo-heatmaps on it. Missing joints (score 0) stay exactly (0, 0)
with score 0 and are ignored for every geometric decision (box, crop). Keypoints that a crop
leaves outside the canvas are kept (not made missing), as in pyskl: the renderer only draws the
part of their Gaussian that falls on the canvas. Every transform returns a new record and never
mutates its input.

Standard order (``build_heatmap_pipeline``, following pyskl's PoseC3D configs)::

    train: ValidateClip -> SelectLayout -> [InterpolateMissing] -> UniformSample
           -> PoseCompact(hw_ratio=1) -> Resize(short side 64) -> RandomResizedCrop
           -> Resize((56, 56), keep_ratio=False) -> RandomFlip -> SelectPersons -> render
    eval:  ValidateClip -> SelectLayout -> [InterpolateMissing] -> UniformSample(test)
           -> PoseCompact(hw_ratio=1) -> Resize((64, 64), keep_ratio=False) -> SelectPersons
           -> render                          (or MultiView for several clips / flipped views)

``render`` is ``GeneratePoseTarget`` (CPU, (C, T, H, W) heatmaps, from
``migalab.data.skeleton.heatmaps``) or ``FormatHeatmapKeypoints`` ((M, T, V, 3) keypoints in
canvas pixels, rendered later on the device by ``heatmaps.HeatmapRenderer``).

Flips reuse ``transforms.RandomFlip`` (pixel space: ``x -> W - 1 - x`` and the layout's
``flip_index``); since pixel ``i`` has its centre at coordinate ``i`` this mirrors a rendered
joint heatmap exactly (up to pyskl's truncated 3-sigma windows, ~1e-3), and limb heatmaps too
because every layout's limb set is closed under mirroring (``check_layout``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import JointLayout
from migalab.data.skeleton.transforms import (
    RandomFlip,
    UniformSample,
    temporal_steps,
    uniform_frame_indices,
)
from migalab.data.skeleton.transforms.common import as_layout, replace_record
from migalab.data.transforms_base import Compose, RandomTransform, SeedLike

__all__ = [
    "CenterCrop",
    "Flip",
    "FormatHeatmapKeypoints",
    "MultiView",
    "PoseCompact",
    "RandomResizedCrop",
    "Resize",
    "SelectPersons",
    "build_heatmap_pipeline",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _canvas(record: ClipRecord) -> tuple[int, int]:
    """The record's canvas (H, W) as ints; ValueError naming the clip when unusable."""
    shape = record.img_shape
    if shape is None or len(shape) != 2 or int(shape[0]) <= 0 or int(shape[1]) <= 0:
        raise ValueError(f"clip {record.name}: needs a positive img_shape (H, W), got {shape}")
    return int(shape[0]), int(shape[1])


def _valid(record: ClipRecord) -> np.ndarray:
    """(M, T, V) bool: present keypoints (score > 0)."""
    return np.asarray(record.keypoint_score) > 0


def _affine_kp(record: ClipRecord, scale: tuple[float, float], shift: tuple[float, float]):
    """Keypoints ``kp * scale - shift`` for present joints, missing ones kept at 0 (float32)."""
    kp = record.keypoint.astype(np.float64) * np.asarray(scale) - np.asarray(shift)
    return np.where(_valid(record)[..., None], kp, 0.0).astype(np.float32)


def _crop(record: ClipRecord, box: tuple[int, int, int, int], meta: Mapping[str, Any]):
    """Crop the canvas to ``box = (x0, y0, x1, y1)`` (x1, y1 exclusive; may exceed the canvas)."""
    x0, y0, x1, y1 = box
    return replace_record(
        record,
        meta,
        keypoint=_affine_kp(record, (1.0, 1.0), (float(x0), float(y0))),
        keypoint_score=record.keypoint_score.copy(),
        img_shape=(int(y1 - y0), int(x1 - x0)),
    )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    if len(size) != 2:
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _top_persons(score: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` persons with the largest summed score, in their original order."""
    if score.shape[0] <= n:
        return np.arange(score.shape[0])
    keep = np.argsort(-score.sum(axis=(1, 2)), kind="stable")[:n]
    return np.sort(keep)


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------
class PoseCompact:
    """Crop the canvas to the box around every present keypoint (pyskl ``PoseCompact``).

    The box is the bounding box of all present keypoints over all persons and frames, grown by
    ``padding`` (each half-size times ``1 + padding``) about its centre, then grown so that
    ``h >= hw_ratio[0] * w`` and ``w >= h / hw_ratio[1]`` (``hw_ratio=1``: a square), snapped
    outward to integer pixels (so it contains every keypoint). With ``allow_imgpad=False`` it is
    clipped to the frame (it may then stop being square); otherwise it may extend past the frame
    (the renderer treats the outside as empty). Keypoints move to the box origin and
    ``img_shape`` becomes the box (h, w).

    No crop (canvas unchanged) when the clip has no present keypoint (``meta["compact"] =
    "full_frame"``) or when the box is narrower than ``threshold`` pixels in x or y (pyskl;
    ``"too_small"``); otherwise ``meta["compact"] = "crop"`` and ``meta["compact_box"] =
    (x0, y0, x1, y1)`` in the previous canvas' pixels.
    """

    def __init__(
        self,
        padding: float = 0.25,
        threshold: float = 10,
        hw_ratio: float | tuple[float, float] | None = 1.0,
        allow_imgpad: bool = True,
    ) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding = float(padding)
        self.threshold = float(threshold)
        if hw_ratio is None:
            self.hw_ratio = None
        elif np.isscalar(hw_ratio):
            self.hw_ratio = (float(hw_ratio), float(hw_ratio))
        else:
            self.hw_ratio = (float(hw_ratio[0]), float(hw_ratio[1]))
        self.allow_imgpad = bool(allow_imgpad)

    def box(self, record: ClipRecord) -> tuple[int, int, int, int] | str:
        """The crop box ``(x0, y0, x1, y1)``, or ``"full_frame"`` / ``"too_small"``."""
        valid = _valid(record)
        if not valid.any():
            return "full_frame"
        pts = record.keypoint[valid].astype(np.float64)  # (N, 2)
        (min_x, min_y), (max_x, max_y) = pts.min(axis=0), pts.max(axis=0)
        if max_x - min_x < self.threshold or max_y - min_y < self.threshold:
            return "too_small"
        cx, cy = (max_x + min_x) / 2, (max_y + min_y) / 2
        half_w = (max_x - min_x) / 2 * (1 + self.padding)
        half_h = (max_y - min_y) / 2 * (1 + self.padding)
        x0, x1 = math.floor(cx - half_w), math.ceil(cx + half_w)
        y0, y1 = math.floor(cy - half_h), math.ceil(cy + half_h)
        if self.hw_ratio is not None:
            w, h = x1 - x0, y1 - y0
            h_new = max(h, math.ceil(self.hw_ratio[0] * w - 1e-9))
            w_new = max(w, math.ceil(h_new / self.hw_ratio[1] - 1e-9))
            x0 -= (w_new - w) // 2
            x1 = x0 + w_new
            y0 -= (h_new - h) // 2
            y1 = y0 + h_new
        if not self.allow_imgpad:
            img_h, img_w = _canvas(record)
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = min(img_w, x1), min(img_h, y1)
        return int(x0), int(y0), int(x1), int(y1)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        box = self.box(record)
        if isinstance(box, str):
            _canvas(record)  # the full frame must be a usable canvas
            return replace_record(record, {"compact": box})
        return _crop(record, box, {"compact": "crop", "compact_box": box})

    def __repr__(self) -> str:
        return (
            f"PoseCompact(padding={self.padding}, threshold={self.threshold}, "
            f"hw_ratio={self.hw_ratio}, allow_imgpad={self.allow_imgpad})"
        )


class Resize:
    """Rescale the canvas and the keypoints (pyskl ``Resize``): ``x' = x * W'/W``, same for y.

    * ``keep_ratio=True`` and an int ``size``: the short side becomes ``size`` (pyskl
      ``scale=(-1, size)``); a tuple: the largest scale that fits the long side in ``max(size)``
      and the short side in ``min(size)`` (mmcv ``rescale_size``; -1 = unbounded). New sides are
      ``int(side * factor + 0.5)``.
    * ``keep_ratio=False``: the canvas becomes exactly ``size`` = (H, W) (an int: square).
    """

    def __init__(self, size: tuple[int, int] | int, keep_ratio: bool = True) -> None:
        self.size = int(size) if isinstance(size, int | np.integer) else _pair(size)
        self.keep_ratio = bool(keep_ratio)
        sides = (self.size,) if isinstance(self.size, int) else self.size
        if not self.keep_ratio and min(sides) <= 0:
            raise ValueError(f"Resize(keep_ratio=False) needs positive sizes, got {size!r}")
        if self.keep_ratio and max(sides) <= 0:
            raise ValueError(f"Resize needs a positive size, got {size!r}")

    def out_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """The new canvas (H', W') for a canvas ``shape`` = (H, W)."""
        h, w = shape
        if not self.keep_ratio:
            return _pair(self.size)
        if isinstance(self.size, int):
            factor = self.size / min(h, w)
        else:
            long_max, short_max = float(max(self.size)), float(min(self.size))
            if short_max == -1:  # pyskl (-1, s): short side s, long side unbounded
                long_max, short_max = math.inf, long_max
            factor = min(long_max / max(h, w), short_max / min(h, w))
        return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))

    def __call__(self, record: ClipRecord) -> ClipRecord:
        h, w = _canvas(record)
        new_h, new_w = self.out_shape((h, w))
        return replace_record(
            record,
            keypoint=_affine_kp(record, (new_w / w, new_h / h), (0.0, 0.0)),
            keypoint_score=record.keypoint_score.copy(),
            img_shape=(new_h, new_w),
        )

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, keep_ratio={self.keep_ratio})"


class RandomResizedCrop(RandomTransform):
    """Random crop of a random area fraction and aspect ratio (pyskl ``RandomResizedCrop``).

    Up to ``max_attempts`` candidates with area ``U(area_range) * H * W`` and aspect ratio
    (w/h) log-uniform in ``aspect_ratio_range``, rounded to pixels; the first that fits the
    canvas is placed at a uniformly random integer offset; if none fits, the centred square of
    side ``min(H, W)``. Keypoints move to the crop origin (those outside stay, off-canvas);
    ``img_shape`` becomes the crop size (follow with ``Resize`` to a fixed size). The crop box
    (in the previous canvas) goes to ``meta["crop_box"]``. Seeding: see ``transforms``.
    """

    def __init__(
        self,
        area_range: tuple[float, float] = (0.56, 1.0),
        aspect_ratio_range: tuple[float, float] = (3 / 4, 4 / 3),
        max_attempts: int = 10,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed)
        if not 0 < area_range[0] <= area_range[1] <= 1:
            raise ValueError(f"area_range must satisfy 0 < lo <= hi <= 1, got {area_range}")
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f"bad aspect_ratio_range {aspect_ratio_range}")
        self.area_range = (float(area_range[0]), float(area_range[1]))
        self.aspect_ratio_range = (float(aspect_ratio_range[0]), float(aspect_ratio_range[1]))
        self.max_attempts = int(max_attempts)

    def crop_box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Draw a crop box ``(x0, y0, x1, y1)`` for a canvas ``shape`` = (H, W)."""
        h, w = shape
        rng = self.rng
        # a fixed number of draws per call, so the stream does not depend on the outcome
        lo, hi = np.log(self.aspect_ratio_range)
        ratios = np.exp(rng.uniform(lo, hi, size=self.max_attempts))
        areas = rng.uniform(*self.area_range, size=self.max_attempts) * (h * w)
        u = rng.random(2)
        cw = np.round(np.sqrt(areas * ratios)).astype(np.int64)
        ch = np.round(np.sqrt(areas / ratios)).astype(np.int64)
        fits = np.nonzero((cw <= w) & (ch <= h) & (cw > 0) & (ch > 0))[0]
        if fits.size:
            i = int(fits[0])
            crop_w, crop_h = int(cw[i]), int(ch[i])
            x0 = int(u[0] * (w - crop_w + 1))
            y0 = int(u[1] * (h - crop_h + 1))
        else:
            crop_w = crop_h = min(h, w)
            x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
        return x0, y0, x0 + crop_w, y0 + crop_h

    def __call__(self, record: ClipRecord) -> ClipRecord:
        box = self.crop_box(_canvas(record))
        return _crop(record, box, {"crop_box": box})

    def __repr__(self) -> str:
        return (
            f"RandomResizedCrop(area_range={self.area_range}, "
            f"aspect_ratio_range={self.aspect_ratio_range})"
        )


class CenterCrop:
    """Crop the centre ``size`` = (H, W) (an int: square) of the canvas (pyskl ``CenterCrop``):
    origin ``((W - w) // 2, (H - h) // 2)``; a crop larger than the canvas pads it."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = _pair(size)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        h, w = _canvas(record)
        ch, cw = self.size
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        box = (x0, y0, x0 + cw, y0 + ch)
        return _crop(record, box, {"crop_box": box})

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class Flip(RandomFlip):
    """Always mirror (deterministic ``RandomFlip(p=1)``; used for test-time flipped views)."""

    def __init__(self) -> None:
        super().__init__(p=1.0, seed=0)

    def __repr__(self) -> str:
        return "Flip()"


class SelectPersons:
    """Keep at most ``num_persons`` persons: those with the largest summed score, in their
    original order (as ``FormatGCNInput``). (M, T, V, ·) -> (min(M, num_persons), T, V, ·)."""

    def __init__(self, num_persons: int = 1) -> None:
        if num_persons <= 0:
            raise ValueError(f"num_persons must be positive, got {num_persons}")
        self.num_persons = int(num_persons)

    def __call__(self, record: ClipRecord) -> ClipRecord:
        keep = _top_persons(np.asarray(record.keypoint_score), self.num_persons)
        return replace_record(
            record, keypoint=record.keypoint[keep], keypoint_score=record.keypoint_score[keep]
        )

    def __repr__(self) -> str:
        return f"SelectPersons(num_persons={self.num_persons})"


class FormatHeatmapKeypoints:
    """Terminal step for device rendering: record -> float32 (M, T, V, 3) = (x, y, score) in
    canvas pixels (the canvas is ``record.img_shape``, fixed by the pipeline's last resize).

    Persons are cropped to ``num_persons`` (largest summed score, original order) or padded with
    zero (missing) persons. Render with ``heatmaps.HeatmapRenderer(...)(points, (H, W))``.
    """

    def __init__(self, num_persons: int = 1) -> None:
        if num_persons <= 0:
            raise ValueError(f"num_persons must be positive, got {num_persons}")
        self.num_persons = int(num_persons)

    def __call__(self, record: ClipRecord) -> np.ndarray:
        sc = np.asarray(record.keypoint_score, np.float32)
        keep = _top_persons(sc, self.num_persons)
        x = np.concatenate([record.keypoint[keep], sc[keep][..., None]], axis=-1)
        x = np.where(sc[keep][..., None] > 0, x, 0.0).astype(np.float32)
        if x.shape[0] < self.num_persons:
            pad = np.zeros((self.num_persons - x.shape[0], *x.shape[1:]), np.float32)
            x = np.concatenate([x, pad], axis=0)
        return np.ascontiguousarray(x)

    def __repr__(self) -> str:
        return f"FormatHeatmapKeypoints(num_persons={self.num_persons})"


# --------------------------------------------------------------------------------------------
# test-time views
# --------------------------------------------------------------------------------------------
class MultiView:
    """Test-time augmentation: K views of one clip stacked on a new leading axis.

    ``num_clips`` temporal samplings of ``num_frames`` frames each (``uniform_frame_indices``):
    clip 0 takes the segment centres (the single-view eval sampling), clip ``i > 0`` a random
    frame per segment from the fixed generator ``np.random.default_rng([seed, i])``, so the views
    are deterministic. As in pyskl, the frames of all clips go through ``geometry`` together
    (one ``PoseCompact`` box over all sampled frames), then each clip is finished by ``finish``
    (render or format), and with ``flip=True`` also mirrored (``Flip``) and finished again.

    Order: ``[clip0, clip0_flipped, clip1, clip1_flipped, ...]`` (K = num_clips * (1 + flip)).
    Output: ``np.stack`` of the finished views, e.g. (K, C, T, H, W) heatmaps or
    (K, M, T, V, 3) keypoints. ``meta["frame_inds"]`` of each view is its clip's indices.
    """

    def __init__(
        self,
        num_frames: int,
        geometry: Sequence[Callable[[ClipRecord], ClipRecord]],
        finish: Callable[[ClipRecord], np.ndarray],
        num_clips: int = 10,
        flip: bool = True,
        seed: int = 1234,
    ) -> None:
        if num_frames <= 0 or num_clips <= 0:
            raise ValueError(f"need num_frames, num_clips > 0, got {num_frames}, {num_clips}")
        self.num_frames, self.num_clips = int(num_frames), int(num_clips)
        self.geometry = Compose(list(geometry))
        self.finish = finish
        self.flip, self.seed = bool(flip), int(seed)
        self._flip = Flip()

    def clip_indices(self, total: int) -> np.ndarray:
        """(num_clips, num_frames) frame indices of the views (deterministic)."""
        rows = [uniform_frame_indices(total, self.num_frames)]
        for i in range(1, self.num_clips):
            rng = np.random.default_rng([self.seed, i])
            rows.append(uniform_frame_indices(total, self.num_frames, rng))
        return np.stack(rows)

    def __call__(self, record: ClipRecord) -> np.ndarray:
        if record.num_frames == 0:
            raise ValueError(f"clip {record.name}: has zero frames, cannot sample")
        inds = self.clip_indices(record.num_frames)  # (K, F)
        prev = record.meta.get("frame_inds")
        frame_inds = np.asarray(prev)[inds] if prev is not None else inds
        flat = inds.reshape(-1)
        sampled = replace_record(
            record,
            {"frame_inds": frame_inds.reshape(-1)},
            keypoint=record.keypoint[:, flat],
            keypoint_score=record.keypoint_score[:, flat],
        )
        canvas = self.geometry(sampled)
        views = []
        f = self.num_frames
        for i in range(self.num_clips):
            clip = replace_record(
                canvas,
                {"frame_inds": frame_inds[i]},
                keypoint=canvas.keypoint[:, i * f : (i + 1) * f],
                keypoint_score=canvas.keypoint_score[:, i * f : (i + 1) * f],
            )
            views.append(self.finish(clip))
            if self.flip:
                views.append(self.finish(self._flip(clip)))
        return np.stack(views)

    def __repr__(self) -> str:
        return (
            f"MultiView(num_frames={self.num_frames}, num_clips={self.num_clips}, "
            f"flip={self.flip}, geometry={self.geometry.transforms}, finish={self.finish!r})"
        )


# --------------------------------------------------------------------------------------------
# pipeline
# --------------------------------------------------------------------------------------------
def build_heatmap_pipeline(
    layout: str | JointLayout,
    num_frames: int = 48,
    stream: str = "joint",
    train: bool = False,
    *,
    size_train: int = 56,
    size_eval: int = 64,
    sigma: float = 0.6,
    interpolate: Mapping[str, Any] | bool = False,
    render: str = "cpu",
    num_clips: int = 1,
    flip_test: bool = False,
    flip_p: float = 0.5,
    area_range: tuple[float, float] = (0.56, 1.0),
    num_persons: int = 1,
    allow_all_missing: bool = True,
    seed: int | None = None,
) -> Compose:
    """The PoseC3D input pipeline (see the module docstring for the step order).

    Args:
        layout: joint layout of the heatmap channels (``imigue22``, ``body_face41``, ...).
        num_frames: frames sampled uniformly over the whole clip (48 in PoseC3D).
        stream: ``"joint"`` (C = V channels) or ``"limb"`` (C = len(layout.limbs)).
        train: random sampling, crop and flip (canvas ``size_train``) vs deterministic eval
            (canvas ``size_eval``).
        size_train, size_eval: square canvas sides; ``size_eval`` is also the short side of the
            resize before the training crop (pyskl ``Resize(scale=(-1, 64))``).
        sigma: Gaussian standard deviation in canvas pixels (CPU rendering).
        interpolate: False, True or ``InterpolateMissing`` kwargs (NaN keypoints then become
            missing instead of raising; see ``transforms.temporal_steps``).
        render: ``"cpu"`` -> ``GeneratePoseTarget`` heatmaps (C, T, H, W); ``"device"`` ->
            ``FormatHeatmapKeypoints`` (M, T, V, 3) canvas points for ``HeatmapRenderer``.
        num_clips, flip_test: eval only; with ``num_clips > 1`` or ``flip_test`` the output is
            ``MultiView``'s stack with a leading K = num_clips * (1 + flip_test) axis.
        flip_p: training flip probability. area_range: training crop area fraction.
        num_persons: persons kept (largest summed score); device keypoints are padded to it.
        allow_all_missing: see ``ValidateClip`` (an all-missing clip gives zero heatmaps).
        seed: fixes the training random streams (leave None for DataLoader training).

    Returns:
        A ``Compose``: ClipRecord -> float32 (C, T, H, W) | (M, T, V, 3), or with multi-view
        (K, C, T, H, W) | (K, M, T, V, 3).
    """
    lay = as_layout(layout)
    if stream not in ("joint", "limb"):
        raise ValueError(f"stream must be 'joint' or 'limb', got {stream!r}")
    if render not in ("cpu", "device"):
        raise ValueError(f"render must be 'cpu' or 'device', got {render!r}")
    if num_clips <= 0:
        raise ValueError(f"num_clips must be positive, got {num_clips}")
    if render == "cpu":
        from migalab.data.skeleton.heatmaps import GeneratePoseTarget

        limbs = lay.limbs if stream == "limb" else None
        last: Callable[[ClipRecord], Any] = GeneratePoseTarget(stream, limbs, sigma=sigma)
    else:
        last = FormatHeatmapKeypoints(num_persons)
    keep = SelectPersons(num_persons)
    steps: list[Callable[[Any], Any]] = list(temporal_steps(lay, interpolate, allow_all_missing))
    compact = PoseCompact(hw_ratio=1.0, allow_imgpad=True)
    if train:
        seeds: list[SeedLike] = (
            [None, None, None] if seed is None else list(np.random.SeedSequence(seed).spawn(3))
        )
        steps += [
            UniformSample(num_frames, test_mode=False, seed=seeds[0]),
            compact,
            Resize(size_eval, keep_ratio=True),
            RandomResizedCrop(area_range=area_range, seed=seeds[1]),
            Resize((size_train, size_train), keep_ratio=False),
            RandomFlip(p=flip_p, seed=seeds[2]),
            keep,
            last,
        ]
        return Compose(steps)
    geometry = [compact, Resize((size_eval, size_eval), keep_ratio=False)]
    if num_clips > 1 or flip_test:
        steps.append(
            MultiView(num_frames, geometry, Compose([keep, last]), num_clips, flip=flip_test)
        )
    else:
        steps += [UniformSample(num_frames, test_mode=True), *geometry, keep, last]
    return Compose(steps)
