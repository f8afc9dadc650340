"""Small time-signal helpers: smooth noise, easing envelopes, event trains, box smoothing."""

from __future__ import annotations

import numpy as np


def smoothstep(x: np.ndarray) -> np.ndarray:
    """C1 ease 0 -> 1 on [0, 1] (clipped outside)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def smooth_noise(
    rng: np.random.Generator, n: int, dims: int = 1, period: float = 25.0
) -> np.ndarray:
    """(n, dims) smooth random signal of about unit sd and time scale ``period`` frames.

    Random knots every ``period / 2`` frames joined by Catmull-Rom splines.
    """
    step = max(1.0, period / 2.0)
    knots = int(np.ceil(n / step)) + 4
    vals = rng.standard_normal((knots, dims)) * 1.15
    x = np.arange(n) / step
    i = np.floor(x).astype(np.int64)
    f = (x - i)[:, None]
    p0, p1, p2, p3 = vals[i], vals[i + 1], vals[i + 2], vals[i + 3]
    f2, f3 = f * f, f * f * f
    return 0.5 * (
        2 * p1
        + (-p0 + p2) * f
        + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f2
        + (-p0 + 3 * p1 - 3 * p2 + p3) * f3
    )


def envelope(
    n: int, rng: np.random.Generator, ease: tuple[float, float] = (0.15, 0.35)
) -> np.ndarray:
    """(n,) gesture weight: ease-in (smoothstep), hold at 1, ease-out; 0 at both ends.

    The ease-in and ease-out lengths are each a random fraction ``ease`` of the clip.
    """
    a = max(2, int(round(rng.uniform(*ease) * n)))
    b = max(2, int(round(rng.uniform(*ease) * n)))
    if a + b > n - 1:
        a = b = max(1, (n - 1) // 2)
    t = np.arange(n, dtype=np.float64)
    up = smoothstep(t / a)
    down = smoothstep((n - 1 - t) / b)
    return np.minimum(up, down)


def box_smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding (width frames, odd-ised)."""
    width = int(width) | 1
    if width <= 1 or len(x) == 0:
        return x.copy()
    pad = width // 2
    xp = np.concatenate([np.repeat(x[:1], pad, axis=0), x, np.repeat(x[-1:], pad, axis=0)])
    c = np.cumsum(xp, axis=0, dtype=np.float64)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    return (c[width:] - c[:-width]) / width


def random_segments(
    rng: np.random.Generator, n: int, mean_on: float, mean_off: float, start_on: bool | None = None
) -> np.ndarray:
    """(n,) bool alternating on/off segments with exponential lengths (frames)."""
    out = np.zeros(n, dtype=bool)
    on = bool(rng.random() < mean_on / (mean_on + mean_off)) if start_on is None else start_on
    t = 0
    while t < n:
        length = max(1, int(rng.exponential(mean_on if on else mean_off)))
        if on:
            out[t : t + length] = True
        t += length
        on = not on
    return out


def event_starts(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """Frame indices of a Poisson event train with ``rate`` events per frame."""
    if rate <= 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    k = rng.poisson(rate * n)
    return np.sort(rng.integers(0, n, size=k))


def burst_mask(
    rng: np.random.Generator, shape: tuple[int, ...], rate: float, max_len: int
) -> np.ndarray:
    """Bool mask (T, ...) of dropout bursts: starts with prob ``rate`` per entry, 1..max_len long."""
    starts = rng.random(shape) < rate
    if not starts.any():
        return starts
    lengths = rng.integers(1, max_len + 1, size=shape)
    mask = starts.copy()
    for k in range(1, max_len):
        m = starts & (lengths > k)
        mask[k:] |= m[:-k]
    return mask
