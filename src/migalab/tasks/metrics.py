"""Classification metrics shared by training, evaluation and score fusion.

One definition everywhere (LightningModule epochs, ``migalab-eval``, fused scores):
- ``top1`` / ``top5``: micro accuracy (fraction of clips whose label is in the top k);
- ``macro_f1``: F1 averaged over classes that occur in the targets or the predictions
  (torchmetrics' macro average ignores classes with tp+fp+fn = 0);
- ``mean_class_acc``: recall averaged over the classes present in the targets (mmaction's
  "mean class accuracy"), computed from the confusion matrix;
- ``per_class_acc``: recall of every class (NaN where a class has no samples);
- ``confusion_matrix``: K x K counts, rows = true class, columns = predicted class.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

SCALAR_METRICS = ("top1", "top5", "macro_f1", "mean_class_acc")


def build_metrics(num_classes: int) -> MetricCollection:
    """Metric objects (DDP-synchronised by torchmetrics) fed with (logits (N, K), labels (N,))."""
    return MetricCollection(
        {
            "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "confmat": MulticlassConfusionMatrix(num_classes),
        },
        # compute groups share state between metrics whose states match after the first
        # update, which made top5 report another metric's value: keep every metric separate
        compute_groups=False,
    )


def summarize(
    computed: dict[str, torch.Tensor], class_names: Sequence[str] | None = None
) -> dict[str, object]:
    """Turn ``MetricCollection.compute()`` output into plain floats plus per-class accuracy."""
    out: dict[str, object] = {}
    for key in ("top1", "top5", "macro_f1"):
        out[key] = float(computed[key])
    cm = computed["confmat"].double()
    support = cm.sum(dim=1)
    recall = torch.where(support > 0, cm.diag() / support.clamp_min(1), torch.nan)
    present = support > 0
    out["mean_class_acc"] = float(recall[present].mean()) if present.any() else float("nan")
    names = class_names or [str(i) for i in range(len(recall))]
    out["per_class_acc"] = {n: float(r) for n, r in zip(names, recall.tolist(), strict=True)}
    out["support"] = {n: int(s) for n, s in zip(names, support.tolist(), strict=True)}
    out["num_samples"] = int(support.sum())
    out["confusion_matrix"] = cm.long().tolist()  # rows: true class, columns: predicted
    return out


def compute_metrics(
    scores: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, object]:
    """Metrics of a full set of scores (N, K) (logits or probabilities) against labels (N,)."""
    metrics = build_metrics(num_classes)
    metrics.update(scores.float(), labels.long())
    return summarize(metrics.compute(), class_names)


def stream_hits(pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correctness (n,) float of one stream's predicted classes ``pred`` (N,) against
    ``labels`` (N,) over the n samples where the stream is present (``pred`` >= 0; -1 marks an
    absent stream)."""
    present = pred >= 0
    return (pred[present] == labels[present]).float()


def stream_top1(preds: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """Top-1 of each stream's predicted classes (N,) (-1 where absent) against ``labels``
    (N,), over the samples where it is present; NaN for a stream present on none."""
    out = {}
    for name, pred in preds.items():
        hits = stream_hits(pred, labels)
        out[name] = float(hits.mean()) if hits.numel() else float("nan")
    return out
