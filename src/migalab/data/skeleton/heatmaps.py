"""PoseC3D-style pseudo-heatmap volumes from 2D keypoints (pyskl ``GeneratePoseTarget``).

A clip's keypoints become a stack of Gaussian maps, one channel per joint (``stream="joint"``) or
per limb segment (``stream="limb"``), shape (C, T, H, W), float32, values in [0, 1]. The values
follow pyskl exactly:

* joint ``v`` in frame ``t``: ``max_m score * exp(-((x - mx)^2 + (y - my)^2) / (2 sigma^2))``,
  restricted to pyskl's 3-sigma window ``x in [max(int(mx - 3 sigma), 0),
  min(int(mx + 3 sigma) + 1, W))`` (same for y; ``int`` truncates toward zero); keypoints with
  ``score < eps`` (``SCORE_EPS`` = 1e-3, pyskl's ``EPS``) or an empty window add nothing.
* limb ``(a, b)``: value ``min(score_a, score_b)`` (skipped below ``eps``) times the Gaussian of the
  squared distance to the segment ``ab``, inside the bounding box of both ends +- 3 sigma; a limb
  shorter than one pixel (``|ab|^2 < 1``) is the joint map of end ``a`` with value ``score_a``.

Missing joints (score 0, or NaN / inf coordinates or scores) give nothing. Pixel ``i`` has its
centre at coordinate ``i`` (x right, y down).

Implementations (same values, tested against each other):

* ``joint_heatmaps`` / ``limb_heatmaps``: vectorised NumPy for the CPU loader. The pixels of all
  windows of a person are enumerated at once as one ragged list (``np.repeat``; no padding, so the
  work equals pyskl's), evaluated with pyskl's float32 arithmetic and scattered into a zero volume
  with flat fancy indexing; only persons (M is 1-2) are looped. A zero-filled volume plus ~20-80 k
  scattered pixels is far cheaper than writing dense maps (the separable dense outer product is
  ~3x slower on CPU for 48x17x56x56).
* ``joint_heatmaps_torch`` / ``limb_heatmaps_torch``: dense batched torch (any leading batch dims)
  for rendering on the training device (static shapes, no host syncs); joints use the separable
  ``exp(x) * exp(y)`` outer product, limbs a dense per-pixel segment distance; both chunked to
  bound temporaries. On CPU prefer the NumPy functions (dense work, and a fresh batch volume costs
  a page fault per 4 KB).
* ``*_reference``: plain per-person, per-frame, per-joint loops written like pyskl; ground truth
  for the tests and the benchmark baseline.

``GeneratePoseTarget`` is the terminal CPU transform (record -> (C, T, H, W) array) and
``HeatmapRenderer`` the ``nn.Module`` that renders (x, y, score) points on the GPU so that the
loader only ships keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import get_layout

__all__ = [
    "HEATMAP_STREAMS",
    "GeneratePoseTarget",
    "HeatmapRenderer",
    "heatmap_channels",
    "joint_heatmaps",
    "joint_heatmaps_reference",
    "joint_heatmaps_torch",
    "limb_heatmaps",
    "limb_heatmaps_reference",
    "limb_heatmaps_torch",
]

HEATMAP_STREAMS = ("joint", "limb")
#: keypoints (and limbs, by their weaker end) scoring below this draw nothing: pyskl's ``EPS``
#: (``heatmap_related.py``), so low-confidence points give pyskl's inputs exactly
SCORE_EPS = 1e-3

#: Largest number of float32 elements one torch temporary may hold: ~256 MB on accelerators;
#: 16 MB on CPU, where smaller temporaries stay in cache and reuse malloc'd memory (fresh large
#: allocations cost a page fault per 4 KB).
_CHUNK_ELEMENTS = 64 * 1024 * 1024
_CHUNK_ELEMENTS_CPU = 4 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_stream(stream: str) -> None:
    if stream not in HEATMAP_STREAMS:
        raise ValueError(f"stream must be one of {HEATMAP_STREAMS}, got {stream!r}")


def _limb_pairs(limbs: Sequence[tuple[int, int]], num_joints: int) -> np.ndarray:
    """(L, 2) int64 array of limb end indices, checked against ``num_joints``."""
    pairs = np.asarray(list(limbs), dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= num_joints):
        raise ValueError(f"limb indices must lie in [0, {num_joints}), got {pairs.tolist()}")
    return pairs


def _prepare_numpy(keypoint: np.ndarray, score: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """float32 keypoints (M, T, V, 2) and scores (M, T, V), non-finite entries made missing."""
    kp = np.asarray(keypoint, dtype=np.float32)
    if kp.ndim != 4 or kp.shape[-1] != 2:
        raise ValueError(f"keypoint must be (M, T, V, 2), got {kp.shape}")
    if score is None:
        sc = np.ones(kp.shape[:3], np.float32)
    else:
        sc = np.asarray(score, dtype=np.float32)
        if sc.shape != kp.shape[:3]:
            raise ValueError(f"score {sc.shape} does not match keypoint {kp.shape}")
    ok = np.isfinite(kp).all(axis=-1) & np.isfinite(sc)
    if not ok.all():
        kp = np.where(ok[..., None], kp, np.float32(0))
        sc = np.where(ok, sc, np.float32(0))
    return kp, sc


def _window(
    lo: np.ndarray, hi: np.ndarray, sigma: float, extent: int
) -> tuple[np.ndarray, np.ndarray]:
    """pyskl's clipped 3-sigma window ``[max(int(lo - 3s), 0), min(int(hi + 3s) + 1, extent))``.

    Computed in float64 like Python's ``int(float)``; returns int64 (start, stop), stop >= start.
    """
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    start = np.clip(np.trunc(lo64 - 3 * sigma), 0, extent).astype(np.int64)
    stop = np.clip(np.trunc(hi64 + 3 * sigma) + 1, 0, extent).astype(np.int64)
    return start, np.maximum(stop, start)


def _scatter(flat: np.ndarray, index: np.ndarray, values: np.ndarray, first: bool) -> None:
    """``flat[index] = max(flat[index], values)`` (plain assignment into a still-zero volume).

    ``index`` must hold no duplicates: windows of different (channel, frame) maps are disjoint and
    the pixels of one window are distinct, so this holds for one person at a time.
    """
    flat[index] = values if first else np.maximum(flat[index], values)


def _ragged_pixels(
    x0: np.ndarray, y0: np.ndarray, nx: np.ndarray, ny: np.ndarray, offset: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enumerate the pixels of K windows (no padding), window by window, row-major.

    Shapes: window origins ``x0, y0``, sizes ``nx, ny`` and flat offsets of their maps ``offset``,
    all (K,) int -> ``(index, x, y, area)``: flat volume index ``offset + y * width + x``, pixel
    coordinates (P,) with P = sum(nx * ny), and the pixel count (K,) of each window. A per-window
    array ``q`` is expanded to pixels with ``np.repeat(q, area)`` (much faster than ``q[owner]``).
    """
    row_nx = np.repeat(nx, ny)  # one entry per window row
    row_start = np.cumsum(ny) - ny
    row_y = np.repeat(y0 - row_start, ny) + np.arange(row_nx.size)
    row_off = np.repeat(offset + x0, ny) + row_y * width
    pix_start = np.cumsum(row_nx) - row_nx
    jx = np.arange(int(row_nx.sum())) - np.repeat(pix_start, row_nx)  # column inside the window
    area = nx * ny
    return np.repeat(row_off, row_nx) + jx, np.repeat(x0, area) + jx, np.repeat(row_y, row_nx), area


