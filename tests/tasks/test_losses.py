from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from migalab.tasks.losses import ClassificationLoss, class_weights


def test_class_weights_modes() -> None:
    counts = [100, 10, 0, 1]
    w_inv = class_weights(counts, "inverse")
    assert w_inv[2] == 0  # absent class gets no weight
    assert w_inv[3] > w_inv[1] > w_inv[0]
    assert w_inv[[0, 1, 3]].mean() == pytest.approx(1.0, rel=1e-5)
    w_eff = class_weights(counts, "effective", beta=0.99)
    assert w_eff[3] > w_eff[1] > w_eff[0]
    # effective number with beta -> 0 gives equal weights
    assert torch.allclose(class_weights(counts, "effective", beta=0.0)[[0, 1, 3]], torch.ones(3))
    assert torch.equal(class_weights(counts, "none"), torch.ones(4))
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights(counts, "bogus")


def test_ce_matches_torch_and_uses_weights() -> None:
    logits, target = torch.randn(6, 4), torch.tensor([0, 1, 3, 3, 1, 0])
    plain = ClassificationLoss("ce")
    assert plain(logits, target) == pytest.approx(float(F.cross_entropy(logits, target)))
    weighted = ClassificationLoss("ce", class_balance="inverse")
    weighted.set_class_counts([100, 10, 0, 1])
    ref = F.cross_entropy(logits, target, weight=class_weights([100, 10, 0, 1], "inverse"))
    assert weighted(logits, target) == pytest.approx(float(ref), rel=1e-5)


def test_focal_reduces_to_ce_at_gamma_zero_and_downweights_easy() -> None:
    logits, target = torch.randn(8, 5), torch.randint(0, 5, (8,))
    focal0 = ClassificationLoss("focal", gamma=0.0)
    assert focal0(logits, target) == pytest.approx(float(F.cross_entropy(logits, target)), rel=1e-5)
    easy = torch.tensor([[10.0, 0.0]])
    assert ClassificationLoss("focal", gamma=2.0)(easy, torch.tensor([0])) < F.cross_entropy(
        easy, torch.tensor([0])
    )
    with pytest.raises(ValueError):
        ClassificationLoss("hinge")


def test_logit_adjusted_loss_by_hand() -> None:
    loss = ClassificationLoss(label_smoothing=0.0, logit_adjustment=1.0)
    logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([1])
    with pytest.raises(RuntimeError, match="class counts"):
        loss(logits, target)
    loss.set_class_counts(torch.tensor([80, 20, 0]))  # an unseen class counts as one clip
    prior = torch.tensor([80.0, 20.0, 1.0]) / 101
    expected = F.cross_entropy(logits + prior.log(), target)
    torch.testing.assert_close(loss(logits, target), expected)
    # rare classes need a margin: the adjusted loss of a rare true class is larger
    assert loss(logits, target) > F.cross_entropy(logits, target)
    loss.eval()  # evaluation: the plain loss on the raw logits
    torch.testing.assert_close(loss(logits, target), F.cross_entropy(logits, target))
