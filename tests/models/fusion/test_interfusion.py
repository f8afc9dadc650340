"""InterFusion on tiny stand-in encoders (a face stream with SwinFace's one-token-per-frame
contract, a context stream with MViT's class token + grid), plus the real encoders from the
neck's config."""

from __future__ import annotations

from functools import partial

import hydra
import pytest
import torch
from torch import nn

from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.encoders.swinface import SwinFaceEncoder
from migalab.models.fusion import InterFusion
from migalab.models.fusion.streams import FusedEncoders
from migalab.utils.hydra import compose_config

B, T, DIM = 4, 5, 16


class TinyFace(nn.Module):
    """SwinFace stand-in: (B, T, 8) features -> one token per frame, hidden frames zeroed."""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels = 12
        self.fc = nn.Linear(8, 12)

    def forward(self, x: torch.Tensor, visible: torch.Tensor | None = None) -> EncoderOutput:
        z = self.fc(x)
        if visible is not None:
            z = z * visible[..., None]
        t = x.shape[1]
        time = (torch.arange(t, dtype=torch.float32) + 0.5) / t
        return EncoderOutput(z, z.mean(dim=1), time, torch.full((t,), -1))


class TinyContext(nn.Module):
    """MViT stand-in: (B, T', S, 6) -> class token + T'·S grid tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.out_channels = 10
        self.fc = nn.Linear(6, 10)
        self.cls = nn.Parameter(torch.randn(10) * 0.02)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        b, t, s, _ = x.shape
        z = self.fc(x).reshape(b, t * s, -1)
        tokens = torch.cat([self.cls.expand(b, 1, -1) + z.mean(1, keepdim=True), z], dim=1)
        time, space = grid_index(t, s, num_global=1)
        return EncoderOutput(tokens, tokens[:, 0], time, space)


def make(seed: int = 0, **kwargs) -> FusedEncoders:
    """Face + context encoders -> an InterFusion neck, as one module."""
    torch.manual_seed(seed)
    defaults = dict(dim=DIM, depth=2, heads=4, dropout=0.0, stream_dropout=0.0)
    defaults.update(kwargs)
    pool = {"context": defaults.pop("context_pool", "none")}
    encoders = {"face": TinyFace(), "context": TinyContext()}
    return FusedEncoders(encoders, partial(InterFusion, pool=pool, **defaults))


def inputs(seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "face": torch.randn(B, T, 8, generator=g),
        "context": torch.randn(B, 2, 3, 6, generator=g),
    }


def test_shapes_and_token_layout() -> None:
    fusion = make(num_classes=2).eval()
    out = fusion(inputs())
    assert isinstance(out, EncoderOutput) and fusion.out_channels == DIM
    n = T + 1 + 2 * 3
    assert out.tokens.shape == (B, n, DIM) and out.pooled.shape == (B, DIM)
    assert out.time.shape == out.space.shape == (n,)
    assert torch.allclose(out.time[:T], (torch.arange(T) + 0.5) / T) and out.time[T] == -1
    assert set(out.aux) == {"face", "context"} and out.aux["face"].shape == (B, 2)
    pooled = make(context_pool="space").eval()(inputs())
    assert pooled.tokens.shape == (B, T + 1 + 2, DIM)


def test_missing_streams_per_sample() -> None:
    fusion = make().eval()
    x = inputs()
    x["present"] = {
        "face": torch.tensor([True, True, False, False]),
        "context": torch.tensor([True, False, True, False]),
    }
    out = fusion(x)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    assert (out.tokens[1, T:] == 0).all() and (out.tokens[2, :T] == 0).all()
    assert (out.tokens[3] == 0).all()

    # a sample with one stream equals that stream run alone (nothing crosses from the other)
    face_only = fusion({"face": x["face"]})
    ctx_only = fusion({"context": x["context"]})
    assert torch.allclose(out.pooled[1], face_only.pooled[1], atol=1e-5)
    assert torch.allclose(out.pooled[2], ctx_only.pooled[2], atol=1e-5)
    assert face_only.tokens.shape == (B, T, DIM)
    # NaN placeholder inputs of an absent stream cannot leak
    x["context"] = x["context"].clone()
    x["context"][1] = float("nan")
    assert torch.allclose(fusion(x).pooled[[0, 1]], out.pooled[[0, 1]], atol=1e-5)
    # no stream: a learned vector, the same for every such sample
    x["present"]["face"] = torch.zeros(B, dtype=torch.bool)
    x["present"]["context"] = torch.zeros(B, dtype=torch.bool)
    none = fusion(x).pooled
    assert torch.isfinite(none).all() and torch.allclose(none, none[:1].expand_as(none))


def test_hidden_face_frames_are_masked() -> None:
    fusion = make().eval()
    x = inputs()
    visible = torch.ones(B, T, dtype=torch.bool)
    visible[0, 2:] = False
    visible[1] = False  # no face at all: the sample falls back to its context stream
    x["visible"] = {"face": visible}
    out = fusion(x)
    assert (out.tokens[0, 2:T] == 0).all()
    ctx_only = fusion({"context": x["context"]}).pooled
    assert torch.allclose(out.pooled[1], ctx_only[1], atol=1e-5)
    x2 = dict(x, face=x["face"].clone())
    x2["face"][0, 2:] = 100.0  # what a hidden frame holds does not matter
    assert torch.allclose(fusion(x2).pooled, out.pooled, atol=1e-5)


def test_gradients_finite_with_missing_streams() -> None:
    fusion = make(num_classes=2, dropout=0.1).train()
    x = inputs()
    x["present"] = {
        "face": torch.tensor([True, True, False, False]),
        "context": torch.tensor([True, False, True, False]),
    }
    x["visible"] = {"face": torch.tensor([[1, 1, 0, 0, 0]] * 4).bool()}
    out = fusion(x)
    (out.pooled.square().sum() + sum(a.sum() for a in out.aux.values())).backward()
    grads = {n: p.grad for n, p in fusion.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["neck.empty"].abs().sum() > 0  # the no-evidence vector is learned
    assert grads["neck.gate.weight"].abs().sum() > 0  # the gate sees the both-stream sample


def test_stream_dropout_keeps_one_stream() -> None:
    fusion = make(stream_dropout=1.0).train()
    torch.manual_seed(0)
    out = fusion(inputs())
    kept_face = (out.tokens[:, :T] != 0).any(dim=(1, 2))
    kept_ctx = (out.tokens[:, T:] != 0).any(dim=(1, 2))
    assert (kept_face ^ kept_ctx).all()  # all dropped -> exactly one re-enabled per sample


def test_deterministic_under_a_seed() -> None:
    a = make(seed=3, dropout=0.1, stream_dropout=0.3)
    b = make(seed=3, dropout=0.1, stream_dropout=0.3)
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    x = inputs()
    torch.manual_seed(7)
    ya = a.train()(x).pooled
    torch.manual_seed(7)
    yb = b.train()(x).pooled
    assert torch.equal(ya, yb)
    assert torch.equal(a.eval()(x).pooled, b.eval()(x).pooled)
    assert not torch.equal(make(seed=4).eval()(x).pooled, make(seed=5).eval()(x).pooled)


def test_gate_merge_rules() -> None:
    fusion = make()
    f, c = torch.randn(4, DIM), torch.randn(4, DIM)
    has_f = torch.tensor([True, True, False, False])
    has_c = torch.tensor([True, False, True, False])
    m = fusion.neck.merge(f, c, has_f, has_c)
    assert torch.allclose(m[0], 0.5 * (f[0] + c[0]))  # gate starts at 0.5
    assert torch.equal(m[1], f[1]) and torch.equal(m[2], c[2])
    assert torch.equal(m[3], fusion.neck.empty.detach())


def test_input_errors() -> None:
    fusion = make()
    with pytest.raises(ValueError, match="no input stream"):
        fusion({})
    with pytest.raises(ValueError, match="at least one"):
        fusion.neck({})
    with pytest.raises(ValueError, match="unknown"):
        fusion({"face": inputs()["face"], "audio": 1})
    with pytest.raises(ValueError, match="shape"):
        fusion(dict(inputs(), present={"face": torch.ones(3, dtype=torch.bool)}))
    with pytest.raises(ValueError, match="divisible"):
        make(dim=10, heads=4)
    with pytest.raises(ValueError, match="needs the streams"):
        InterFusion({"face": 8})
    with pytest.raises(ValueError, match="unknown"):
        fusion.neck({"face": fusion.encoders["face"](inputs()["face"])},
                    visible={"audio": torch.ones(B, T, dtype=torch.bool)})  # fmt: skip


def test_neck_config_with_real_encoders() -> None:
    """conf/model/neck/interfusion.yaml with the CPU presets: SwinFace crops + MViT clips."""
    p = "model.neck."
    cfg = compose_config(
        "train",
        [
            "experiment=system_b_emotion_synth",
            "model/encoder@model.encoders.context=mvit",
            "model.encoders.context.preset=xs",
            "model.encoders.context.temporal_size=8",
            "model.encoders.context.spatial_size=[64,64]",
            f"{p}dim=32",
            f"{p}heads=4",
            f"{p}depth=1",
            f"{p}num_classes=2",
        ],
    )
    encoders = hydra.utils.instantiate(cfg.model.encoders)
    fusion = FusedEncoders(encoders, hydra.utils.instantiate(cfg.model.neck)).eval()
    assert isinstance(fusion.neck, InterFusion)
    assert isinstance(fusion.encoders.face, SwinFaceEncoder)
    x = {
        "face": torch.randint(0, 256, (2, 2, 3, 112, 112), dtype=torch.uint8),
        "context": torch.randn(2, 3, 8, 64, 64),
        "present": {"context": torch.tensor([True, False])},
        "visible": {"face": torch.tensor([[True, False], [True, True]])},
    }
    with torch.no_grad():
        out = fusion(x)
    assert out.tokens.shape == (2, 2 + 1 + 4, 32) and out.pooled.shape == (2, 32)
    assert torch.isfinite(out.pooled).all() and out.aux["face"].shape == (2, 2)