# --------------------------------------------------------------------------------------------
# vectorised NumPy
# --------------------------------------------------------------------------------------------
def joint_heatmaps(
    keypoint: np.ndarray,
    score: np.ndarray | None,
    size: tuple[int, int],
    sigma: float = 0.6,
    eps: float = SCORE_EPS,
) -> np.ndarray:
    """Per-joint pseudo-heatmaps of one clip (vectorised; see the module docstring for values).

    Args:
        keypoint: (M, T, V, 2) pixel coordinates on the canvas (x right, y down).
        score: (M, T, V) confidences, or None for all ones. 0 (or NaN coordinates) = missing.
        size: canvas (H, W).
        sigma: Gaussian standard deviation in pixels.
        eps: keypoints with a lower score are skipped.

    Returns:
        float32 (V, T, H, W), the max over persons.
    """
    kp, sc = _prepare_numpy(keypoint, score)
    h, w = int(size[0]), int(size[1])
    m, t, v = sc.shape
    vol = np.zeros((v, t, h, w), np.float32)
    if vol.size == 0:
        return vol
    flat = vol.reshape(-1)
    base = (np.arange(v)[:, None] * t + np.arange(t)) * (h * w)  # (V, T) map offsets
    first = True
    for p in range(m):
        k = kp[p].transpose(1, 0, 2)  # (V, T, 2)
        s = sc[p].T  # (V, T)
        x0, x1 = _window(k[..., 0], k[..., 0], sigma, w)
        y0, y1 = _window(k[..., 1], k[..., 1], sigma, h)
        nx, ny = x1 - x0, y1 - y0
        keep = (s >= eps) & (nx > 0) & (ny > 0)
        if not keep.any():
            continue
        sel = keep.reshape(-1)  # drawn windows, flat over (V, T)
        index, xi, yi, area = _ragged_pixels(
            x0.reshape(-1)[sel],
            y0.reshape(-1)[sel],
            nx.reshape(-1)[sel],
            ny.reshape(-1)[sel],
            base.reshape(-1)[sel],
            w,
        )
        dx = xi.astype(np.float32) - np.repeat(k[..., 0].reshape(-1)[sel], area)
        dy = yi.astype(np.float32) - np.repeat(k[..., 1].reshape(-1)[sel], area)
        patch = np.exp(-(dx**2 + dy**2) / np.float32(2) / np.float32(sigma**2))
        patch *= np.repeat(s.reshape(-1)[sel], area)
        _scatter(flat, index, patch, first)
        first = False
    return vol


