"""Body-centred normalisation: ``NormalizeSkeleton`` (neck centre, shoulder-width scale,
confidence-weighted medians over the clip)."""

from __future__ import annotations

import numpy as np

from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import get_layout
from migalab.data.skeleton.transforms.common import replace_record

__all__ = ["NormalizeSkeleton"]


def _weighted_median(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Lower weighted median of ``x`` over its last axis with weights ``w >= 0``.

    Shapes: x, w (..., N) -> (...); NaN where the total weight is 0.
    """
    w = np.broadcast_to(w, x.shape)
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    cw = np.cumsum(np.take_along_axis(w, order, axis=-1), axis=-1)
    total = cw[..., -1]
    idx = np.argmax(cw >= 0.5 * total[..., None], axis=-1)
    med = np.take_along_axis(xs, idx[..., None], axis=-1)[..., 0]
    return np.where(total > 0, med, np.nan)


class NormalizeSkeleton:
    """Translate each person to its neck and scale to body units (confidence aware).

    Per person (shapes: keypoint (M, T, V, 2), centre (M, 2), scale (M,)):

    * centre: the confidence-weighted temporal median (per coordinate) of the ``center`` joint
      over frames where its score > ``min_score``; fallback the median shoulder midpoint
      (frames with both shoulders), then the weighted median of all confident joints, then 0.
      One centre per person for the whole clip, so global body motion is kept.
    * scale (``"shoulder"``): the median shoulder width over frames where both shoulders have
      score > ``min_score``; fallback (shoulders never seen) the median distance between pairs
      of confident joints in the same frame (a rough proxy of shoulder width for upper-body
      layouts), then the image height, then 1. Scales <= ``eps`` count as missing, so this never
      divides by 0. ``scale=None`` only translates.
    * missing joints (score 0) stay exactly (0, 0) with score 0; scores are unchanged.

    Sets ``meta["space"] = "body"``, ``meta["norm_center"]`` (M, 2), ``meta["norm_scale"]`` (M,)
    and ``meta["norm_scale_source"]`` (per person: shoulder / pairwise / image / unit). An
    all-missing person or clip stays all zero.
    """

    #: cap on frames x V x V used for the pairwise-distance fallback (memory bound)
    _PAIRWISE_BUDGET = 2_000_000

    def __init__(
        self,
        center: str | None = "neck",
        scale: str | None = "shoulder",
        min_score: float = 0.0,
        eps: float = 1e-6,
    ) -> None:
        if scale not in ("shoulder", None):
            raise ValueError(f"scale must be 'shoulder' or None, got {scale!r}")
        self.center, self.scale, self.min_score, self.eps = center, scale, min_score, eps

    def __call__(self, record: ClipRecord) -> ClipRecord:
        layout = get_layout(record.layout)
        names = layout.names
        kp = record.keypoint.astype(np.float64)  # (M, T, V, 2)
        sc = record.keypoint_score.astype(np.float64)  # (M, T, V)
        m, t, v = sc.shape
        valid = sc > 0
        conf = valid & (sc > self.min_score)
        w = np.where(conf, sc, 0.0)
        shoulders = (
            (names.index("l_shoulder"), names.index("r_shoulder"))
            if {"l_shoulder", "r_shoulder"} <= set(names)
            else None
        )
        both = conf[:, :, shoulders[0]] & conf[:, :, shoulders[1]] if shoulders else None

        # ---- centre (M, 2)
        center = np.zeros((m, 2))
        if self.center is not None:
            if self.center not in names:
                raise ValueError(f"layout {layout.name} has no joint named {self.center!r}")
            j = names.index(self.center)
            c = _weighted_median(kp[:, :, j].transpose(0, 2, 1), w[:, None, :, j])
            if shoulders is not None:
                mid = 0.5 * (kp[:, :, shoulders[0]] + kp[:, :, shoulders[1]])  # (M, T, 2)
                c_mid = _weighted_median(mid.transpose(0, 2, 1), both[:, None, :].astype(float))
                c = np.where(np.isnan(c), c_mid, c)
            c_all = _weighted_median(
                kp.transpose(0, 3, 1, 2).reshape(m, 2, t * v), w.reshape(m, 1, t * v)
            )
            c = np.where(np.isnan(c), c_all, c)
            center = np.nan_to_num(c, nan=0.0)

        # ---- scale (M,)
        scale = np.ones(m)
        source = np.full(m, "unit", dtype=object)
        if self.scale == "shoulder":
            s = np.full(m, np.nan)
            if shoulders is not None:
                width = np.linalg.norm(kp[:, :, shoulders[0]] - kp[:, :, shoulders[1]], axis=-1)
                s = _weighted_median(width, both.astype(float))
                s = np.where(s > self.eps, s, np.nan)
            source = np.where(np.isnan(s), source, "shoulder")
            if np.isnan(s).any():
                s_pair = self._pairwise_scale(kp, conf)
                s_pair = np.where(s_pair > self.eps, s_pair, np.nan)
                source = np.where(np.isnan(s) & ~np.isnan(s_pair), "pairwise", source)
                s = np.where(np.isnan(s), s_pair, s)
            height = float(record.img_shape[0]) if record.img_shape else 0.0
            if height > self.eps:
                source = np.where(np.isnan(s), "image", source)
                s = np.where(np.isnan(s), height, s)
            scale = np.nan_to_num(s, nan=1.0)

        out = (kp - center[:, None, None, :]) / scale[:, None, None, None]
        out = np.where(valid[..., None], out, 0.0).astype(np.float32)
        return replace_record(
            record,
            {
                "space": "body",
                "norm_center": center.astype(np.float32),
                "norm_scale": scale.astype(np.float32),
                "norm_scale_source": tuple(str(x) for x in source),
            },
            keypoint=out,
            keypoint_score=record.keypoint_score.copy(),
        )

    def _pairwise_scale(self, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """(M,) median distance between confident joint pairs in the same frame (NaN if none)."""
        m, t, v, _ = kp.shape
        n = max(1, min(t, self._PAIRWISE_BUDGET // max(1, v * v)))
        frames = np.unique(np.linspace(0, t - 1, n).round().astype(np.int64))
        k, c = kp[:, frames], conf[:, frames]  # (M, F, V, 2), (M, F, V)
        d = np.linalg.norm(k[:, :, :, None] - k[:, :, None, :], axis=-1)  # (M, F, V, V)
        pair = c[:, :, :, None] & c[:, :, None, :] & np.triu(np.ones((v, v), bool), 1)
        return _weighted_median(d.reshape(m, -1), pair.reshape(m, -1).astype(float))

    def __repr__(self) -> str:
        return (
            f"NormalizeSkeleton(center={self.center!r}, scale={self.scale!r}, "
            f"min_score={self.min_score})"
        )
