"""SkeletonTransformer (MAMP's encoder): token layout, persons, sizes, fine-tuning modes."""

from __future__ import annotations

import pytest
import torch

from migalab.models.encoders.skeleton_transformer import SkeletonTransformer


def _enc(**kw: object) -> SkeletonTransformer:
    args = dict(layout="imigue22", num_frames=16, dim=32, depth=2, heads=4)
    args.update(kw)
    return SkeletonTransformer(**args).eval()


def test_tokens_are_segment_joint_grid() -> None:
    enc = _enc()
    out = enc(torch.randn(2, 3, 16, 22, 1))
    assert out.tokens.shape == (2, 4 * 22, 32) and out.pooled.shape == (2, 32)
    assert enc.out_channels == 32 and enc.spatial_positions == 22
    assert out.num_global == 0 and out.num_frames == 4
    assert out.space[:22].tolist() == list(range(22)) and out.time[0] == pytest.approx(0.125)
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))


def test_persons_are_separate_sequences_averaged() -> None:
    enc = _enc(num_persons=2)
    a, b = torch.randn(1, 3, 16, 22, 1), torch.randn(1, 3, 16, 22, 1)
    with torch.no_grad():
        both = enc(torch.cat([a, b], dim=-1)).tokens
        one = (_enc_of(enc)(a).tokens + _enc_of(enc)(b).tokens) / 2
    torch.testing.assert_close(both, one)


def _enc_of(enc: SkeletonTransformer) -> SkeletonTransformer:
    single = _enc(num_persons=1)
    single.load_state_dict(enc.state_dict())
    return single


def test_wrong_input_is_named() -> None:
    with pytest.raises(ValueError, match=r"T=16, V=22.*\(2, 3, 20, 22, 1\)"):
        _enc()(torch.randn(2, 3, 20, 22, 1))
    with pytest.raises(ValueError, match="multiple of t_patch"):
        _enc(num_frames=18)


def test_finetune_modes() -> None:
    frozen = _enc(finetune="frozen")
    assert not any(p.requires_grad for p in frozen.parameters())
    partial = _enc(finetune="partial", trainable_blocks=1)
    trainable = {n for n, p in partial.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("blocks.1.", "norm.")) for n in trainable)
    assert "patch_embed.weight" not in trainable
    # no duplicate state-dict keys from the finetune grouping
    assert not any(k.startswith("embedding") for k in _enc().state_dict())