def limb_heatmaps(
    keypoint: np.ndarray,
    score: np.ndarray | None,
    limbs: Sequence[tuple[int, int]],
    size: tuple[int, int],
    sigma: float = 0.6,
    eps: float = SCORE_EPS,
) -> np.ndarray:
    """Per-limb pseudo-heatmaps of one clip (vectorised; pyskl ``generate_a_limb_heatmap``).

    Args:
        keypoint: (M, T, V, 2) pixel coordinates on the canvas.
        score: (M, T, V) confidences, or None for all ones.
        limbs: L pairs ``(a, b)`` of joint indices.
        size: canvas (H, W).
        sigma, eps: as in :func:`joint_heatmaps`.

    Returns:
        float32 (L, T, H, W), the max over persons.
    """
    kp, sc = _prepare_numpy(keypoint, score)
    h, w = int(size[0]), int(size[1])
    m, t, v = sc.shape
    pairs = _limb_pairs(limbs, v)
    n = len(pairs)
    vol = np.zeros((n, t, h, w), np.float32)
    if vol.size == 0:
        return vol
    flat = vol.reshape(-1)
    base = (np.arange(n)[:, None] * t + np.arange(t)) * (h * w)  # (L, T) map offsets
    c = np.float32(2 * sigma**2)
    first = True
    for p in range(m):
        a = kp[p][:, pairs[:, 0]].transpose(1, 0, 2)  # (L, T, 2)
        b = kp[p][:, pairs[:, 1]].transpose(1, 0, 2)
        sa, sb = sc[p][:, pairs[:, 0]].T, sc[p][:, pairs[:, 1]].T  # (L, T)
        value = np.minimum(sa, sb)
        d2_ab = (a[..., 0] - b[..., 0]) ** 2 + (a[..., 1] - b[..., 1]) ** 2
        point = d2_ab < 1  # degenerate limb: joint map of end a with value score_a
        value = np.where(point, sa, value)
        b = np.where(point[..., None], a, b)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        x0, x1 = _window(lo[..., 0], hi[..., 0], sigma, w)
        y0, y1 = _window(lo[..., 1], hi[..., 1], sigma, h)
        nx, ny = x1 - x0, y1 - y0
        keep = (np.minimum(sa, sb) >= eps) & (nx > 0) & (ny > 0)
        if not keep.any():
            continue
        sel = keep.reshape(-1)  # drawn windows, flat over (L, T)
        index, xi, yi, area = _ragged_pixels(
            x0.reshape(-1)[sel],
            y0.reshape(-1)[sel],
            nx.reshape(-1)[sel],
            ny.reshape(-1)[sel],
            base.reshape(-1)[sel],
            w,
        )
        d2ab = np.where(point, np.float32(1), d2_ab)
        per_window = np.stack([a[..., 0], a[..., 1], b[..., 0], b[..., 1], d2ab, value])
        ax, ay, bx, by, d2ab, val = np.repeat(per_window.reshape(6, -1)[:, sel], area, axis=1)
        xs, ys = xi.astype(np.float32), yi.astype(np.float32)
        d2_a = (xs - ax) ** 2 + (ys - ay) ** 2
        d2_b = (xs - bx) ** 2 + (ys - by) ** 2
        coeff = (d2_a - d2_b + d2ab) / np.float32(2) / d2ab
        d2_line = (xs - (ax + coeff * (bx - ax))) ** 2 + (ys - (ay + coeff * (by - ay))) ** 2
        # a degenerate limb has b == a here, so coeff == 0.5 and d2_line == d2_a exactly
        d2 = np.where(coeff <= 0, d2_a, np.where(coeff >= 1, d2_b, d2_line))
        patch = np.exp(-d2 / c)
        patch *= val
        _scatter(flat, index, patch, first)
        first = False
    return vol


