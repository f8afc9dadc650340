"""Video-level evaluation and late fusion of emotion checkpoints (``migalab-eval``).

    migalab-eval ckpt_path=<emotion ckpt>                                  # one model
    migalab-eval ckpt_path='[face.ckpt,context.ckpt]' fusion.search=true   # late fusion

Each checkpoint's clip scores (:func:`~migalab.scoring.ensemble.score_checkpoints`, clip logits and
the clip's video) become one win log-odds per video with the checkpoint's own aggregation
(``model.aggregation`` / ``temperature``, :func:`~migalab.tasks.emotion.aggregate_videos`),
exactly as its validation / test epochs compute them, so one checkpoint reproduces the
``acc`` / ``macro_f1`` / ``auroc`` / ``clip_acc`` its training run reported.

Several checkpoints (e.g. a face-only and a context-only model: the late-fusion baseline an
InterFusion model is compared with) are fused per video: a weighted sum of their video
log-odds (``fusion.space=logits``) or of their P(win) (``probs``; the weights sum to 1, so the
sum is a probability). Weights are given (``fusion.weights``, None = equal), read from an
earlier evaluation (``fusion.from``) or searched on the validation videos over the simplex
grid of :func:`~migalab.scoring.ensemble.simplex_grid` (maximising video accuracy; ties: AUROC, then
the most even weights). Checkpoints are aligned by video id, so models fed different
modalities of the same videos fuse even when their clip sets differ.

With few videos a difference of a few points is noise, so every split's metrics come with a
95 % bootstrap interval over its videos (``ci95``: ``acc`` and ``auroc``, percentile method,
:func:`bootstrap_ci`).

Written to the run dir: ``video_predictions_<split>.csv`` (``video_id,n_clips,prob_win,label``,
label 1 win / 0 lose; of the fusion when there are several checkpoints).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from migalab.scoring.ensemble import CheckpointScores, fusion_weights_from_file, simplex_grid
from migalab.scoring.records import check_weights
from migalab.tasks.emotion import (
    aggregate_videos,
    binary_video_metrics,
    video_metrics,
    win_scores,
    write_video_predictions,
)

log = logging.getLogger(__name__)

__all__ = [
    "VideoLevel",
    "bootstrap_ci",
    "evaluate_emotion",
    "fuse_video_scores",
    "paired_bootstrap_diff",
    "video_level",
]


@dataclass
class VideoLevel:
    """One checkpoint's (or a fusion's) video-level scores on one split, sorted by video id:
    ``names`` (V,), win log-odds ``logits`` (V,), ``labels`` (V,) (1 win), ``n_clips`` (V,)."""

    names: list[str]
    logits: torch.Tensor
    labels: torch.Tensor
    n_clips: torch.Tensor

    @property
    def prob(self) -> torch.Tensor:
        return torch.sigmoid(self.logits).float()


def _resample_counts(v: int, n: int, seed: int) -> torch.Tensor:
    """(n, V) multiplicity of each of V videos in ``n`` seeded resamples with replacement (the
    same for every model scored on the same V videos, so differences are paired)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, v, (n, v), generator=gen)
    return torch.zeros(n, v, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(n, v, dtype=torch.float64)
    )


