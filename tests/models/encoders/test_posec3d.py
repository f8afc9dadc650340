import pytest
import torch
import torch.nn.functional as F

from migalab.models.encoders.output import EncoderOutput
from migalab.models.encoders.posec3d import Bottleneck3d, SlowOnly
from migalab.models.heads import ClassificationHead


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def expected_num_params(
    c_in: int, base: int = 32, blocks=(4, 6, 3), inflate=(0, 1, 1), k1: int = 49
) -> int:
    """ResNet3dSlowOnly parameter count from the architecture (bias-free convs + BN affine)."""
    total = c_in * base * k1 + 2 * base  # stem conv (1, 7, 7) + BN
    inplanes = base
    for i, (nb, inf) in enumerate(zip(blocks, inflate, strict=True)):
        p = base * 2**i
        for b in range(nb):
            c = inplanes if b == 0 else 4 * p
            total += c * p * (3 if inf else 1) + 2 * p  # conv1 (3,1,1) | 1x1x1
            total += p * p * 9 + 2 * p  # conv2 (1, 3, 3)
            total += p * 4 * p + 8 * p  # conv3 1x1x1
            if b == 0:
                total += c * 4 * p + 8 * p  # downsample 1x1x1
        inplanes = 4 * p
    return total


def test_parameter_count_matches_pyskl():
    model = SlowOnly(17)
    assert model.out_channels == 512
    assert n_params(model) == expected_num_params(17) == 1_994_080
    assert abs(n_params(model) - 2.0e6) <= 0.05 * 2.0e6  # pyskl: ~2.0 M
    assert n_params(SlowOnly(41)) == expected_num_params(41) == 2_031_712
    assert n_params(SlowOnly(17, base_channels=16)) == expected_num_params(17, 16) == 508_336


def test_module_names_follow_pyskl():
    keys = set(SlowOnly(17).state_dict())
    for k in (
        "conv1.conv.weight",
        "conv1.bn.running_mean",
        "layer1.0.conv1.conv.weight",
        "layer1.0.downsample.conv.weight",
        "layer1.0.downsample.bn.weight",
        "layer3.2.conv3.bn.bias",
    ):
        assert k in keys
    model = SlowOnly(17)
    assert model.layer1[0].conv1.conv.kernel_size == (1, 1, 1)
    assert model.layer2[0].conv1.conv.kernel_size == (3, 1, 1)
    assert model.layer2[0].conv1.conv.padding == (1, 0, 0)
    assert model.layer3[0].conv2.conv.stride == (2, 2, 2)
    assert model.layer3[0].downsample.conv.stride == (2, 2, 2)
    assert model.layer1[0].conv2.conv.stride == (1, 2, 2)
    assert model.layer1[1].downsample is None
    assert model.maxpool.stride == (1, 1, 1)


def test_train_shape_56():
    model = SlowOnly(17).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 17, 48, 56, 56))
    assert isinstance(out, EncoderOutput) and out.aux == {}
    assert out.tokens.shape == (1, 24 * 7 * 7, 512)
    assert out.pooled.shape == (1, 512)
    assert model.output_shape(48, 56, 56) == (24, 7, 7)
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))
    assert out.time.shape == out.space.shape == (24 * 49,)
    torch.testing.assert_close(out.time[::49], (torch.arange(24) + 0.5) / 24)
    assert out.space.tolist() == list(range(49)) * 24 and model.spatial_positions is None


def test_eval_shape_64_and_41_channels():
    model = SlowOnly(41).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 41, 48, 64, 64))
    assert out.tokens.shape == (1, 24 * 8 * 8, 512) and out.pooled.shape == (1, 512)
    assert model.output_shape(48, 64, 64) == (24, 8, 8)


def test_limb_stream_channels():
    from migalab.data.skeleton.layouts import get_layout

    num_limbs = len(get_layout("body_face41").limbs)
    model = SlowOnly(num_limbs, base_channels=8, stage_blocks=(1, 1, 1))
    out = model(torch.randn(2, num_limbs, 8, 32, 32))
    assert out.tokens.shape == (2, 4 * 4 * 4, 128) and out.pooled.shape == (2, 128)


@pytest.mark.parametrize("base", [8, 16])
def test_small_variant_and_odd_sizes(base):
    model = SlowOnly(17, base_channels=base, stage_blocks=(1, 1, 1), dropout=0.5)
    assert model.out_channels == 16 * base
    x = torch.randn(2, 17, 9, 30, 27)
    out = model(x)
    assert model.output_shape(9, 30, 27) == (5, 4, 4)
    assert out.tokens.shape == (2, 5 * 4 * 4, 16 * base)
    assert out.pooled.shape == (2, 16 * base)


