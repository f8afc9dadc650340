import pytest
import torch
import torch.nn.functional as F

from migalab.models.encoders import AGCN, EncoderOutput
from migalab.models.encoders.agcn import (
    DEFAULT_CHANNEL_MULTIPLIERS,
    DEFAULT_STRIDES,
    AdaptiveGraphConv,
)
from migalab.models.heads import ClassificationHead


def expected_num_params(
    v: int,
    c_in: int = 3,
    m: int = 1,
    base: int = 64,
    mults=DEFAULT_CHANNEL_MULTIPLIERS,
    strides=DEFAULT_STRIDES,
    k: int = 3,
    coff: int = 4,
    kt: int = 9,
) -> int:
    """2s-AGCN parameter count from the architecture (weights + biases + BN affine)."""
    total = 2 * m * v * c_in  # data BN
    c = c_in
    for i, (mu, s) in enumerate(zip(mults, strides, strict=True)):
        o = base * mu
        e = o // coff
        gcn = k * v * v  # B_k
        gcn += 2 * k * (c * e + e)  # theta_k, phi_k
        gcn += k * (c * o + o)  # W_k
        gcn += (c * o + o + 2 * o) if c != o else 0  # down conv + BN
        gcn += 2 * o  # output BN
        tcn = kt * o * o + o + 2 * o
        res = (c * o + o + 2 * o) if i > 0 and (c != o or s != 1) else 0
        total += gcn + tcn + res
        c = o
    return total


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_full_model_parameter_count():
    model = AGCN("imigue22")
    assert model.out_channels == 256
    assert n_params(model) == expected_num_params(22) == 3_449_692
    assert n_params(AGCN("mg36", num_persons=2)) == expected_num_params(36, m=2)
    assert n_params(AGCN("imigue22", base_channels=16)) == expected_num_params(22, base=16)


@pytest.mark.parametrize("layout,v", [("imigue22", 22), ("mg36", 36)])
@pytest.mark.parametrize("m", [1, 2])
def test_shapes(layout, v, m):
    model = AGCN(layout, num_persons=m, base_channels=8)
    x = torch.randn(2, 3, 32, v, m)
    out = model(x)
    assert isinstance(out, EncoderOutput) and out.aux == {}
    assert out.tokens.shape == (2, 8 * v, 32)  # T' = 8 frames x V joints, averaged over persons
    assert out.pooled.shape == (2, 32) and model.out_channels == 32
    assert model.output_frames(32) == 8 and model.spatial_positions == v
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    assert out.time.shape == out.space.shape == (8 * v,)
    torch.testing.assert_close(out.time[::v], (torch.arange(8) + 0.5) / 8)
    assert out.space.tolist() == list(range(v)) * 8


def test_configurable_units_and_channels():
    model = AGCN(in_channels=2, base_channels=4, num_units=5, temporal_kernel=3, adaptive=False)
    out = model(torch.randn(2, 2, 9, 22, 1))
    assert out.tokens.shape == (2, 5 * 22, 8) and out.pooled.shape == (2, 8)
    assert not hasattr(model.units[0].gcn, "B")
    model = AGCN(base_channels=4, channel_multipliers=(1, 2), strides=(2, 2), dropout=0.5)
    assert model(torch.randn(2, 3, 10, 22, 1)).tokens.shape == (2, 3 * 22, 8)
    with pytest.raises(ValueError, match="differ in length"):
        AGCN(channel_multipliers=(1, 2), strides=(1,))
    with pytest.raises(ValueError, match="odd"):
        AGCN(temporal_kernel=4)
    with pytest.raises(ValueError, match="got input"):
        AGCN(base_channels=4)(torch.randn(1, 3, 8, 25, 1))


def test_gradients_reach_B_theta_phi():
    torch.manual_seed(0)
    model = AGCN(base_channels=8, num_units=3)
    head = ClassificationHead(model.out_channels, 5)
    x = torch.randn(4, 3, 12, 22, 1)
    loss = F.cross_entropy(head(model(x).pooled), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for unit in model.units:
        gcn = unit.gcn
        assert gcn.B.grad is not None and gcn.B.grad.abs().sum() > 0
        assert all(c.weight.grad.abs().sum() > 0 for c in gcn.theta)
        assert all(c.weight.grad.abs().sum() > 0 for c in gcn.phi)
        assert gcn.A.requires_grad is False
    assert "A" in dict(model.units[0].gcn.named_buffers())


def test_pooled_invariant_to_person_order():
    torch.manual_seed(0)
    model = AGCN(num_persons=2, base_channels=8).eval()
    x = torch.randn(2, 3, 16, 22, 2)
    with torch.no_grad():
        out, out_sw = model(x), model(x.flip(-1))
    torch.testing.assert_close(out.pooled, out_sw.pooled)
    torch.testing.assert_close(out.tokens, out_sw.tokens)  # tokens are averaged over persons


def test_init_matches_reference():
    model = AGCN(base_channels=8, num_units=2)
    gcn = model.units[1].gcn
    assert torch.all(gcn.B == 1e-6) and torch.all(gcn.bn.weight == 1e-6)
    assert torch.all(model.units[1].tcn.bn.weight == 1) and torch.all(model.data_bn.weight == 1)
    assert all(torch.all(c.bias == 0) for c in gcn.W)
    assert model.units[0].residual is None


def _reference_unit_gcn(g: AdaptiveGraphConv, x: torch.Tensor) -> torch.Tensor:
    """The 2s-AGCN reference ``unit_gcn.forward`` (loop over subsets)."""
    n, c, t, v = x.shape
    a = g.A + g.B
    y = None
    for i in range(g.num_subsets):
        a1 = g.theta[i](x).permute(0, 3, 1, 2).contiguous().view(n, v, g.inter_channels * t)
        a2 = g.phi[i](x).view(n, g.inter_channels * t, v)
        a1 = torch.softmax(torch.matmul(a1, a2) / a1.size(-1), dim=-2) + a[i]
        z = g.W[i](torch.matmul(x.view(n, c * t, v), a1).view(n, c, t, v))
        y = z if y is None else y + z
    return F.relu(g.bn(y) + g.down(x))


def test_batched_graph_conv_equals_reference_loop():
    torch.manual_seed(0)
    model = AGCN(base_channels=8, num_units=1)
    g = model.units[0].gcn
    torch.nn.init.constant_(g.bn.weight, 1.0)
    with torch.no_grad():
        g.B.normal_(0, 0.1)
    x = torch.randn(3, 3, 7, 22)
    torch.testing.assert_close(g(x), _reference_unit_gcn(g, x), rtol=1e-4, atol=1e-5)
