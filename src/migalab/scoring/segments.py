"""Scoring detected segments against labelled ones (online recognition, ``migalab-eval`` of
``online.labels``): temporal IoU, the greedy matching per video and pooled segment precision /
recall / F1 at IoU thresholds -- the measure of the MiGA spotting track.

A :class:`Segment` is frames ``start..end`` (inclusive), 0-based class ``label`` and a
``score``. Predictions are matched by decreasing score to the unmatched ground truth of their
class with the highest IoU strictly above the threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Segment", "match_segments", "segment_scores", "temporal_iou"]


@dataclass(frozen=True)
class Segment:
    """A detected (or labelled) micro-gesture: frames ``start..end`` (inclusive), 0-based class
    ``label`` and a confidence ``score`` (1 for ground truth)."""

    start: int
    end: int
    label: int
    score: float = 1.0

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def temporal_iou(a: Segment, b: Segment) -> float:
    """Intersection over union of two inclusive frame intervals (frames shared / frames in
    either; 0 when they share none)."""
    inter = min(a.end, b.end) - max(a.start, b.start) + 1
    if inter <= 0:
        return 0.0
    return inter / (a.length + b.length - inter)


def match_segments(
    preds: Sequence[Segment], truths: Sequence[Segment], iou: float
) -> list[tuple[int, int]]:
    """The greedy matching of one video's predictions to its ground truth: (prediction index,
    ground-truth index) pairs, in matching order. Predictions go by decreasing score (a stable
    sort: equal scores in the order given); each takes the unmatched ground truth of its class
    with the highest IoU strictly above ``iou`` (equal IoUs: the first ground truth)."""
    used = [False] * len(truths)
    pairs = []
    for i in sorted(range(len(preds)), key=lambda i: -preds[i].score):
        p = preds[i]
        best, best_iou = None, iou
        for j, t in enumerate(truths):
            if used[j] or t.label != p.label:
                continue
            overlap = temporal_iou(p, t)
            if overlap > best_iou:
                best, best_iou = j, overlap
        if best is not None:
            used[best] = True
            pairs.append((i, best))
    return pairs


def segment_scores(
    preds: Mapping[str, Sequence[Segment]],
    truths: Mapping[str, Sequence[Segment]],
    ious: Iterable[float] = (0.3, 0.5),
) -> dict[str, dict[str, float]]:
    """Pooled segment precision / recall / F1 per IoU threshold (``iou_0.3``: {precision,
    recall, f1, tp, predicted, true}); videos are the union of both mappings' keys."""
    videos = sorted(set(preds) | set(truths))
    n_pred = sum(len(preds.get(v, [])) for v in videos)
    n_true = sum(len(truths.get(v, [])) for v in videos)
    out = {}
    for iou in ious:
        tp = sum(len(match_segments(preds.get(v, []), truths.get(v, []), iou)) for v in videos)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        out[f"iou_{iou:g}"] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "tp": tp,
            "predicted": n_pred,
            "true": n_true,
        }
    return out
