"""SwinFaceEncoder: output contract, released-checkpoint loading, fine-tuning modes and the
per-frame embedding cache (the CPU preset "xs" except where the full Swin-T is the point)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from migalab.models.embedding_cache import EmbeddingCache
from migalab.models.encoders.output import EncoderOutput
from migalab.models.encoders.swinface import (
    SwinFaceEncoder,
    encoder_to_released_state,
    split_widths,
)
from migalab.models.finetune import load_initial_weights


def encoder(seed: int = 0, **kwargs) -> SwinFaceEncoder:
    torch.manual_seed(seed)
    kwargs.setdefault("preset", "xs")
    return SwinFaceEncoder(**kwargs)


def crops(b: int = 2, t: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, 3, 112, 112), dtype=torch.uint8, generator=g)


def check_output(out: EncoderOutput, b: int, t: int, c: int = 512) -> None:
    assert isinstance(out, EncoderOutput) and out.aux == {}
    assert out.tokens.shape == (b, t, c) and out.pooled.shape == (b, c)
    assert torch.allclose(out.time, (torch.arange(t) + 0.5) / t)
    assert out.space.dtype == torch.long and (out.space == -1).all()
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


def test_split_widths_reproduce_swinface() -> None:
    assert split_widths([192, 384, 768, 768], 512) == [47, 93, 186, 186]
    assert sum(split_widths([64, 128, 128], 512)) == 512


def test_frames_and_single_images() -> None:
    enc = encoder().eval()
    x = crops()
    with torch.no_grad():
        out = enc(x)
        check_output(out, 2, 3)
        assert torch.allclose(out.pooled, out.tokens.mean(dim=1), atol=1e-6)
        single = enc(x[:, 0])  # (B, 3, 112, 112): T = 1
        check_output(single, 2, 1)
        assert torch.allclose(single.tokens[:, 0], out.tokens[:, 0], atol=1e-4)
        # float input in [0, 255] is the same as uint8
        assert torch.allclose(enc(x.float()).tokens, out.tokens, atol=1e-5)


def test_visibility_mask() -> None:
    enc = encoder().eval()
    x = crops()
    visible = torch.tensor([[True, False, True], [False, False, False]])
    with torch.no_grad():
        full = enc(x)
        out = enc(x, visible=visible)
    check_output(out, 2, 3)
    assert (out.tokens[0, 1] == 0).all() and (out.tokens[1] == 0).all()
    assert torch.allclose(out.tokens[0, [0, 2]], full.tokens[0, [0, 2]], atol=1e-4)
    assert torch.allclose(out.pooled[0], full.tokens[0, [0, 2]].mean(dim=0), atol=1e-4)
    assert (out.pooled[1] == 0).all()  # no face at all: a finite zero feature
    with pytest.raises(ValueError, match="visible"):
        enc(x, visible=torch.ones(2, 2, dtype=torch.bool))


def test_precomputed_embeddings_pass_through() -> None:
    enc = encoder().eval()
    emb = torch.randn(2, 4, 512)
    out = enc(emb, visible=torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).bool())
    check_output(out, 2, 4)
    assert torch.allclose(out.pooled[0], emb[0, :2].mean(dim=0))
    with pytest.raises(ValueError, match="precomputed"):
        enc(torch.randn(2, 4, 100))


def test_training_backward_and_recognition_head() -> None:
    enc = encoder(embedding="recognition").train()
    out = enc(crops(b=2, t=2), visible=torch.tensor([[True, False], [False, False]]))
    out.pooled.sum().backward()  # one visible frame: BatchNorm still has two samples
    grads = [p.grad for p in enc.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_full_swin_t_preset_shapes() -> None:
    enc = encoder(preset="t").eval()
    assert enc.level_widths == [192, 384, 768, 768] and enc.feature_grid == 7
    assert 27e6 < sum(p.numel() for p in enc.backbone.parameters()) < 28e6
    with torch.no_grad():
        check_output(enc(crops(b=1, t=2)), 1, 2)


@pytest.mark.parametrize("preset", ["xs", "t"])
def test_released_checkpoint_loads(preset: str, tmp_path: Path) -> None:
    """A state dict in SwinFace's released format (renamed from a fresh encoder, with the
    original Swin's derived buffers and unused head) loads tensor for tensor."""
    src = encoder(seed=0, preset=preset)
    released = encoder_to_released_state(src)
    backbone = released["state_dict_backbone"]
    backbone["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49).long()
    backbone["layers.0.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    backbone["head.weight"] = torch.randn(512, 4)
    backbone["norm.weight"] = torch.ones(4)  # the final norm feeds only the recognition head
    released["state_dict_om"] = {"output_fcs.0.weight": torch.randn(2, 512)}
    path = tmp_path / "checkpoint_step_79999_gpu_0.pt"
    torch.save(released, path)

    dst = encoder(seed=1, preset=preset, pretrained=str(path))
    assert not torch.equal(dst.fam.conv.convs[0].weight, src.fam.conv.convs[0].weight)
    report = dst.load_released(path)
    assert not report.missing and not report.unexpected and not report.mismatched
    assert report.loaded == len(dst.state_dict())
    assert "state_dict_om/output_fcs.0.weight" in report.unused
    assert "state_dict_backbone/head.weight" in report.unused
    assert any(k.startswith("state_dict_fam/nets.0.") for k in report.unused)  # other branches
    assert not any("relative_position_index" in k or "attn_mask" in k for k in report.unused)
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b), k
    # the downsample moved one stage on: timm merges at the start of the next stage
    assert "layers.0.downsample.reduction.weight" in backbone
    # ... and the `pretrained` option loads it when a fit starts fresh
    if preset != "xs":
        return
    fresh = encoder(seed=2, preset=preset, pretrained=str(path))
    assert load_initial_weights(torch.nn.Sequential(fresh))
    assert torch.equal(fresh.fam.norm.running_mean, src.fam.norm.running_mean)


def test_released_checkpoint_errors(tmp_path: Path) -> None:
    src = encoder()
    released = encoder_to_released_state(src)
    bb = released["state_dict_backbone"]
    bb["layers.9.blocks.0.norm1.weight"] = torch.ones(4)  # a wrong key
    del bb["patch_embed.proj.weight"]
    path = tmp_path / "bad.pt"
    torch.save(released, path)
    dst = encoder(seed=1)
    with pytest.raises(ValueError) as err:
        dst.load_released(path)
    msg = str(err.value)
    assert "missing" in msg and "backbone.patch_embed.proj.weight" in msg
    assert "unexpected" in msg and "backbone.layers.9.blocks.0.norm1.weight" in msg
    report = dst.load_released(path, strict=False)  # lenient: a report, what fits is loaded
    assert report.missing == ["backbone.patch_embed.proj.weight"]
    assert torch.equal(dst.fam.norm.weight, src.fam.norm.weight)

    torch.save({"state_dict": src.state_dict()}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a released SwinFace checkpoint"):
        dst.load_released(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        dst.load_released(tmp_path / "absent.pt")


def test_finetune_frozen_and_partial() -> None:
    frozen = encoder(finetune="frozen").train()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(m.training for m in frozen.modules())
    partial = encoder(finetune="partial", trainable_blocks=1).train()
    names = {n for n, p in partial.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("backbone.layers.2.", "fam.")) for n in names)
    assert any(n.startswith("fam.") for n in names)  # the embedding head always trains
    assert partial.fam.training and not partial.backbone.patch_embed.training
    with pytest.raises(ValueError):
        encoder(finetune="partial", trainable_blocks=9)


def test_embedding_cache_in_frozen_mode(tmp_path: Path) -> None:
    enc = encoder(finetune="frozen", cache_dir=str(tmp_path / "cache"), cache_dtype="float32")
    x = crops(b=2, t=2)
    keys = [["v1:0", "v1:1"], ["v2:0", "v2:1"]]
    visible = torch.tensor([[True, True], [True, False]])
    direct = enc(x, visible=visible)
    first = enc(x, visible=visible, keys=keys)
    cache = enc.cache
    assert cache is not None and (cache.misses, cache.hits) == (3, 0)  # hidden frame skipped
    assert torch.allclose(first.tokens, direct.tokens, atol=1e-5)
    second = enc(torch.zeros_like(x), visible=visible, keys=keys)  # pixels ignored on a hit
    assert (cache.misses, cache.hits) == (3, 3)
    assert torch.equal(second.tokens, first.tokens)
    files = sorted(p.name for p in cache.dir.rglob("*") if p.is_file())
    assert len([f for f in files if f.endswith(".npy")]) == 3 and "meta.json" in files
    assert not any(f.endswith(".tmp") for f in files)  # atomic writes leave no temp file

    # other weights -> another fingerprint -> another folder: nothing stale is read
    fp = enc.fingerprint()
    with torch.no_grad():
        enc.fam.norm.bias.add_(1.0)
    assert enc.fingerprint() != fp
    third = enc(x, visible=visible, keys=keys)
    assert enc.cache is not cache and enc.cache.misses == 3 and enc.cache.hits == 0
    assert not torch.allclose(third.tokens[0], first.tokens[0])

    trainable = encoder(cache_dir=str(tmp_path / "c2"))
    with pytest.raises(ValueError, match="frozen"):
        trainable(x, keys=keys)


def test_embedding_cache_alone(tmp_path: Path) -> None:
    fp = "ab" * 32
    cache = EmbeddingCache(tmp_path, fp, dim=4, dtype="float32")
    calls: list[list[int]] = []

    def compute(idx: torch.Tensor) -> torch.Tensor:
        calls.append(idx.tolist())
        return torch.arange(len(idx) * 4, dtype=torch.float32).reshape(-1, 4) + 10 * idx[:, None]

    keys = ["a", "b", "a", "c"]
    out = cache.get_or_compute(keys, compute)
    assert calls == [[0, 1, 3]] and torch.equal(out[0], out[2])
    again = cache.get_or_compute(["c", "b"], compute)
    assert calls == [[0, 1, 3]] and torch.equal(again, out[[3, 1]])
    assert (cache.hits, cache.misses) == (2, 3)
    assert "a" in cache and "z" not in cache and cache.get("z") is None
    # a truncated file (a writer killed mid-way would leave none; still) is a miss, rewritten
    cache.path("a").write_bytes(b"\x93NUMPY garbage")
    cache.get_or_compute(["a"], compute)
    assert calls[-1] == [0] and cache.get("a") is not None
    cache.put("clip", torch.zeros(3, 4))  # a whole clip under one key
    assert cache.get("clip").shape == (3, 4)
    with pytest.raises(ValueError):
        cache.put("bad", torch.zeros(5))
    assert cache.meta()["fingerprint"] == fp
    half = EmbeddingCache(tmp_path / "h", fp, dim=4)  # float16 on disk
    res = half.get_or_compute(["x"], lambda idx: torch.full((1, 4), 1 / 3))
    assert torch.equal(res, half.get_or_compute(["x"], compute))  # same value on a hit
