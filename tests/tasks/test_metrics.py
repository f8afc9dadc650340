from __future__ import annotations

import math

import pytest
import torch

from migalab.tasks.metrics import compute_metrics


def test_metrics_on_hand_made_predictions() -> None:
    # 3 classes present in targets (0, 1, 2), class 3 never occurs nor is predicted
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0])
    scores = torch.nn.functional.one_hot(pred, 4).float()
    m = compute_metrics(scores, labels, num_classes=4, class_names=["a", "b", "c", "d"])
    assert m["top1"] == pytest.approx(6 / 8)
    assert m["mean_class_acc"] == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    # F1: a: p=3/4 r=3/4; b: p=2/3 r=1; c: p=1 r=1/2 ; d ignored (no tp/fp/fn)
    f1 = [0.75, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3, rel=1e-5)
    assert m["per_class_acc"]["a"] == pytest.approx(0.75)
    assert math.isnan(m["per_class_acc"]["d"])
    assert m["support"] == {"a": 4, "b": 2, "c": 2, "d": 0}
    assert m["top5"] == 1.0


def test_top5_counts_label_in_top_five() -> None:
    scores = torch.tensor([[6.0, 5, 4, 3, 2, 1, 0], [0.0, 1, 2, 3, 4, 5, 6]])
    labels = torch.tensor([4, 0])  # rank 5 and rank 7
    m = compute_metrics(scores, labels, num_classes=7)
    assert m["top5"] == pytest.approx(0.5)
    assert m["top1"] == 0.0