# --------------------------------------------------------------------------------------------
# pyskl-style reference loops
# --------------------------------------------------------------------------------------------
def _ref_point(arr: np.ndarray, center: np.ndarray, value: float, sigma: float, eps: float) -> None:
    """pyskl ``generate_a_heatmap`` for one keypoint: np.maximum of a local patch into ``arr``."""
    if value < eps:
        return
    img_h, img_w = arr.shape
    mu_x, mu_y = float(center[0]), float(center[1])
    st_x = max(int(mu_x - 3 * sigma), 0)
    ed_x = min(int(mu_x + 3 * sigma) + 1, img_w)
    st_y = max(int(mu_y - 3 * sigma), 0)
    ed_y = min(int(mu_y + 3 * sigma) + 1, img_h)
    x = np.arange(st_x, ed_x, 1, np.float32)
    y = np.arange(st_y, ed_y, 1, np.float32)
    if not (len(x) and len(y)):
        return
    y = y[:, None]
    patch = np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / 2 / sigma**2)
    patch = patch * value
    arr[st_y:ed_y, st_x:ed_x] = np.maximum(arr[st_y:ed_y, st_x:ed_x], patch)


def _ref_limb(
    arr: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    start_value: np.float32,
    end_value: np.float32,
    sigma: float,
    eps: float,
) -> None:
    """pyskl ``generate_a_limb_heatmap`` for one segment."""
    value_coeff = min(start_value, end_value)
    if value_coeff < eps:
        return
    img_h, img_w = arr.shape
    min_x, max_x = min(start[0], end[0]), max(start[0], end[0])
    min_y, max_y = min(start[1], end[1]), max(start[1], end[1])
    min_x = max(int(float(min_x) - 3 * sigma), 0)
    max_x = min(int(float(max_x) + 3 * sigma) + 1, img_w)
    min_y = max(int(float(min_y) - 3 * sigma), 0)
    max_y = min(int(float(max_y) + 3 * sigma) + 1, img_h)
    x = np.arange(min_x, max_x, 1, np.float32)
    y = np.arange(min_y, max_y, 1, np.float32)
    if not (len(x) and len(y)):
        return
    y = y[:, None]
    x_0 = np.zeros_like(x)
    y_0 = np.zeros_like(y)
    d2_start = (x - start[0]) ** 2 + (y - start[1]) ** 2
    d2_end = (x - end[0]) ** 2 + (y - end[1]) ** 2
    d2_ab = (start[0] - end[0]) ** 2 + (start[1] - end[1]) ** 2
    if d2_ab < 1:
        _ref_point(arr, start, start_value, sigma, eps)
        return
    coeff = (d2_start - d2_end + d2_ab) / 2.0 / d2_ab
    a_dominate = coeff <= 0
    b_dominate = coeff >= 1
    seg_dominate = 1 - a_dominate - b_dominate
    position = np.stack([x + y_0, y + x_0], axis=-1)
    projection = start + np.stack([coeff, coeff], axis=-1) * (end - start)
    d2_line = position - projection
    d2_line = d2_line[:, :, 0] ** 2 + d2_line[:, :, 1] ** 2
    d2_seg = a_dominate * d2_start + b_dominate * d2_end + seg_dominate * d2_line
    patch = np.exp(-d2_seg / 2.0 / sigma**2)
    patch = patch * value_coeff
    arr[min_y:max_y, min_x:max_x] = np.maximum(arr[min_y:max_y, min_x:max_x], patch)


