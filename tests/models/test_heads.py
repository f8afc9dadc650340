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