def _resampled_metrics(
    prob: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Video accuracy and AUROC (n,) of each resample ``counts`` (n, V); AUROC is the
    Mann-Whitney statistic with the resample's multiplicities (ties count 1/2), NaN for a
    resample with one class only."""
    prob, labels = prob.double().cpu(), labels.long().cpu()
    correct = ((prob >= 0.5).long() == labels).double()
    acc = counts @ correct / counts.shape[1]
    pos, neg = labels == 1, labels == 0
    diff = prob[pos][:, None] - prob[neg][None, :]
    wins = (diff > 0).double() + 0.5 * (diff == 0).double()  # (P, N)
    cp, cn = counts[:, pos], counts[:, neg]
    den = cp.sum(1) * cn.sum(1)
    auroc = torch.einsum("bp,pn,bn->b", cp, wins, cn) / den  # NaN where den == 0
    return {"acc": acc, "auroc": auroc}


def _interval(x: torch.Tensor, level: float) -> list[float]:
    x = x[~torch.isnan(x)]
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    return [float(v) for v in torch.quantile(x, q)] if len(x) else [float("nan")] * 2


def bootstrap_ci(
    prob: torch.Tensor, labels: torch.Tensor, n: int = 2000, level: float = 0.95, seed: int = 0
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of video accuracy and AUROC: ``n`` resamples of the V
    videos with replacement (seeded, so a report is reproducible).

    Args:
        prob: (V,) P(win) per video; labels: (V,) 1 win, 0 lose.

    Vectorised over resamples; a resample with one class only is left out of the AUROC's.
    """
    stats = _resampled_metrics(prob, labels, _resample_counts(len(prob), n, seed))
    return {key: _interval(x, level) for key, x in stats.items()}


def paired_bootstrap_diff(
    prob_a: torch.Tensor,
    prob_b: torch.Tensor,
    labels: torch.Tensor,
    n: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Is model A better than model B on the same V videos? Paired bootstrap of the
    differences A - B in video accuracy and AUROC: both scored on the same resamples.

    Args:
        prob_a: (V,) P(win) of model A per video.
        prob_b: (V,) P(win) of model B per video, aligned with ``prob_a``.
        labels: (V,).

    Returns:
        per metric: ``diff`` (on all videos), ``lo`` / ``hi`` (the ``level`` interval) and
        ``p_not_better`` (share of resamples where A is not above B: a one-sided bootstrap
        p-value of "A beats B").
    """
    counts = _resample_counts(len(labels), n, seed)
    a = _resampled_metrics(prob_a, labels, counts)
    b = _resampled_metrics(prob_b, labels, counts)
    full = torch.ones(1, len(labels), dtype=torch.float64)
    a0, b0 = _resampled_metrics(prob_a, labels, full), _resampled_metrics(prob_b, labels, full)
    out: dict[str, dict[str, float]] = {}
    for key in ("acc", "auroc"):
        d = a[key] - b[key]
        d = d[~torch.isnan(d)]
        lo, hi = _interval(d, level)
        out[key] = {
            "diff": float(a0[key] - b0[key]),
            "lo": lo,
            "hi": hi,
            "p_not_better": float((d <= 0).double().mean()) if len(d) else float("nan"),
        }
    return out


def video_level(entry: CheckpointScores, split: str) -> tuple[VideoLevel, dict[str, float]]:
    """Video scores of ``entry`` on ``split`` and its metrics (``video_metrics``: video acc,
    macro-F1, AUROC, ``clip_acc``, counts)."""
    s = entry.splits[split]
    if s.videos is None or s.video_ids is None:
        raise ValueError(f"{entry.path}: the {split} batches carry no videos (data.target=emotion)")
    scores = win_scores(s.logits)
    metrics, per_video = video_metrics(
        s.videos, scores, s.labels, entry.aggregation, entry.temperature
    )
    names = [s.video_ids[int(v)] for v in per_video["video"]]
    order = sorted(range(len(names)), key=names.__getitem__)
    _, _, logits = aggregate_videos(s.videos, scores, entry.aggregation, entry.temperature)
    level = VideoLevel(
        names=[names[i] for i in order],
        logits=logits.float()[order],
        labels=per_video["label"][order],
        n_clips=per_video["n_clips"][order],
    )
    return level, metrics


def fuse_video_scores(
    levels: Sequence[VideoLevel], weights: Sequence[float] | None, space: str = "logits"
) -> VideoLevel:
    """Weighted sum of the video log-odds (``logits``) or P(win) (``probs``) of several models
    scored on the same videos; returned as log-odds."""
    if weights is None:
        weights = [1.0 / len(levels)] * len(levels)
    if len(weights) != len(levels):
        raise ValueError(f"{len(weights)} fusion weights for {len(levels)} checkpoints")
    if space not in ("probs", "logits"):
        raise ValueError(f"fusion.space must be 'probs' or 'logits', got {space!r}")
    first = levels[0]
    for other in levels[1:]:
        if other.names != first.names or not torch.equal(other.labels, first.labels):
            raise ValueError("the checkpoints scored different videos (or labels); cannot fuse")
    if space == "logits":
        logits = sum(w * lv.logits for w, lv in zip(weights, levels, strict=True))
    else:
        total = float(sum(weights))
        if total <= 0:
            raise ValueError(f"fusion weights must have a positive sum, got {list(weights)}")
        p = sum(w * lv.prob for w, lv in zip(weights, levels, strict=True)) / total
        p = p.double().clamp(1e-12, 1 - 1e-12)
        logits = (torch.log(p) - torch.log1p(-p)).float()
    n_clips = torch.stack([lv.n_clips for lv in levels]).amax(0)
    return VideoLevel(list(first.names), logits, first.labels.clone(), n_clips)


def _search_weights(
    levels: Sequence[VideoLevel], step: float, space: str
) -> tuple[list[float], dict[str, float]]:
    best: tuple[tuple[float, float, float], tuple[float, ...], dict[str, float]] | None = None
    for w in simplex_grid(len(levels), step):
        fused = fuse_video_scores(levels, w, space)
        m = binary_video_metrics(fused.prob, fused.labels)
        auroc = m["auroc"] if m["auroc"] == m["auroc"] else 0.0
        key = (m["acc"], auroc, -max(w))
        if best is None or key > best[0]:
            best = (key, w, {"acc": m["acc"], "auroc": m["auroc"]})
    assert best is not None
    return list(best[1]), best[2]


def _fusion_weights(
    fusion: DictConfig, entries: Sequence[CheckpointScores], levels: dict[str, list[VideoLevel]]
) -> tuple[list[float] | None, dict[str, Any]]:
    """Given / read / searched weights (as :func:`migalab.scoring.ensemble.resolve_fusion_weights`)."""
    if fusion.get("temperature") is not None:
        raise ValueError(
            "fusion.temperature is for gesture checkpoints; emotion models are "
            "fused per video with their own aggregation"
        )
    info: dict[str, Any] = {
        "space": fusion.space,
        "level": "video",
        "checkpoints": [e.path for e in entries],
    }
    if fusion.get("from"):
        weights = fusion_weights_from_file(fusion["from"], len(entries))
        info.update(weights=weights, **{"from": str(fusion["from"])})
        return weights, info
    if not fusion.get("search", False):
        given = fusion.get("weights")
        weights = None if given is None else check_weights(given, len(entries), "fusion.weights")
        info.update(weights=weights, searched=False)
        return weights, info
    split = fusion.get("search_split", "val")
    if split not in levels:
        raise ValueError(
            f"fusion.search needs labelled {split} videos from every checkpoint; "
            f"add {split} to splits or give fusion.weights"
        )
    step = float(fusion.get("grid_step", 0.05))
    weights, reached = _search_weights(levels[split], step, fusion.space)
    log.info("video fusion weights searched on %s: %s (acc %.4f)", split, weights, reached["acc"])
    info.update(
        weights=weights, searched=True, search_split=split, grid_step=step, search_metrics=reached
    )
    return weights, info


def evaluate_emotion(
    entries: Sequence[CheckpointScores],
    splits: Sequence[str],
    fusion: DictConfig,
    output_dir: str | Path,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """Video-level metrics of every split all ``entries`` scored (with labels): one
    checkpoint's own (``<split>``), or the fusion's (``<split>``) and each model's
    (``<split>_streams``); writes ``video_predictions_<split>.csv``.

    Returns (metrics for ``metrics.json``, rows for the summary table, the fusion record or
    None).
    """
    levels: dict[str, list[VideoLevel]] = {}
    own: dict[str, dict[str, dict[str, float]]] = {}
    for split in splits:
        if any(split not in e.splits or not e.splits[split].has_labels for e in entries):
            continue
        pairs = [video_level(e, split) for e in entries]
        levels[split] = [lv for lv, _ in pairs]
        own[split] = {e.name: m for e, (_, m) in zip(entries, pairs, strict=True)}
    weights, info = (None, None)
    if len(entries) > 1:
        weights, info = _fusion_weights(fusion, entries, levels)
    metrics: dict[str, Any] = {}
    table: dict[str, Any] = {}
    out = Path(output_dir)
    for split, lvs in levels.items():
        if len(entries) == 1:
            result, level = own[split][entries[0].name], lvs[0]
            table[split] = result
        else:
            level = fuse_video_scores(lvs, weights, fusion.space)
            result = binary_video_metrics(level.prob, level.labels)
            metrics[f"{split}_streams"] = own[split]
            table.update({f"{split} {n}": m for n, m in own[split].items()})
            table[f"{split} fused"] = result
        result["ci95"] = bootstrap_ci(level.prob, level.labels)
        metrics[split] = result
        per_video = {
            "video": torch.arange(len(level.names)),
            "n_clips": level.n_clips,
            "prob_win": level.prob,
            "label": level.labels,
        }
        write_video_predictions(out / f"video_predictions_{split}.csv", per_video, level.names)
    return metrics, table, info