def joint_heatmaps_reference(
    keypoint: np.ndarray,
    score: np.ndarray | None,
    size: tuple[int, int],
    sigma: float = 0.6,
    eps: float = SCORE_EPS,
) -> np.ndarray:
    """:func:`joint_heatmaps` as pyskl writes it: loops over persons, frames and joints."""
    kp, sc = _prepare_numpy(keypoint, score)
    m, t, v = sc.shape
    vol = np.zeros((v, t, int(size[0]), int(size[1])), np.float32)
    for p in range(m):
        for f in range(t):
            for j in range(v):
                _ref_point(vol[j, f], kp[p, f, j], sc[p, f, j], sigma, eps)
    return vol


def limb_heatmaps_reference(
    keypoint: np.ndarray,
    score: np.ndarray | None,
    limbs: Sequence[tuple[int, int]],
    size: tuple[int, int],
    sigma: float = 0.6,
    eps: float = SCORE_EPS,
) -> np.ndarray:
    """:func:`limb_heatmaps` as pyskl writes it: loops over persons, frames and limbs."""
    kp, sc = _prepare_numpy(keypoint, score)
    m, t, v = sc.shape
    pairs = _limb_pairs(limbs, v)
    vol = np.zeros((len(pairs), t, int(size[0]), int(size[1])), np.float32)
    for p in range(m):
        for f in range(t):
            for i, (a, b) in enumerate(pairs):
                _ref_limb(vol[i, f], kp[p, f, a], kp[p, f, b], sc[p, f, a], sc[p, f, b], sigma, eps)
    return vol


