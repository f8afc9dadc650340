"""MAMP pretext: motion targets on hand-made sequences, token layout, masking ratio and its
motion awareness, the loss, and a pretraining checkpoint loading into a fine-tuned encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from migalab.models.encoders.skeleton_transformer import SkeletonTransformer
from migalab.models.finetune import load_initial_weights
from migalab.models.pretrain.mamp import (
    MaskedMotionPrediction,
    motion_aware_mask,
    motion_target,
    patchify,
)
from migalab.tasks.pretrain import PretrainModule


def test_motion_target_by_hand() -> None:
    # one joint moving by (1, 2) per frame, confidence constant: motion (1, 2, 0), last frame 0
    t = torch.arange(6, dtype=torch.float32)
    seq = torch.stack([t, 2 * t, torch.ones(6)], dim=-1).view(1, 6, 1, 3)
    m = motion_target(seq)
    assert m[0, :5, 0].tolist() == [[1.0, 2.0, 0.0]] * 5 and m[0, 5, 0].tolist() == [0.0] * 3
    m2 = motion_target(seq, stride=2)
    assert m2[0, :4, 0].tolist() == [[2.0, 4.0, 0.0]] * 4 and m2[0, 4:].abs().sum() == 0


def test_patchify_order() -> None:
    # value = 100 t + 10 v + c: token (t', v) holds frames t' * 2 .. t' * 2 + 1 of joint v
    t, v, c = torch.meshgrid(torch.arange(4), torch.arange(3), torch.arange(2), indexing="ij")
    seq = (100 * t + 10 * v + c).float().unsqueeze(0)  # (1, T=4, V=3, C=2)
    p = patchify(seq, 2)
    assert p.shape == (1, 2 * 3, 4)
    assert p[0, 0].tolist() == [0, 1, 100, 101]  # t' 0, joint 0: frames 0, 1
    assert p[0, 4].tolist() == [210, 211, 310, 311]  # t' 1, joint 1: frames 2, 3


def test_mask_ratio_and_keep_indices() -> None:
    patches = torch.randn(3, 40, 6)
    for tau in (0.0, 0.8):
        mask, keep = motion_aware_mask(patches, num_joints=10, ratio=0.9, tau=tau)
        assert mask.shape == (3, 40) and keep.shape == (3, 4)
        assert (mask.sum(1) == 36).all()
        assert (keep.diff(dim=1) > 0).all()  # ascending
        assert not mask.gather(1, keep).any()  # the kept tokens are the unmasked ones


def test_masking_prefers_moving_tokens() -> None:
    # 8 segments x 10 joints; joints 0-4 move a lot between segments, joints 5-9 stay still
    seg = torch.zeros(1, 8, 10, 6)
    seg[:, :, :5] = torch.arange(8.0).view(1, 8, 1, 1) * torch.tensor([1.0, -1.0] * 3) * 5
    patches = seg.reshape(1, 80, 6)
    gen = torch.Generator().manual_seed(0)
    moving = still = 0
    for _ in range(200):
        mask, _ = motion_aware_mask(patches, 10, ratio=0.5, tau=0.1, generator=gen)
        m = mask.view(8, 10)
        moving, still = moving + int(m[:, :5].sum()), still + int(m[:, 5:].sum())
    assert moving > 1.5 * still
    # uniform masking (tau 0) does not care
    moving = still = 0
    for _ in range(200):
        mask, _ = motion_aware_mask(patches, 10, ratio=0.5, tau=0.0, generator=gen)
        m = mask.view(8, 10)
        moving, still = moving + int(m[:, :5].sum()), still + int(m[:, 5:].sum())
    assert abs(moving - still) < 0.1 * (moving + still)


def _encoder(**kw: object) -> SkeletonTransformer:
    args = dict(layout="imigue22", num_frames=16, dim=32, depth=2, heads=4)
    args.update(kw)
    return SkeletonTransformer(**args)


def test_pretext_loss_is_on_masked_tokens_and_trains_the_encoder() -> None:
    enc = _encoder(num_persons=2)
    head = MaskedMotionPrediction(enc, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    x = torch.randn(3, 3, 16, 22, 2)
    out = head(enc, x, generator=torch.Generator().manual_seed(0))
    b, length = 3 * 2, 4 * 22
    assert out["pred"].shape == out["target"].shape == (b, length, 4 * 3)
    assert (
        out["mask"].shape == (b, length)
        and (out["mask"].sum(1) == length - int(length * 0.1)).all()
    )
    # targets are normalised per token
    torch.testing.assert_close(out["target"].mean(-1), torch.zeros(b, length), atol=1e-5, rtol=0)
    per_token = (out["pred"] - out["target"]).pow(2).mean(-1)
    torch.testing.assert_close(out["loss"], per_token[out["mask"]].mean())
    out["loss"].backward()
    assert (
        enc.patch_embed.weight.grad is not None
        and enc.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    )
    assert not any(n.startswith("encoder") for n, _ in head.named_parameters())  # not owned
    with pytest.raises(ValueError, match="mask_ratio"):
        MaskedMotionPrediction(enc, mask_ratio=1.0)


def test_pretrain_checkpoint_initialises_the_encoder_strictly(tmp_path: Path) -> None:
    def pretext(encoder: SkeletonTransformer) -> MaskedMotionPrediction:
        return MaskedMotionPrediction(encoder, decoder_dim=16, decoder_depth=1, decoder_heads=2)

    module = PretrainModule(_encoder(), pretext, optimizer=torch.optim.AdamW)
    assert {k.split(".")[0] for k in module.state_dict()} == {"encoder", "pretext"}
    path = tmp_path / "pretrain.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    fresh = _encoder(init=str(path))
    loaded = load_initial_weights(torch.nn.ModuleDict({"encoder": fresh}))
    assert loaded == [f"encoder <- {path}"]
    for k, v in module.encoder.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    # an encoder of another size does not take it (strict keys and shapes)
    other = _encoder(dim=64, init=str(path))
    with pytest.raises(ValueError, match="does not fit"):
        load_initial_weights(torch.nn.ModuleDict({"encoder": other}))


def test_pretext_runs_under_autocast() -> None:
    """AMP (bf16 autocast on CPU here; fp16 on CUDA): the mask tokens follow the dtype."""
    enc = _encoder()
    head = MaskedMotionPrediction(enc, decoder_dim=16, decoder_depth=1, decoder_heads=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(enc, torch.randn(2, 3, 16, 22, 1))["loss"]
    loss.backward()
    assert torch.isfinite(loss)
