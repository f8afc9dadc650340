import math

import pytest
import torch

from migalab.models.heads import ClassificationHead


def test_shape_and_init():
    torch.manual_seed(0)
    head = ClassificationHead(256, 32, dropout=0.5)
    assert head(torch.randn(4, 256)).shape == (4, 32)
    std = head.fc.weight.std().item()
    assert abs(std - math.sqrt(2 / 32)) < 0.02
    assert torch.all(head.fc.bias == 0)
    head.eval()
    x = torch.randn(2, 256)
    torch.testing.assert_close(head(x), head(x))


def test_bad_input():
    with pytest.raises(ValueError, match="expects"):
        ClassificationHead(8, 3)(torch.randn(2, 8, 1))


def test_init_std_gives_vit_style_small_logits() -> None:
    torch.manual_seed(0)
    features = torch.nn.functional.layer_norm(torch.randn(256, 384), (384,))
    agcn_style = ClassificationHead(384, 32)(features)
    vit_style = ClassificationHead(384, 32, init_std=0.02)(features)
    assert agcn_style.std() > 3.0  # the AGCN init on LayerNorm features: loss far above ln 32
    assert vit_style.std() < 0.5
    assert ClassificationHead(384, 32, init_std=0.02).fc.weight.abs().max() <= 0.04 + 1e-6