# --------------------------------------------------------------------------------------------
# batched torch
# --------------------------------------------------------------------------------------------
def _prepare_torch(
    keypoint: torch.Tensor, score: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """float32 keypoints (B, M, T, V, 2), scores (B, M, T, V) and the leading batch shape."""
    if keypoint.ndim < 4 or keypoint.shape[-1] != 2:
        raise ValueError(f"keypoint must be (..., M, T, V, 2), got {tuple(keypoint.shape)}")
    kp = keypoint.to(torch.float32)
    lead = tuple(kp.shape[:-4])
    if score is None:
        sc = torch.ones(kp.shape[:-1], dtype=torch.float32, device=kp.device)
    else:
        sc = score.to(device=kp.device, dtype=torch.float32)
        if sc.shape != kp.shape[:-1]:
            raise ValueError(f"score {tuple(sc.shape)} does not match keypoint {tuple(kp.shape)}")
    ok = torch.isfinite(kp).all(dim=-1) & torch.isfinite(sc)
    kp = torch.where(ok[..., None], kp, 0.0)
    sc = torch.where(ok, sc, 0.0)
    return kp.reshape(-1, *kp.shape[-4:]), sc.reshape(-1, *sc.shape[-3:]), lead


def _window_torch(
    lo: torch.Tensor, hi: torch.Tensor, sigma: float, extent: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_window` in torch (float64 where the device has it), float32 (start, stop)."""
    dt = torch.float32 if lo.device.type == "mps" else torch.float64
    start = torch.clamp(torch.trunc(lo.to(dt) - 3 * sigma), 0, extent)
    stop = torch.clamp(torch.trunc(hi.to(dt) + 3 * sigma) + 1, 0, extent)
    return start.to(torch.float32), torch.maximum(stop, start).to(torch.float32)


def _axis_mask(start: torch.Tensor, stop: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """(..., N) float 1/0: whether each pixel coordinate lies in ``[start, stop)``."""
    return ((coords >= start[..., None]) & (coords < stop[..., None])).to(torch.float32)


def _row_chunks(rows: int, row_elements: int, device: torch.device) -> list[slice]:
    """Slices over ``rows`` so that a (rows, row_elements) temporary stays under the budget."""
    budget = _CHUNK_ELEMENTS_CPU if device.type == "cpu" else _CHUNK_ELEMENTS
    step = max(1, budget // max(row_elements, 1))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def joint_heatmaps_torch(
    keypoint: torch.Tensor,
    score: torch.Tensor | None,
    size: tuple[int, int],
    sigma: float = 0.6,
    eps: float = SCORE_EPS,
) -> torch.Tensor:
    """Batched per-joint heatmaps on the input's device (same values as :func:`joint_heatmaps`).

    Args:
        keypoint: (..., M, T, V, 2) pixel coordinates, any number of leading batch dims.
        score: (..., M, T, V) confidences, or None for all ones.
        size: canvas (H, W).

    Returns:
        float32 (..., V, T, H, W). Uses separability (``exp`` over x times ``exp`` over y, the
        window as a separable mask); temporaries are chunked to about 256 MB (16 MB on CPU).
    """
    kp, sc, lead = _prepare_torch(keypoint, score)
    h, w = int(size[0]), int(size[1])
    b, m, t, v = sc.shape
    dev = kp.device
    kp = kp.permute(1, 0, 3, 2, 4).reshape(m, b * v * t, 2)  # rows ordered (B, V, T)
    sc = sc.permute(1, 0, 3, 2).reshape(m, b * v * t)
    x0, x1 = _window_torch(kp[..., 0], kp[..., 0], sigma, w)
    y0, y1 = _window_torch(kp[..., 1], kp[..., 1], sigma, h)
    xs = torch.arange(w, device=dev, dtype=torch.float32)
    ys = torch.arange(h, device=dev, dtype=torch.float32)
    c = 2 * sigma**2
    gx = torch.exp(-((xs - kp[..., 0:1]) ** 2) / c) * _axis_mask(x0, x1, xs)  # (M, R, W)
    keep = (sc >= eps).to(torch.float32) * sc
    gy = torch.exp(-((ys - kp[..., 1:2]) ** 2) / c) * _axis_mask(y0, y1, ys)
    gy = gy * keep[..., None]  # (M, R, H)
    out = torch.empty((b * v * t, h, w), dtype=torch.float32, device=dev)
    for rows in _row_chunks(b * v * t, h * w, dev):
        dst = out[rows]
        torch.mul(gy[0, rows, :, None], gx[0, rows, None, :], out=dst)
        for p in range(1, m):
            torch.maximum(dst, gy[p, rows, :, None] * gx[p, rows, None, :], out=dst)
    return out.reshape(*lead, v, t, h, w)


def limb_heatmaps_torch(
    keypoint: torch.Tensor,
    score: torch.Tensor | None,
    limbs: Sequence[tuple[int, int]],
    size: tuple[int, int],
    sigma: float = 0.6,
    eps: float = SCORE_EPS,
) -> torch.Tensor:
    """Batched per-limb heatmaps on the input's device (same values as :func:`limb_heatmaps`).

    Args:
        keypoint: (..., M, T, V, 2) pixel coordinates, any number of leading batch dims.
        score: (..., M, T, V) confidences, or None for all ones.
        limbs: L pairs ``(a, b)`` of joint indices.
        size: canvas (H, W).

    Returns:
        float32 (..., L, T, H, W). Dense per-pixel distance to the segment (clamped projection),
        computed in row chunks so that no temporary exceeds about 256 MB (16 MB on CPU). Meant
        for accelerators: on CPU the dense work makes it slower than :func:`limb_heatmaps`.
    """
    kp, sc, lead = _prepare_torch(keypoint, score)
    h, w = int(size[0]), int(size[1])
    b, m, t, v = sc.shape
    dev = kp.device
    pairs = torch.as_tensor(_limb_pairs(limbs, v), device=dev)
    n = int(pairs.shape[0])
    # (M, R, 2) with rows ordered (B, L, T)
    ka = kp[:, :, :, pairs[:, 0]].permute(1, 0, 3, 2, 4).reshape(m, b * n * t, 2)
    kb = kp[:, :, :, pairs[:, 1]].permute(1, 0, 3, 2, 4).reshape(m, b * n * t, 2)
    sa = sc[:, :, :, pairs[:, 0]].permute(1, 0, 3, 2).reshape(m, b * n * t)
    sb = sc[:, :, :, pairs[:, 1]].permute(1, 0, 3, 2).reshape(m, b * n * t)
    d2_ab = ((ka - kb) ** 2).sum(-1)
    point = d2_ab < 1
    kb = torch.where(point[..., None], ka, kb)
    value = torch.where(point, sa, torch.minimum(sa, sb))
    value = value * (torch.minimum(sa, sb) >= eps).to(torch.float32)
    lo, hi = torch.minimum(ka, kb), torch.maximum(ka, kb)
    x0, x1 = _window_torch(lo[..., 0], hi[..., 0], sigma, w)
    y0, y1 = _window_torch(lo[..., 1], hi[..., 1], sigma, h)
    xs = torch.arange(w, device=dev, dtype=torch.float32)
    ys = torch.arange(h, device=dev, dtype=torch.float32)
    dx = xs - ka[..., 0:1]  # (M, R, W), pixel minus end a
    dy = ys - ka[..., 1:2]  # (M, R, H)
    ab = torch.where(point[..., None], 0.0, kb - ka)  # (M, R, 2)
    inv = 1.0 / torch.where(point, 1.0, d2_ab)
    tx = dx * (ab[..., 0] * inv)[..., None]  # projection coefficient, x part
    ty = dy * (ab[..., 1] * inv)[..., None]
    fx = _axis_mask(x0, x1, xs)
    fy = _axis_mask(y0, y1, ys) * value[..., None]
    neg_c = -1.0 / (2 * sigma**2)
    out = torch.empty((b * n * t, h, w), dtype=torch.float32, device=dev)
    for rows in _row_chunks(b * n * t, h * w, dev):
        dst = out[rows]
        for p in range(m):
            coeff = (ty[p, rows, :, None] + tx[p, rows, None, :]).clamp_(0.0, 1.0)
            ex = torch.addcmul(dx[p, rows, None, :], coeff, ab[p, rows, 0, None, None], value=-1)
            ey = torch.addcmul(dy[p, rows, :, None], coeff, ab[p, rows, 1, None, None], value=-1)
            del coeff
            d2 = ex.square_().addcmul_(ey, ey)
            del ey
            heat = d2.mul_(neg_c).exp_().mul_(fy[p, rows, :, None]).mul_(fx[p, rows, None, :])
            if p == 0:
                dst.copy_(heat)
            else:
                torch.maximum(dst, heat, out=dst)
    return out.reshape(*lead, n, t, h, w)


# --------------------------------------------------------------------------------------------
# transform and module
# --------------------------------------------------------------------------------------------
def heatmap_channels(
    num_joints: int, stream: str, limbs: Sequence[tuple[int, int]] | None = None
) -> int:
    """Input channels of a heatmap stream: V for ``"joint"``, L for ``"limb"``.

    With ``limbs=None`` a limb stream is assumed to use a layout's tree edges (V - 1 limbs).
    """
    _check_stream(stream)
    if stream == "joint":
        return int(num_joints)
    return int(num_joints) - 1 if limbs is None else len(limbs)


def _use_score(score: np.ndarray, use_score: bool) -> np.ndarray:
    return score if use_score else (score > 0).astype(np.float32)


class GeneratePoseTarget:
    """Terminal transform: record -> float32 (C, T, H, W) pseudo-heatmap volume (pyskl).

    The record's keypoints must already be canvas pixel coordinates and ``record.img_shape`` the
    canvas (H, W) (resize / crop the keypoints first). C = V for ``stream="joint"``, L for
    ``"limb"``; ``limbs=None`` takes ``get_layout(record.layout).limbs`` (else ``.edges``).
    ``use_score=False`` draws every present joint (score > 0) with value 1; missing joints stay
    missing.
    """

    def __init__(
        self,
        stream: str = "joint",
        limbs: Sequence[tuple[int, int]] | None = None,
        sigma: float = 0.6,
        use_score: bool = True,
    ) -> None:
        _check_stream(stream)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.stream = stream
        self.limbs = None if limbs is None else tuple((int(a), int(b)) for a, b in limbs)
        self.sigma = float(sigma)
        self.use_score = bool(use_score)

    def _resolve_limbs(self, record: ClipRecord) -> tuple[tuple[int, int], ...]:
        if self.limbs is not None:
            return self.limbs
        layout = get_layout(record.layout)
        return tuple(getattr(layout, "limbs", layout.edges))

    def __call__(self, record: ClipRecord) -> np.ndarray:
        size = (int(record.img_shape[0]), int(record.img_shape[1]))
        score = _use_score(np.asarray(record.keypoint_score, np.float32), self.use_score)
        if self.stream == "joint":
            return joint_heatmaps(record.keypoint, score, size, self.sigma)
        return limb_heatmaps(record.keypoint, score, self._resolve_limbs(record), size, self.sigma)

    def __repr__(self) -> str:
        return (
            f"GeneratePoseTarget(stream={self.stream!r}, limbs={self.limbs}, "
            f"sigma={self.sigma}, use_score={self.use_score})"
        )


class HeatmapRenderer(torch.nn.Module):
    """Renders heatmap volumes from keypoints on the training device (no parameters).

    The CPU loader ships (x, y, score) points; ``forward(points, size)`` turns
    (..., M, T, V, 3) into float32 (..., C, T, H, W) on ``points.device`` with the values of
    :class:`GeneratePoseTarget`. A limb stream needs explicit ``limbs``.
    """

    def __init__(
        self,
        stream: str = "joint",
        limbs: Sequence[tuple[int, int]] | None = None,
        sigma: float = 0.6,
        use_score: bool = True,
    ) -> None:
        super().__init__()
        _check_stream(stream)
        if stream == "limb" and limbs is None:
            raise ValueError("HeatmapRenderer(stream='limb') needs limbs")
        self.stream = stream
        self.limbs = None if limbs is None else tuple((int(a), int(b)) for a, b in limbs)
        self.sigma = float(sigma)
        self.use_score = bool(use_score)

    @torch.no_grad()
    def forward(self, points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """points (..., M, T, V, 3) = (x, y, score) -> float32 (..., C, T, H, W)."""
        if points.ndim < 4 or points.shape[-1] != 3:
            raise ValueError(f"points must be (..., M, T, V, 3), got {tuple(points.shape)}")
        kp, score = points[..., :2], points[..., 2]
        if not self.use_score:
            score = (score > 0).to(torch.float32)
        if self.stream == "joint":
            return joint_heatmaps_torch(kp, score, size, self.sigma)
        assert self.limbs is not None
        return limb_heatmaps_torch(kp, score, self.limbs, size, self.sigma)

    def extra_repr(self) -> str:
        return (
            f"stream={self.stream!r}, limbs={self.limbs}, sigma={self.sigma}, "
            f"use_score={self.use_score}"
        )
