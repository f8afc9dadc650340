"""Tests of CrossModalTokenFusion (a neck) on tiny encoders (a video stand-in with the MViT token
contract, AGCN joint/bone streams, a SlowOnly volume), through FusedEncoders (encoders -> neck,
the routing the recognizer shares)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from migalab.models.encoders.agcn import AGCN
from migalab.models.encoders.output import EncoderOutput, grid_index
from migalab.models.fusion import CrossModalTokenFusion
from migalab.models.fusion.streams import FusedEncoders, build_neck
from migalab.models.heads import ClassificationHead

K = 32
B = 3
VIDEO_SHAPE = (3, 8, 16, 16)  # (C, T, H, W) -> grid (4, 4, 4), 1 + 64 tokens
SKEL_SHAPE = (3, 8, 22, 1)  # (C, T, V, M) -> AGCN with 5 units: T' = 4, 4·22 = 88 tokens
N_VIDEO, N_SKEL = 1 + 64, 4 * 22


class TinyVideoEncoder(nn.Module):
    """MViT stand-in: Conv3d patchify (2, 4, 4) + class token.
    (B, 3, T, H, W) -> tokens (B, 1 + T'·H'·W', C) (class token first), pooled (B, C);
    ``spatial_positions`` = H'·W' of the expected input (None: unknown)."""

    def __init__(self, out_channels: int = 12, spatial_positions: int | None = 16) -> None:
        super().__init__()
        self.out_channels, self.spatial_positions = out_channels, spatial_positions
        self.patch = nn.Conv3d(3, out_channels, (2, 4, 4), stride=(2, 4, 4))
        self.cls = nn.Parameter(torch.randn(1, 1, out_channels) * 0.02)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        z = self.patch(x)  # (B, C, T', H', W')
        _, _, t, h, w = z.shape
        z = z.flatten(2).transpose(1, 2)  # (B, T'H'W', C)
        cls = self.cls.expand(z.shape[0], -1, -1) + z.mean(dim=1, keepdim=True)
        tokens = torch.cat([cls, z], dim=1)
        time, space = grid_index(t, h * w, x.device, num_global=1)
        return EncoderOutput(tokens, tokens[:, 0], time, space)


def agcn() -> AGCN:
    return AGCN(layout="imigue22", base_channels=4, num_units=5)


def make_fusion(
    names: tuple[str, ...] = ("video", "joint", "bone"), seed: int = 0, **kwargs
) -> FusedEncoders:
    """Encoders (video stand-in / AGCN) -> a token-fusion neck, as one module."""
    torch.manual_seed(seed)
    encoders, pool = {}, {}
    for n in names:
        encoders[n] = TinyVideoEncoder() if n == "video" else agcn()
        pool[n] = kwargs.pop(f"{n}_pool", "none")
    defaults = dict(dim=32, depth=1, heads=4, dropout=0.0, modality_dropout=0.0)
    defaults.update(kwargs)
    return FusedEncoders(
        encoders, partial(CrossModalTokenFusion, num_classes=K, pool=pool, **defaults)
    )


def tokens_of(model: FusedEncoders, name: str, x: torch.Tensor) -> EncoderOutput:
    """Stream ``name``'s tokens as the neck reads them (its encoder, then the neck's pooling)."""
    return model.neck.tokens_of(name, model.encoders[name](x))


def make_inputs(names=("video", "joint", "bone"), batch: int = B, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = {}
    for n in names:
        shape = VIDEO_SHAPE if n == "video" else SKEL_SHAPE
        x[n] = torch.randn(batch, *shape, generator=g)
    return x


@pytest.mark.parametrize("names", [("video", "joint"), ("video", "joint", "bone")])
@pytest.mark.parametrize("cross", [False, True])
def test_shapes(names, cross):
    model = make_fusion(names, cross_attention=cross).eval()
    with torch.no_grad():
        out = model(make_inputs(names))
    assert isinstance(out, EncoderOutput)
    tokens, pooled, aux = out.tokens, out.pooled, out.aux
    n = 1 + N_VIDEO + N_SKEL * (len(names) - 1)
    assert tokens.shape == (B, n, 32)
    # the fused tokens keep the modalities' positions: fusion cls, video cls, grids
    assert out.time.shape == out.space.shape == (n,)
    assert out.time[:2].tolist() == [-1, -1] and out.space[:2].tolist() == [-1, -1]
    assert out.space[1 + N_VIDEO :].tolist() == list(range(22)) * 4 * (len(names) - 1)
    assert pooled.shape == (B, 32) and model.out_channels == 32
    assert torch.equal(pooled, tokens[:, 0])
    assert set(aux) == set(names)
    assert all(a.shape == (B, K) for a in aux.values())
    assert torch.isfinite(tokens).all()
    assert len(model.neck.cross_layers) == (1 if cross else 0)


def test_pool_space_token_counts():
    model = make_fusion(video_pool="space", joint_pool="space", bone_pool="none").eval()
    with torch.no_grad():
        out = model(make_inputs())
    tokens = out.tokens
    # video: cls + T'=4; joint: T'=4; bone: 4·22
    assert tokens.shape == (B, 1 + 5 + 4 + N_SKEL, 32)
    assert "video" not in model.neck.spatial_embed and "joint" not in model.neck.spatial_embed
    assert model.neck.spatial_embed["bone"].shape == (22, 32)
    # pool="space" = the mean of each frame's tokens, class token kept first
    enc = model.encoders["joint"]
    x = make_inputs(("joint",))["joint"]
    with torch.no_grad():
        full, pooled = enc(x), tokens_of(model, "joint", x)
    torch.testing.assert_close(pooled.tokens, full.tokens.view(B, 4, 22, -1).mean(dim=2))
    assert pooled.space.tolist() == [-1] * 4 and pooled.time.tolist() == full.time[::22].tolist()
    with torch.no_grad():
        video = tokens_of(model, "video", make_inputs(("video",))["video"])
    assert video.tokens.shape[1] == 5 and video.time[0] == -1 and video.num_global == 1


def test_spatial_embedding_sizes_and_grid_check():
    model = make_fusion(("video", "joint"))
    assert model.neck.spatial_embed["video"].shape == (16, 32)  # the encoder's spatial_positions
    assert model.neck.spatial_embed["joint"].shape == (22, 32)  # AGCN: V
    # An encoder without spatial_positions gets no spatial embedding, unless the neck's
    # configuration sizes it; the pools default to "none".
    video = TinyVideoEncoder(spatial_positions=None)
    encoders = {"video": video, "joint": agcn()}
    bare = build_neck(partial(CrossModalTokenFusion, num_classes=K, dim=32, heads=4), encoders)
    assert bare.pools == {"video": "none", "joint": "none"}
    assert "video" not in bare.spatial_embed and bare.spatial_embed["joint"].shape == (22, 32)
    sized = build_neck(
        partial(CrossModalTokenFusion, num_classes=K, spatial_positions={"video": 20}), encoders
    )
    assert sized.spatial_embed["video"].shape == (20, 256)
    assert sized.spatial_embed["joint"].shape == (22, 256)  # the encoder's own size
    with pytest.raises(ValueError, match="unknown streams"):
        build_neck(partial(CrossModalTokenFusion, num_classes=K, spatial_positions={"x": 4}),
                   encoders)  # fmt: skip
    # A larger run-time grid than the table was sized for is an error.
    with pytest.raises(ValueError, match="spatial positions"):
        model.eval()({"video": torch.randn(1, 3, 8, 32, 32)})


def test_time_bins_shared_and_global_row():
    model = make_fusion(("video", "joint"), time_bins=16)
    assert model.neck.time_embed.shape == (17, 32)
    assert model.neck.time_index(grid_index(4, 1)[0]).tolist() == [2, 6, 10, 14]
    mt = tokens_of(model, "video", torch.randn(1, *VIDEO_SHAPE))
    bins = model.neck.time_index(mt.time)
    assert bins[0] == 16 and mt.space[0] == -1  # class token: the global row
    assert bins[1:].tolist() == [2] * 16 + [6] * 16 + [10] * 16 + [14] * 16
    assert mt.space[1:17].tolist() == list(range(16))
    mg = tokens_of(model, "joint", torch.randn(1, *SKEL_SHAPE))
    assert model.neck.time_index(mg.time).tolist() == [2] * 22 + [6] * 22 + [10] * 22 + [14] * 22
    assert mg.space[:22].tolist() == list(range(22))


@pytest.mark.parametrize("time_bins", [1, 3, 7, 16, 25])
def test_time_index_is_exact(time_bins):
    """The float token times give exactly the integer bins ``⌊(2t' + 1)·bins / (2T')⌋``."""
    model = make_fusion(("joint",), time_bins=time_bins)
    for frames in (1, 2, 3, 5, 6, 7, 9, 12, 16, 24, 48, 96, 250):
        time, _ = grid_index(frames, 3, num_global=1)
        t = torch.arange(frames).repeat_interleave(3)
        expected = [time_bins, *(((2 * t + 1) * time_bins) // (2 * frames)).tolist()]
        assert model.neck.time_index(time).tolist() == expected, frames


@pytest.mark.parametrize("names", [("joint",), ("joint", "bone"), ("video",)])
def test_missing_modalities_at_eval(names):
    model = make_fusion(cross_attention=True).eval()
    head = ClassificationHead(model.out_channels, K)
    with torch.no_grad():
        out = model(make_inputs(names))
        aux, logits = out.aux, head(out.pooled)
    assert logits.shape == (B, K) and torch.isfinite(logits).all()
    assert set(aux) == set(names)


@pytest.mark.parametrize("grad", [False, True])  # eval fast path / regular path
def test_present_mask_invariance_and_all_masked(grad):
    model = make_fusion(cross_attention=True).eval()
    x = make_inputs()
    x["present"] = {
        "video": torch.tensor([True, False, False]),
        "joint": torch.tensor([True, True, False]),
        "bone": torch.tensor([True, True, False]),
    }
    with torch.set_grad_enabled(grad):
        out1 = model(x)
        t1, p1 = out1.tokens, out1.pooled
        x2 = dict(x)
        x2["video"] = x["video"].clone()
        x2["video"][1:] = torch.randn(2, *VIDEO_SHAPE)
        x2["joint"] = x["joint"].clone()
        x2["joint"][2] = float("nan")  # even non-finite placeholders must not leak
        x2["bone"] = x["bone"].clone()
        x2["bone"][2] = 1e3
        out2 = model(x2)
        t2, p2 = out2.tokens, out2.pooled
    t1, p1, t2, p2 = (v.detach() for v in (t1, p1, t2, p2))
    assert torch.isfinite(p1).all() and torch.isfinite(p2).all()
    torch.testing.assert_close(p1, p2, rtol=0, atol=1e-6)
    torch.testing.assert_close(t1, t2, rtol=0, atol=1e-6)
    # masked tokens are zero in the output (sample 1's video tokens, all of sample 2 but cls)
    assert (t1[1, 1 : 1 + N_VIDEO] == 0).all() and (t1[2, 1:] == 0).all()
    # the all-masked sample's pooled is input-independent: equals a model-only constant
    with torch.set_grad_enabled(grad):
        p3 = model({**make_inputs(seed=5), "present": x["present"]}).pooled
    p3 = p3.detach()
    torch.testing.assert_close(p3[2], p1[2], rtol=0, atol=1e-6)


def test_modality_dropout_sampling_never_all_dropped():
    model = make_fusion(modality_dropout=0.9)
    torch.manual_seed(0)
    present = torch.rand(4000, 3) < 0.7
    keep = model.neck.sample_modality_keep(present, torch.full((3,), 0.9))
    assert not (keep & ~present).any()  # only present modalities are kept
    has_any = present.any(dim=1)
    assert keep[has_any].any(dim=1).all()  # never all dropped
    assert not keep[~has_any].any()
    assert keep.sum() < present.sum()  # masks are drawn
    # exactly one survivor is common at p = 0.9, and each modality can be the survivor
    single = keep.sum(dim=1) == 1
    assert single.float().mean() > 0.5 and keep[single].any(dim=0).all()


def test_modality_dropout_train_only():
    model = make_fusion(modality_dropout=0.9)
    x = make_inputs(batch=8)
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        outs = [model(x).pooled for _ in range(4)]
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])
    model.eval()
    ref = make_fusion(modality_dropout=0.0).eval()
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x).pooled, model(x).pooled, rtol=0, atol=0)
        torch.testing.assert_close(model(x).pooled, ref(x).pooled, rtol=0, atol=0)
    # p = 0 in train mode: no randomness (dropout 0, BN in batch-statistics mode)
    ref.train()
    with torch.no_grad():
        torch.testing.assert_close(ref(x).pooled, ref(x).pooled, rtol=0, atol=0)


def test_modality_dropout_mapping_validation():
    model = make_fusion(modality_dropout={"video": 0.5})
    assert model.neck.modality_dropout == {"video": 0.5, "joint": 0.0, "bone": 0.0}
    with pytest.raises(ValueError, match="unknown modalities"):
        make_fusion(modality_dropout={"audio": 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_fusion(modality_dropout=1.5)


def test_the_neck_holds_no_encoder():
    model = make_fusion()
    names = [n for n, _ in model.named_parameters()]
    backbone = [n for n in names if n.startswith("encoders.")]
    n_enc = sum(len(list(e.parameters())) for e in model.encoders.values())
    assert len(backbone) == n_enc > 0
    for m in ("video", "joint", "bone"):
        assert any(n.startswith(f"encoders.{m}.") for n in backbone)
    assert all(n.startswith("neck.") for n in names if "aux_heads" in n or "proj" in n)
    assert not any(isinstance(m, AGCN | TinyVideoEncoder) for m in model.neck.modules())


def test_gradients_reach_everything():
    model = make_fusion(cross_attention=True, cross_depth=2, depth=2).train()
    head = ClassificationHead(model.out_channels, K)
    x = make_inputs()
    out = model(x)
    pooled, aux = out.pooled, out.aux
    loss = head(pooled).logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in aux.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    for n, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), n
    for m in ("video", "joint", "bone"):
        g = sum(p.grad.abs().sum() for p in model.encoders[m].parameters())
        assert g > 0, m
        assert model.neck.modality_embed[m].grad.abs().sum() > 0
        assert model.neck.spatial_embed[m].grad.abs().sum() > 0
    # bins 2, 6, 10, 14 and the global row (video class token) are used
    used = model.neck.time_embed.grad.abs().sum(dim=1) > 0
    assert used.nonzero().flatten().tolist() == [2, 6, 10, 14, 16]
    assert model.neck.cls_token.grad.abs().sum() > 0


def test_input_errors():
    model = make_fusion().eval()
    with pytest.raises(ValueError, match="unknown input streams"):
        model({**make_inputs(("joint",)), "audio": torch.randn(B, 4)})
    with pytest.raises(ValueError, match=r"video.*joint.*bone"):
        model({})
    with pytest.raises(ValueError, match="unknown modalities"):
        model({**make_inputs(("joint",)), "present": {"audio": torch.ones(B, dtype=torch.bool)}})
    with pytest.raises(ValueError, match="shape"):
        model(
            {**make_inputs(("joint",)), "present": {"joint": torch.ones(B + 1, dtype=torch.bool)}}
        )
    with pytest.raises(ValueError, match="batch size"):
        model({"joint": torch.randn(2, *SKEL_SHAPE), "bone": torch.randn(3, *SKEL_SHAPE)})
    with pytest.raises(ValueError, match="at least two"):
        make_fusion(("joint",), cross_attention=True)
    with pytest.raises(ValueError, match="pool must be one of"):
        make_fusion(("joint",), joint_pool="max")
    with pytest.raises(ValueError, match="pool names unknown"):
        CrossModalTokenFusion({"joint": 8}, K, dim=32, heads=4, pool={"bone": "space"})
    with pytest.raises(ValueError, match="not single tokens"):
        model.neck({"joint": model.encoders["joint"](make_inputs(("joint",))["joint"])},
                   visible={"joint": torch.ones(B, N_SKEL, dtype=torch.bool)})  # fmt: skip


def test_deterministic_eval():
    model = make_fusion(cross_attention=True, dropout=0.1, modality_dropout=0.5).eval()
    x = make_inputs()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)
    for m in a.aux:
        torch.testing.assert_close(a.aux[m], b.aux[m], rtol=0, atol=0)


def test_hydra_instantiate_with_volume():
    cfg = OmegaConf.create(
        {
            "encoders": {
                "joint": {
                    "_target_": "migalab.models.encoders.agcn.AGCN",
                    "base_channels": 4,
                    "num_units": 5,
                },
                "heatmap": {
                    "_target_": "migalab.models.encoders.posec3d.SlowOnly",
                    "in_channels": 4,
                    "base_channels": 2,
                    "stage_blocks": [1, 1, 1],
                },
            },
            "neck": {
                "_target_": "migalab.models.fusion.CrossModalTokenFusion",
                "_partial_": True,
                "num_classes": K,
                "dim": 32,
                "heads": 4,
                "depth": 1,
                # SlowOnly's H'·W' depends on the input size: the neck's config sizes the table
                "spatial_positions": {"heatmap": 16},
            },
        }
    )
    parts = instantiate(cfg, _convert_="all")
    model = FusedEncoders(parts["encoders"], parts["neck"]).eval()
    assert model.neck.spatial_embed["heatmap"].shape == (16, 32)  # 32 / 8 = 4 -> 4·4
    x = {"joint": torch.randn(2, *SKEL_SHAPE), "heatmap": torch.randn(2, 4, 8, 32, 32)}
    with torch.no_grad():
        out = model(x)
    tokens, pooled, aux = out.tokens, out.pooled, out.aux
    assert tokens.shape == (2, 1 + N_SKEL + 4 * 16, 32)
    assert pooled.shape == (2, 32) and set(aux) == {"joint", "heatmap"}


def test_skeleton_transformer_is_a_fusion_stream() -> None:
    """MAMP's encoder (pretrainable without labels) joins the token fusion like AGCN."""
    from migalab.models.encoders.skeleton_transformer import SkeletonTransformer

    torch.manual_seed(0)
    stt = SkeletonTransformer(layout="imigue22", num_frames=8, dim=16, depth=1, heads=2)
    fusion = FusedEncoders(
        {"video": TinyVideoEncoder(), "joint": stt},
        partial(CrossModalTokenFusion, num_classes=K, dim=32, depth=1, heads=4, dropout=0.0,
                modality_dropout=0.0),
    )  # fmt: skip
    x = {"video": torch.randn(B, *VIDEO_SHAPE), "joint": torch.randn(B, *SKEL_SHAPE)}
    out = fusion(x)
    assert out.pooled.shape == (B, 32) and set(out.aux) == {"video", "joint"}
    assert out.tokens.shape[1] == 1 + N_VIDEO + 2 * 22  # class token, video, 2 segments x 22
    out.pooled.sum().backward()
    assert stt.patch_embed.weight.grad is not None
