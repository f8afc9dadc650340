from pathlib import Path

import pytest
import torch
import torchvision.models._api as tv_api
from torchvision.models.video import MViT, mvit_v2_s

from migalab.models.encoders.mvit import (
    MVIT_PRESETS,
    MVITV2_FLAGS,
    MViTEncoder,
    interpolate_rel_pos,
    stage_block_setting,
    torchvision_mvit_v2_s_block_setting,
)
from migalab.models.encoders.output import EncoderOutput

S = MVIT_PRESETS["s"]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def tv_model() -> MViT:
    torch.manual_seed(0)
    return mvit_v2_s()


@pytest.fixture(scope="module")
def tv_file(tv_model: MViT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mvit") / "mvit_v2_s_random.pth"
    torch.save(tv_model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def s_encoder() -> MViTEncoder:
    torch.manual_seed(1)
    return MViTEncoder("s")


def test_stage_config_reproduces_torchvision_mvit_v2_s():
    recorded = torchvision_mvit_v2_s_block_setting()
    assert len(recorded) == 16
    assert recorded == stage_block_setting(S["depths"], S["dims"], S["num_heads"], S["kv_stride"])
    flags = {}

    def record(*, cnf, **kwargs):
        flags.update({k: kwargs[k] for k in MVITV2_FLAGS})
        return torch.nn.Identity()

    mvit_v2_s(block=record)
    assert flags == MVITV2_FLAGS
    with pytest.raises(ValueError, match="one entry per stage"):
        stage_block_setting((1, 1), (8,), (1,))
    with pytest.raises(ValueError, match="divisible"):
        stage_block_setting((1,), (10,), (3,))


def test_s_preset_is_torchvision_without_head(s_encoder: MViTEncoder, tv_model: MViT):
    assert s_encoder.is_torchvision_s and len(s_encoder.blocks) == 16
    head = n_params(tv_model.head)
    assert n_params(tv_model) == 34_537_744  # torchvision's documented count (with head)
    assert abs(n_params(s_encoder) - (n_params(tv_model) - head)) <= 0.01 * n_params(tv_model)
    assert n_params(s_encoder) == n_params(tv_model) - head == 34_230_144
    tv_shapes = {k: v.shape for k, v in tv_model.state_dict().items() if not k.startswith("head.")}
    assert {k: v.shape for k, v in s_encoder.state_dict().items()} == tv_shapes
    assert s_encoder.out_channels == 768
    assert s_encoder.token_grid(16, 224, 224) == (8, 7, 7) == s_encoder.grid
    assert s_encoder.num_tokens == 393


def test_s_preset_forward_shapes(s_encoder: MViTEncoder):
    s_encoder.eval()
    with torch.no_grad():
        out = s_encoder(torch.randn(1, 3, 16, 224, 224))
    assert out.tokens.shape == (1, 393, 768) and out.pooled.shape == (1, 768)
    torch.testing.assert_close(out.pooled, out.tokens[:, 0])
    assert out.time.shape == out.space.shape == (393,) and s_encoder.spatial_positions == 49


@pytest.mark.parametrize("t", [8, 16])
def test_xs_shapes(t: int):
    torch.manual_seed(0)
    enc = MViTEncoder("xs", temporal_size=t, spatial_size=64)
    out = enc(torch.randn(2, 3, t, 64, 64))
    assert isinstance(out, EncoderOutput) and out.aux == {}
    tokens, pooled = out.tokens, out.pooled
    grid = (t // 2, 2, 2)
    assert enc.token_grid(t, 64, 64) == grid == enc.grid
    assert tokens.shape == (2, 1 + t // 2 * 4, 384) == (2, enc.num_tokens, enc.out_channels)
    assert pooled.shape == (2, 384)
    torch.testing.assert_close(pooled, tokens[:, 0])
    # class token: time and space -1; then the (t', h'w') grid, time-major
    assert out.time[0] == -1 and out.space[0] == -1
    torch.testing.assert_close(out.time[1::4], (torch.arange(t // 2) + 0.5) / (t // 2))
    assert out.space[1:].tolist() == list(range(4)) * (t // 2) and enc.spatial_positions == 4
    pooled.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_xs_non_square_and_explicit_stages():
    enc = MViTEncoder(
        "xs", temporal_size=4, spatial_size=(64, 96), depths=(1, 2), dims=(16, 32), num_heads=(1, 2)
    )
    assert len(enc.blocks) == 3 and enc.out_channels == 32
    assert enc.grid == (2, 8, 12)
    tokens = enc(torch.randn(1, 3, 4, 64, 96)).tokens
    assert tokens.shape == (1, 1 + 2 * 8 * 12, 32)


def test_wrong_sizes_raise():
    enc = MViTEncoder("xs")
    with pytest.raises(ValueError, match="built for"):
        enc(torch.randn(1, 3, 16, 64, 64))
    with pytest.raises(ValueError, match="built for"):
        enc(torch.randn(1, 3, 8, 96, 96))
    with pytest.raises(ValueError, match="built for"):
        enc(torch.randn(3, 8, 64, 64))
    with pytest.raises(ValueError, match="does not tile"):
        MViTEncoder("xs", spatial_size=80)
    with pytest.raises(ValueError, match="does not tile"):
        MViTEncoder("xs", temporal_size=7)
    with pytest.raises(ValueError, match="unknown MViT preset"):
        MViTEncoder("b")


def test_forward_equals_torchvision_mvit_forward():
    """Same weights: the encoder's class token == torchvision ``MViT.forward`` without head."""
    torch.manual_seed(0)
    xs = MVIT_PRESETS["xs"]
    setting = stage_block_setting(xs["depths"], xs["dims"], xs["num_heads"], xs["kv_stride"])
    tv = MViT((64, 64), 8, setting, **MVITV2_FLAGS).eval()
    tv.head = torch.nn.Identity()
    enc = MViTEncoder("xs").eval()
    enc.load_state_dict({k: v for k, v in tv.state_dict().items() if not k.startswith("head.")})
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(enc(x).pooled, tv(x))


def test_load_torchvision_file_into_s(s_encoder: MViTEncoder, tv_model: MViT, tv_file: Path):
    s_encoder.load_pretrained(str(tv_file))
    for k, v in s_encoder.state_dict().items():
        assert torch.equal(v, tv_model.state_dict()[k]), k


def _loaded(*args, **kwargs) -> MViTEncoder:
    """An encoder with its ``pretrained`` weights loaded, as a fresh fit does."""
    enc = MViTEncoder(*args, **kwargs)
    assert enc.load_initial_weights() == [f"MViT <- {kwargs['pretrained']}"]
    return enc


def test_load_wrapped_prefixed_file(tmp_path: Path):
    torch.manual_seed(0)
    src = MViTEncoder("xs")
    state = {f"module.backbone.{k}": v for k, v in src.state_dict().items()}
    state["module.head.1.weight"] = torch.zeros(5, 384)  # a head: ignored
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    dst = _loaded("xs", pretrained=str(path))
    for k, v in dst.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    torch.save({"model": src.state_dict()}, path)
    assert torch.equal(_loaded("xs", pretrained=str(path)).norm.weight, src.norm.weight)


def test_load_into_other_clip_size_interpolates_rel_pos(tv_model: MViT, tv_file: Path):
    enc = _loaded("s", temporal_size=8, spatial_size=96, pretrained=str(tv_file))
    src = tv_model.state_dict()
    own = enc.state_dict()
    resized = 0
    for k, v in own.items():
        if k.rsplit(".", 1)[-1] in ("rel_pos_h", "rel_pos_w", "rel_pos_t"):
            if v.shape != src[k].shape:
                resized += 1
                torch.testing.assert_close(v, interpolate_rel_pos(src[k], v.shape[0]))
            else:
                assert torch.equal(v, src[k])
        else:
            assert torch.equal(v, src[k]), k
    # T'=4: rel_pos_t 15 -> 7 rows; 96²: 24² first-stage grid, rel_pos_h/w 111 -> 47 rows ...
    assert own["blocks.0.attn.rel_pos_t"].shape == (7, 96)
    assert src["blocks.0.attn.rel_pos_h"].shape == (111, 96)
    assert own["blocks.0.attn.rel_pos_h"].shape == (47, 96)
    assert resized == 3 * 16
    enc.eval()
    with torch.no_grad():
        tokens = enc(torch.randn(1, 3, 8, 96, 96)).tokens
    assert tokens.shape == (1, 1 + 4 * 3 * 3, 768)


def test_interpolate_rel_pos_is_linear():
    table = torch.arange(5.0).unsqueeze(1).repeat(1, 3)  # (5, 3), rows 0..4
    out = interpolate_rel_pos(table, 9)
    assert out.shape == (9, 3)
    torch.testing.assert_close(out[:, 0], out[:, 2])
    assert torch.all(out[1:, 0] >= out[:-1, 0]) and out[0, 0] == 0 and out[-1, 0] == 4
    assert interpolate_rel_pos(table, 5) is table


def test_bad_files_raise_clear_errors(tmp_path: Path):
    src = MViTEncoder("xs").state_dict()
    state = {k: v for k, v in src.items() if not k.startswith("blocks.4.")}
    state["blocks.9.attn.qkv.weight"] = torch.zeros(3, 3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="broken.pth") as err:
        _loaded("xs", pretrained=str(path))
    msg = str(err.value)
    assert "missing keys (26): blocks.4." in msg and "(+14 more)" in msg
    assert "unexpected keys (1): blocks.9.attn.qkv.weight" in msg
    state = dict(src)
    state["norm.weight"] = torch.zeros(7)
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"shape mismatches \(1\): norm.weight"):
        _loaded("xs", pretrained=str(path))
    # the file is read when a fresh fit loads it, not to build the model (eval, resume)
    named = MViTEncoder("xs", pretrained=str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        named.load_initial_weights()
    torch.save([1, 2], path)
    with pytest.raises(ValueError, match="state dict of tensors"):
        _loaded("xs", pretrained=str(path))


def test_kinetics_weights(s_encoder: MViTEncoder, tv_model: MViT, monkeypatch):
    with pytest.raises(ValueError, match="only for preset 's'"):
        MViTEncoder("xs", pretrained="kinetics400")

    def offline(url, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"mvit_v2_s-ae3be167\.pth.*pretrained=") as err:
        s_encoder.load_pretrained("kinetics400")
    assert "network unreachable" in str(err.value)

    urls = []

    def fake_hub(url, *args, **kwargs):  # the download, with a random-weight torchvision model
        urls.append(url)
        return tv_model.state_dict()

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", fake_hub)
    s_encoder.load_pretrained("kinetics400")
    assert urls == ["https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth"]
    assert torch.equal(s_encoder.blocks[7].attn.qkv.weight, tv_model.blocks[7].attn.qkv.weight)


def _run(enc: MViTEncoder, x: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    enc.zero_grad()
    out = enc(x)
    tokens, pooled = out.tokens, out.pooled
    (tokens.pow(2).mean() + pooled.sum()).backward()
    return tokens.detach(), {n: p.grad.clone() for n, p in enc.named_parameters()}


def test_grad_checkpointing_same_outputs_and_gradients():
    torch.manual_seed(0)
    enc = MViTEncoder("xs", drop_path=0.3).train()
    x = torch.randn(2, 3, 8, 64, 64)
    ref_tokens, ref_grads = _run(enc, x, seed=5)
    calls = []
    hooks = [b.register_forward_pre_hook(lambda *a: calls.append(1)) for b in enc.blocks]
    enc.grad_checkpointing = True
    tokens, grads = _run(enc, x, seed=5)
    assert len(calls) == 2 * len(enc.blocks)  # + recompute in backward
    torch.testing.assert_close(tokens, ref_tokens)
    for n, g in ref_grads.items():
        torch.testing.assert_close(grads[n], g, msg=n)
    calls.clear()
    enc.eval()
    with torch.no_grad():
        enc(x)
    assert len(calls) == len(enc.blocks)  # no checkpointing in eval
    for h in hooks:
        h.remove()


def test_drop_path_schedule():
    enc = MViTEncoder("xs", drop_path=0.4)
    probs = [b.stochastic_depth.p for b in enc.blocks]
    assert probs[0] == 0.0 and probs[-1] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="drop_path"):
        MViTEncoder("xs", drop_path=1.0)