def test_options_change_the_stem():
    model = SlowOnly(5, base_channels=4, stage_blocks=(1, 1), spatial_strides=(1, 2),
                     temporal_strides=(1, 1), inflate=(1, 0), conv1_stride=(1, 2),
                     pool1_stride=(1, 2), with_pool=False)  # fmt: skip
    assert isinstance(model.maxpool, torch.nn.Identity)
    tokens = model(torch.randn(1, 5, 6, 32, 32)).tokens
    assert model.output_shape(6, 32, 32) == (6, 8, 8) and tokens.shape == (1, 6 * 8 * 8, 32)
    with pytest.raises(ValueError, match="entries"):
        SlowOnly(5, stage_blocks=(1, 1), spatial_strides=(2, 2, 2))


def test_init_zeroes_last_bn_of_each_block():
    model = SlowOnly(17, base_channels=8)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck3d)]
    assert len(blocks) == 13
    assert all(torch.all(b.conv3.bn.weight == 0) for b in blocks)
    assert torch.all(model.conv1.bn.weight == 1) and torch.all(blocks[0].conv1.bn.weight == 1)
    # zero-init residual: every block starts as its shortcut (+ ReLU)
    b = blocks[1].eval()
    x = torch.randn(1, 32, 2, 4, 4)
    torch.testing.assert_close(b(x), F.relu(x))


def test_backward_reaches_every_parameter():
    torch.manual_seed(0)
    model = SlowOnly(17, base_channels=8, stage_blocks=(1, 2, 1))
    for m in model.modules():  # zero-init gammas would leave the residual-branch grads at 0
        if isinstance(m, Bottleneck3d):
            torch.nn.init.constant_(m.conv3.bn.weight, 0.5)
    head = ClassificationHead(model.out_channels, 4, dropout=0.5)
    x = torch.rand(4, 17, 8, 24, 24)
    loss = F.cross_entropy(head(model(x).pooled), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_wrong_input_gives_clear_error():
    model = SlowOnly(17, base_channels=8, stage_blocks=(1, 1, 1))
    with pytest.raises(ValueError, match=r"\(N, C, T, H, W\)"):
        model(torch.randn(2, 17, 8, 32))
    with pytest.raises(ValueError, match="C=17"):
        model(torch.randn(2, 41, 8, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, T, C, H, W\)"):
        model(torch.randn(2, 8, 17, 32, 32))


def test_init_from_a_pyskl_checkpoint(tmp_path, caplog) -> None:
    """A released pyskl PoseC3D checkpoint (mmcv format: ``meta`` + ``state_dict`` with
    ``backbone.*`` and ``cls_head.*`` keys) initialises the encoder: every backbone tensor that
    fits loads; the first conv of a 17-joint model does not fit 22 joints and the head is not the
    encoder's, both reported; a file with nothing that fits is an error."""
    import logging

    import torch

    from migalab.models.encoders.posec3d import SlowOnly
    from migalab.models.finetune import load_encoder_weights, load_initial_weights

    torch.manual_seed(0)
    coco = SlowOnly(in_channels=17, base_channels=8, stage_blocks=(1, 1, 1))
    released = {
        "meta": {"mmcv_version": "1.5.0", "config": "model = dict(type='Recognizer3D', ...)",
                 "CLASSES": None},
        "state_dict": {**{f"backbone.{k}": v for k, v in coco.state_dict().items()},
                       "cls_head.fc_cls.weight": torch.randn(60, 32),
                       "cls_head.fc_cls.bias": torch.randn(60)},
    }  # fmt: skip
    path = tmp_path / "slowonly_r50_ntu60_xsub_joint.pth"
    torch.save(released, path)

    ours = SlowOnly(in_channels=22, base_channels=8, stage_blocks=(1, 1, 1), init=str(path))
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    model = torch.nn.Module()
    model.encoder = ours  # as in a model config: the task's encoder
    with caplog.at_level(logging.WARNING):
        assert load_initial_weights(model) == [f"encoder <- {path}"]
    report = load_encoder_weights(SlowOnly(in_channels=22, base_channels=8,
                                           stage_blocks=(1, 1, 1)), path)  # fmt: skip
    assert report.prefix == "backbone." and report.unused == ["cls_head.fc_cls.bias",
                                                             "cls_head.fc_cls.weight"]  # fmt: skip
    assert report.mismatched == ["conv1.conv.weight (8, 17, 1, 7, 7) vs (8, 22, 1, 7, 7)"]
    assert not report.missing and not report.unexpected
    assert report.loaded == len(before) - 1
    theirs = coco.state_dict()
    for k, v in ours.state_dict().items():
        if k == "conv1.conv.weight":
            assert torch.equal(v, before[k])  # kept as initialised
        else:
            assert torch.equal(v, theirs[k]), k
    assert "shape mismatch" in caplog.text and "cls_head.fc_cls.weight" in caplog.text

    other = tmp_path / "agcn_like.pth"
    torch.save({"state_dict": {"backbone.gcn.weight": torch.zeros(3)}}, other)
    with pytest.raises(ValueError, match="nothing in .* fits"):
        load_encoder_weights(ours, other, "encoder")
