"""RGB clip transforms: person box from the skeleton, crop + resize, normalisation.

The RGB stream sees the same person the skeleton stream sees: ``person_box`` derives ONE box for
the whole clip from the clip's keypoints (so the crop does not jitter from frame to frame),
``scale_box`` maps it to the resolution the video is stored at, and ``VideoClipTransform`` crops,
resizes, optionally mirrors and normalises the decoded frames into the (C, T, H, W) float32 layout
video backbones (MViT, X3D, R(2+1)D) consume. With ``normalize=False`` it stops before the
normalisation and returns uint8; :func:`normalize_clips` then finishes a whole batch on the
training device (``data.video.normalize: device``, the default): a quarter of the bytes through
the loader workers' shared memory, the pinning and the host-to-device copy, same values.

Box convention
--------------
A box is a float64 array ``(x0, y0, x1, y1)`` of pixel *edges*: pixel column ``i`` spans
``[i, i + 1)``, so the whole frame of an (H, W) image is ``(0, 0, W, H)`` and mirroring is
``x -> W - x``. Keypoints use pixel *centres* (the skeleton transforms mirror ``x -> W - 1 - x``),
so a keypoint at ``x`` sits at edge coordinate ``x + 0.5``; ``person_box`` applies that shift.
A box may extend beyond the frame; ``crop_resize`` pads the outside with zeros (black).
``crop_resize`` rounds box edges to whole pixels.

Randomness
----------
``VideoClipTransform`` derives from ``migalab.data.transforms_base.RandomTransform`` and follows
its seed semantics (``seed=None`` for training: a stream re-seeded from ``torch.initial_seed()``
per DataLoader worker and epoch; a fixed seed only for tests). The flip is NOT drawn here: the
caller passes ``flip=`` so the RGB clip is mirrored exactly when the skeleton is
(``record.meta["flipped"]``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from migalab.data.transforms_base import RandomTransform, SeedLike

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "VideoClipTransform",
    "crop_resize",
    "denormalize",
    "normalize_clips",
    "person_box",
    "scale_box",
]

#: Per-channel RGB mean / std of torchvision's Kinetics video-classification preset (0..1 scale).
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)

Frames = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------------------------
# boxes
# --------------------------------------------------------------------------------------------
def person_box(
    keypoint: np.ndarray,
    score: np.ndarray,
    img_shape: Sequence[int],
    margin: float = 0.15,
    square: bool = True,
    quantile: float = 0.02,
    min_size: float = 0.2,
) -> np.ndarray:
    """The person box of a whole clip, in keypoint-frame pixel edges (see module docstring).

    1. The robust extent of all valid (score > 0) keypoints of all persons and frames: the
       ``quantile`` and ``1 - quantile`` quantiles of x and of y (so a few glitched keypoints
       far from the body are ignored; ``quantile=0`` gives the exact min / max), shifted by +0.5
       from pixel centres to pixel edges.
    2. Expanded by ``margin`` x its width on the left and on the right and ``margin`` x its height
       at the top and at the bottom.
    3. If ``square``: a square of side ``max(w, h)`` around the same centre.
    4. Each side at least ``min_size * min(H, W)`` (grown around the centre).

    The box may extend beyond the frame (``crop_resize`` pads). iMiGUE keypoints cover the upper
    body; pass only the joints that should define the box (e.g. without face / hand joints) if
    needed. If no keypoint is valid, the largest centred square of the frame is returned.

    Args:
        keypoint: (M, T, V, 2) pixel coordinates (x, y).
        score: (M, T, V) confidences; 0 means missing.
        img_shape: (H, W) of the keypoint frame.
        margin: relative expansion on each side.
        square: make the box square.
        quantile: robust-extent quantile in [0, 0.5).
        min_size: minimum side as a fraction of ``min(H, W)``.

    Returns:
        (4,) float64 ``(x0, y0, x1, y1)``.
    """
    kp = np.asarray(keypoint)
    sc = np.asarray(score)
    if kp.ndim != 4 or kp.shape[-1] != 2 or sc.shape != kp.shape[:3]:
        raise ValueError(
            f"person_box: need keypoint (M,T,V,2) + score (M,T,V), got {kp.shape}, {sc.shape}"
        )
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"person_box: quantile must be in [0, 0.5), got {quantile}")
    h_img, w_img = (float(v) for v in img_shape[:2])
    valid = sc > 0
    pts = kp[valid].astype(np.float64)  # (N, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if pts.shape[0] == 0:
        side = min(h_img, w_img)
        x0, y0 = (w_img - side) / 2.0, (h_img - side) / 2.0
        return np.array([x0, y0, x0 + side, y0 + side], dtype=np.float64)

    lo, hi = np.quantile(pts, [quantile, 1.0 - quantile], axis=0) + 0.5  # (2,) each: (x, y)
    size = hi - lo
    lo, hi = lo - margin * size, hi + margin * size
    centre = (lo + hi) / 2.0
    size = hi - lo
    if square:
        size = np.full(2, size.max())
    size = np.maximum(size, min_size * min(h_img, w_img))
    lo, hi = centre - size / 2.0, centre + size / 2.0
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)


def scale_box(box: np.ndarray, from_shape: Sequence[int], to_shape: Sequence[int]) -> np.ndarray:
    """Map a box from an (H, W) frame to the same region of an (H', W') frame.

    E.g. a box computed on 1280x720 keypoints for a video stored at 320x180. Because boxes use
    pixel edges, the whole frame ``(0, 0, W, H)`` maps to ``(0, 0, W', H')`` exactly.

    Args:
        box: (4,) ``(x0, y0, x1, y1)``.
        from_shape: (H, W) the box refers to.
        to_shape: (H', W') of the target frame.

    Returns:
        (4,) float64 box.
    """
    fh, fw = (float(v) for v in from_shape[:2])
    th, tw = (float(v) for v in to_shape[:2])
    sx, sy = tw / fw, th / fh
    return np.asarray(box, dtype=np.float64) * np.array([sx, sy, sx, sy])


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int | np.integer):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _check_frames(frames: Frames) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got shape {tuple(frames.shape)}")
    if frames.dtype not in (np.uint8, torch.uint8):
        raise ValueError(f"frames must be uint8, got {frames.dtype}")


# --------------------------------------------------------------------------------------------
# crop + resize
# --------------------------------------------------------------------------------------------
def crop_resize(
    frames: Frames, box: np.ndarray | Sequence[float], size: int | Sequence[int]
) -> torch.Tensor:
    """Crop ``box`` out of every frame and resize it (bilinear, antialiased) to ``size``.

    Box edges are rounded to whole pixels. Only the in-frame part of the box is read (a view of
    ``frames``, never a copy of the full frame); it is resized straight to its share of the output
    and pasted into a zero canvas, so the region of the box outside the frame comes out black.
    The resize runs on uint8 (torch's native uint8 antialiased bilinear kernel on AVX2 CPUs).

    Args:
        frames: (T, H, W, 3) uint8, NumPy or torch (RGB).
        box: (4,) ``(x0, y0, x1, y1)`` in pixel edges of ``frames``; may leave the frame.
        size: output side, or (h, w).

    Returns:
        (T, 3, h, w) uint8 contiguous torch tensor (never a view of ``frames``).
    """
    _check_frames(frames)
    out_h, out_w = _pair(size)
    t, h_img, w_img = (int(v) for v in frames.shape[:3])
    x0, y0, x1, y1 = (int(np.floor(float(v) + 0.5)) for v in box)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    bw, bh = x1 - x0, y1 - y0
    ax0, ax1 = min(max(x0, 0), w_img), min(max(x1, 0), w_img)
    ay0, ay1 = min(max(y0, 0), h_img), min(max(y1, 0), h_img)
    # output sub-rectangle the in-frame part maps to
    ox0, ox1 = round((ax0 - x0) * out_w / bw), round((ax1 - x0) * out_w / bw)
    oy0, oy1 = round((ay0 - y0) * out_h / bh), round((ay1 - y0) * out_h / bh)
    if ox1 <= ox0 or oy1 <= oy0 or ax1 <= ax0 or ay1 <= ay0:
        return torch.zeros((t, 3, out_h, out_w), dtype=torch.uint8)

    crop = frames[:, ay0:ay1, ax0:ax1]
    if isinstance(crop, np.ndarray):
        if not crop.flags.writeable:  # torch.from_numpy warns on read-only arrays
            crop = np.array(crop)
        crop = torch.from_numpy(crop)
    crop = crop.permute(0, 3, 1, 2)  # (T, 3, h, w) view with channels-last strides
    res = TF.resize(crop, [oy1 - oy0, ox1 - ox0], antialias=True)
    if (ox0, oy0, ox1, oy1) == (0, 0, out_w, out_h):
        if res.data_ptr() == crop.data_ptr():  # resize returns its input when sizes match
            return res.clone(memory_format=torch.contiguous_format)
        return res.contiguous()
    out = torch.zeros((t, 3, out_h, out_w), dtype=torch.uint8)
    out[:, :, oy0:oy1, ox0:ox1] = res
    return out


# --------------------------------------------------------------------------------------------
# clip transform
# --------------------------------------------------------------------------------------------
class VideoClipTransform(RandomTransform):
    """Frames (T, H, W, 3) uint8 -> normalised float32 (3, T, size, size).

    * eval (``train=False``): the whole ``box`` is cropped and resized to ``size`` x ``size``.
    * train: a random-resized crop INSIDE the box (area fraction ``area_range`` of the box,
      aspect ratio log-uniform in ``ratio_range``, uniform position; torchvision's
      ``RandomResizedCrop`` rule with 10 tries and a centre-crop fallback), drawn once per clip so
      it is temporally consistent. It is computed as a sub-box, so every frame is cropped and
      resized only once.
    * ``box=None`` uses the whole frame (for frames that are already person crops).
    * ``flip=True`` mirrors horizontally (after cropping, equivalent to cropping the mirrored box
      from the mirrored frame); the caller decides, so RGB flips exactly when the skeleton does.
    * values are scaled to 0..1 and normalised with ``mean`` / ``std`` (Kinetics by default).

    Args:
        size: output side.
        train: random crop inside the box.
        area_range: (min, max) fraction of the box area kept by the train crop.
        ratio_range: (min, max) width / height of the train crop (before resizing to square).
        mean: per-channel RGB mean on the 0..1 scale.
        std: per-channel RGB standard deviation on the 0..1 scale.
        seed: see ``RandomTransform`` (``None`` for training).
        normalize: False: return the cropped, resized (mirrored) clip as (3, T, size, size)
            uint8, for :func:`normalize_clips` on the training device.
    """

    def __init__(
        self,
        size: int = 224,
        train: bool = False,
        area_range: Sequence[float] = (0.4, 1.0),
        ratio_range: Sequence[float] = (3 / 4, 4 / 3),
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        seed: SeedLike = None,
        normalize: bool = True,
    ) -> None:
        super().__init__(seed)
        self.normalize = bool(normalize)
        a_lo, a_hi = (float(v) for v in area_range)
        r_lo, r_hi = (float(v) for v in ratio_range)
        if not 0.0 < a_lo <= a_hi <= 1.0:
            raise ValueError(f"area_range must satisfy 0 < min <= max <= 1, got {area_range}")
        if not 0.0 < r_lo <= r_hi:
            raise ValueError(f"ratio_range must satisfy 0 < min <= max, got {ratio_range}")
        self.size = int(size)
        self.train = bool(train)
        self.area_range = (a_lo, a_hi)
        self.ratio_range = (r_lo, r_hi)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._scale, self._shift = _scale_shift(self.mean, self.std)

    def sample_crop(self, box: np.ndarray) -> np.ndarray:
        """Draw the train crop: a (4,) float64 sub-box of ``box`` (one draw per clip)."""
        x0, y0, x1, y1 = (float(v) for v in box)
        bw, bh = x1 - x0, y1 - y0
        area = bw * bh
        rng = self.rng
        log_r = (np.log(self.ratio_range[0]), np.log(self.ratio_range[1]))
        for _ in range(10):
            a = area * rng.uniform(*self.area_range)
            r = float(np.exp(rng.uniform(*log_r)))
            w, h = np.sqrt(a * r), np.sqrt(a / r)
            if 0 < w <= bw and 0 < h <= bh:
                cx0 = x0 + rng.uniform(0.0, bw - w)
                cy0 = y0 + rng.uniform(0.0, bh - h)
                return np.array([cx0, cy0, cx0 + w, cy0 + h], dtype=np.float64)
        # fallback (as torchvision): the largest centred crop with a clamped ratio
        r = bw / bh
        if r < self.ratio_range[0]:
            w, h = bw, bw / self.ratio_range[0]
        elif r > self.ratio_range[1]:
            w, h = bh * self.ratio_range[1], bh
        else:
            w, h = bw, bh
        cx0, cy0 = x0 + (bw - w) / 2.0, y0 + (bh - h) / 2.0
        return np.array([cx0, cy0, cx0 + w, cy0 + h], dtype=np.float64)

    def __call__(
        self, frames: Frames, box: np.ndarray | None = None, flip: bool = False
    ) -> torch.Tensor:
        """Transform one clip.

        Args:
            frames: (T, H, W, 3) uint8 RGB, NumPy or torch.
            box: (4,) person box in pixel edges of ``frames`` (``scale_box`` it first if the
                keypoints refer to another resolution); ``None`` = the whole frame.
            flip: mirror horizontally.

        Returns:
            (3, T, size, size) float32 contiguous, normalised (uint8, not normalised, with
            ``normalize=False``).
        """
        _check_frames(frames)
        t, h_img, w_img = (int(v) for v in frames.shape[:3])
        if box is None:
            box = np.array([0.0, 0.0, w_img, h_img])
        box = np.asarray(box, dtype=np.float64)
        if box.shape != (4,) or not np.isfinite(box).all():
            raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box}")
        if self.train:
            box = self.sample_crop(box)
        x = crop_resize(frames, box, self.size)  # (T, 3, S, S) uint8
        if flip:
            x = x.flip(-1)
        if not self.normalize:
            return x.permute(1, 0, 2, 3).contiguous()
        out = torch.empty((3, t, self.size, self.size), dtype=torch.float32)
        out.copy_(x.permute(1, 0, 2, 3))
        return out.mul_(self._scale).add_(self._shift)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, train={self.train}, "
            f"area_range={self.area_range}, ratio_range={self.ratio_range})"
        )


def _scale_shift(mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, 1, 1, 1) float32 ``scale`` and ``shift`` with ``(x / 255 - mean) / std == x * scale +
    shift``: the one formula of the loader-side and the device-side normalisation (built once
    per statistics; callers must not modify them in place)."""
    return _scale_shift_cached(tuple(float(v) for v in mean), tuple(float(v) for v in std))


@functools.lru_cache(maxsize=8)
def _scale_shift_cached(
    mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


def normalize_clips(
    x: torch.Tensor,
    present: torch.Tensor | None = None,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> torch.Tensor:
    """Normalise a batch of uint8 clips where it lies (the training device): the same float32
    values, bit for bit, as ``VideoClipTransform(normalize=True)`` gives each clip in a worker.

    Args:
        x: (..., 3, T, S, S) uint8 (e.g. (N, 3, T, S, S) from ``normalize=False`` clips).
        present: optional (N,) bool; clips marked absent (no video) become zeros, as the
            loader-side pipeline writes them.
        mean: per-channel RGB mean on the 0..1 scale.
        std: per-channel RGB standard deviation on the 0..1 scale.

    Returns:
        float32 of ``x``'s shape, on ``x``'s device.
    """
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize_clips takes uint8 clips, got {x.dtype}")
    if x.dim() < 4 or x.shape[-4] != 3:
        raise ValueError(f"clips must be (..., 3, T, S, S), got {tuple(x.shape)}")
    scale, shift = (t.to(x.device) for t in _scale_shift(mean, std))
    out = x.to(torch.float32).mul_(scale).add_(shift)
    if present is not None:
        out[~present.to(device=x.device, dtype=torch.bool)] = 0.0
    return out


def denormalize(
    x: torch.Tensor,
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
) -> np.ndarray:
    """Undo ``VideoClipTransform``'s normalisation, for visual debugging and tests.

    Args:
        x: (3, T, H, W) float normalised clip.
        mean: the per-channel mean it was normalised with.
        std: the per-channel standard deviation it was normalised with.

    Returns:
        (T, H, W, 3) uint8 NumPy array (RGB).
    """
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"denormalize expects (3, T, H, W), got {tuple(x.shape)}")
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1, 1)
    y = (x.detach().float().cpu() * s + m).mul_(255.0).round_().clamp_(0, 255)
    return y.to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
