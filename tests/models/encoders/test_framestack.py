"""FrameStack2D encoder: shapes and token layout, the frames as the first layer's channels,
pretrained weights from a local file (first convolution adapted to 3·T channels, classifier
dropped, errors), fine-tuning, memorisation, the token fusion, Hydra. Nothing is downloaded."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import hydra
import pytest
import timm
import torch
from torch import nn

from migalab.models.encoders.agcn import AGCN
from migalab.models.encoders.framestack import FrameStack2D
from migalab.models.finetune import load_initial_weights
from migalab.models.fusion import CrossModalTokenFusion
from migalab.models.fusion.streams import FusedEncoders
from migalab.utils.checkpoints import check_config_targets
from migalab.utils.hydra import compose_config, resolved_container

CLIP = (3, 4, 64, 64)  # (C, T, H, W)


def _load(enc: FrameStack2D) -> list[str]:
    """What a fresh fit loads into a model holding ``enc`` as its encoder."""
    return load_initial_weights(nn.ModuleDict({"encoder": enc}))


def test_shapes_and_token_layout() -> None:
    enc = FrameStack2D("resnet10t", temporal_size=4, spatial_size=64).eval()
    assert enc.out_channels == 512 and enc.grid == (2, 2) and enc.spatial_positions == 4
    with torch.no_grad():
        out = enc(torch.randn(2, *CLIP))
    assert out.tokens.shape == (2, 4, 512) and out.pooled.shape == (2, 512)
    assert torch.allclose(out.pooled, out.tokens.mean(dim=1))
    # one temporal position (every token covers the clip), space h'·W' + w'
    assert out.time.tolist() == [0.5] * 4 and out.space.tolist() == [0, 1, 2, 3]
    assert out.num_global == 0 and out.num_frames == 1 and out.aux == {}
    # 96² (the sight render's clip) -> 3 × 3 grid
    enc96 = FrameStack2D("resnet10t", temporal_size=4, spatial_size=96).eval()
    with torch.no_grad():
        assert enc96(torch.randn(1, 3, 4, 96, 96)).tokens.shape == (1, 9, 512)


def test_frames_are_the_first_layers_channels() -> None:
    """Every frame reaches the output (a change in the last frame only changes it), and the
    first convolution takes 3·T channels in frame-major order: channel t·3 + c is frame t's
    colour c (the order in which timm's adapt_input_conv repeats RGB filters)."""
    torch.manual_seed(0)
    enc = FrameStack2D("resnet10t", temporal_size=4, spatial_size=64).eval()
    first = enc.backbone.conv1[0] if isinstance(enc.backbone.conv1, nn.Sequential) else None
    assert first is not None and first.in_channels == 12
    x = torch.randn(1, *CLIP)
    y = x.clone()
    y[:, :, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(enc(x).pooled, enc(y).pooled)
        ref = enc.backbone.forward_features(x.transpose(1, 2).flatten(1, 2))
        assert torch.allclose(enc(x).tokens, ref.flatten(2).transpose(1, 2))


def test_wrong_clip_is_refused() -> None:
    enc = FrameStack2D("resnet10t", temporal_size=4, spatial_size=64)
    with pytest.raises(ValueError, match=r"expects \(B, 3, 4, H, W\)"):
        enc(torch.randn(1, 3, 8, 64, 64))  # T is fixed by the first layer
    with pytest.raises(ValueError, match="expects"):
        enc(torch.randn(1, 12, 64, 64))
    with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
        FrameStack2D("no_such_net", temporal_size=4)
    with pytest.raises(ValueError, match="in_channels"):
        FrameStack2D("resnet10t", temporal_size=4, in_channels=0)


@pytest.fixture(scope="module")
def timm_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """A 3-channel timm resnet10t with its 1000-class classifier, saved as a state dict."""
    torch.manual_seed(0)
    ref = timm.create_model("resnet10t", pretrained=False).eval()
    path = tmp_path_factory.mktemp("timm") / "resnet10t-random.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def test_pretrained_file_is_adapted_to_the_stacked_frames(
    timm_file: tuple[nn.Module, Path],
) -> None:
    ref, path = timm_file
    enc = FrameStack2D("resnet10t", temporal_size=4, spatial_size=64, pretrained=str(path))
    loaded = _load(enc)
    assert loaded and "resnet10t" in " ".join(loaded)
    ours, theirs = enc.backbone.state_dict(), ref.state_dict()
    w3, w12 = theirs["conv1.0.weight"], ours["conv1.0.weight"]
    assert w12.shape == (w3.shape[0], 12, *w3.shape[2:])
    # timm's adapt_input_conv: the RGB filters repeated over the frames, scaled by 3 / 12
    assert torch.allclose(w12, w3.repeat(1, 4, 1, 1) * 3 / 12)
    # every other weight is the file's; the classifier is dropped
    for key, value in ours.items():
        if key != "conv1.0.weight":
            assert torch.equal(value, theirs[key]), key
    assert not any(k.startswith("fc.") for k in ours)
    # a still image repeated over the frames gives the 3-channel network's features
    img = torch.randn(1, 3, 64, 64)
    enc.eval()
    with torch.no_grad():
        got = enc(img[:, :, None].expand(1, 3, 4, 64, 64).contiguous()).tokens
        want = ref.forward_features(img).flatten(2).transpose(1, 2)
    assert torch.allclose(got, want, atol=1e-4)


def test_pretrained_errors_are_clear(timm_file: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = timm_file
    enc = FrameStack2D("resnet10t", temporal_size=4, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        _load(enc)
    other = FrameStack2D("resnet18", temporal_size=4, pretrained=str(path))
    with pytest.raises(ValueError, match="does not match timm 'resnet18'"):
        _load(other)
    # a file that is not plain data is refused by weights_only loading
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.0.weight": torch.zeros(1), "f": print}, evil)
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported"):
        _load(FrameStack2D("resnet10t", temporal_size=4, pretrained=str(evil)))


def test_finetune_modes() -> None:
    frozen = FrameStack2D("resnet10t", temporal_size=4, finetune="frozen")
    assert not any(p.requires_grad for p in frozen.parameters())
    partial = FrameStack2D("resnet10t", temporal_size=4, finetune="partial", trainable_blocks=1)
    train = {n.split(".")[1] for n, p in partial.named_parameters() if p.requires_grad}
    assert train == {"layer4"}
    partial.train()
    assert not partial.backbone.layer1.training and partial.backbone.layer4.training


def test_memorises_sixteen_random_clips() -> None:
    torch.manual_seed(0)
    enc = FrameStack2D("resnet10t", temporal_size=4, spatial_size=32)
    head = nn.Linear(enc.out_channels, 4)
    x, y = torch.randn(16, 3, 4, 32, 32), torch.arange(16) % 4
    opt = torch.optim.AdamW([*enc.parameters(), *head.parameters()], lr=1e-3)
    for _ in range(30):
        loss = nn.functional.cross_entropy(head(enc(x).pooled), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    with torch.no_grad():
        assert (head(enc(x).pooled).argmax(1) == y).all()


def test_framestack_is_a_token_fusion_stream() -> None:
    torch.manual_seed(0)
    fusion = FusedEncoders(
        {"rgb": FrameStack2D("resnet10t", temporal_size=4, spatial_size=64),
         "joint": AGCN(layout="imigue22", base_channels=4, num_units=5)},
        partial(CrossModalTokenFusion, num_classes=32, dim=32, depth=1, heads=4, dropout=0.0,
                modality_dropout=0.0),
    ).eval()  # fmt: skip
    assert fusion.neck.spatial_embed["rgb"].shape == (4, 32)
    x = {"rgb": torch.randn(2, *CLIP), "joint": torch.randn(2, 3, 8, 22, 1)}
    with torch.no_grad():
        out = fusion(x)
    assert out.tokens.shape == (2, 1 + 4 + 4 * 22, 32) and out.pooled.shape == (2, 32)
    assert bool(torch.isfinite(out.tokens).all())


def test_hydra_config_composes_and_instantiates(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=framestack_rgb_synth"], output_dir=tmp_path)
    model = hydra.utils.instantiate(cfg.model)
    enc = model.encoder
    assert isinstance(enc, FrameStack2D) and enc.backbone_name == "resnet10t"
    assert enc.temporal_size == cfg.data.video.num_frames
    assert enc.spatial_size == (cfg.data.video.size,) * 2 and enc.pretrained is None
    assert model.head.fc.in_features == 512
    check_config_targets(resolved_container(cfg)["model"], "framestack")  # a checkpoint may
