"""MaskFeat pretext on the MViT encoder: the HOG target on hand-made images, tube masks with exact
counts, the loss on masked cells only, AMP, and a pretraining checkpoint loading into the MViT
encoder strictly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from migalab.models.encoders.mvit import MViTEncoder
from migalab.models.finetune import load_initial_weights
from migalab.models.pretrain.maskfeat import HOG, MaskedFeaturePrediction, tube_mask
from migalab.tasks.pretrain import PretrainModule


def _edge(angle_deg: float, size: int = 32) -> torch.Tensor:
    """(1, 1, size, size) step edge whose intensity rises along ``angle_deg`` (image x right,
    y down): its gradient points at that angle everywhere along the edge."""
    ys, xs = torch.meshgrid(torch.arange(size) - size / 2 + 0.5, torch.arange(size) - size / 2 + 0.5,
                            indexing="ij")  # fmt: skip
    a = math.radians(angle_deg)
    return ((xs * math.cos(a) + ys * math.sin(a)) > 0).float()[None, None]


@pytest.mark.parametrize(
    ("angle", "bin_"), [(0, 0), (90, 4), (180, 0), (45, 2), (135, 6), (-45, 6)]
)
def test_hog_puts_an_edge_in_its_orientation_bin(angle: float, bin_: int) -> None:
    """9 unsigned bins of 20°: a gradient at 0° and 180° is bin 0, 90° bin 4 (80-100°), 45°
    bin 2, 135° (= -45°) bin 6. Cells the edge crosses are unit histograms peaked there."""
    hog = HOG(nbins=9, cell=8, gaussian_window=0)(_edge(angle))
    assert hog.shape == (1, 1, 9, 4, 4)
    cells = hog[0, 0].flatten(1)  # (9, 16)
    active = cells.norm(dim=0) > 0
    assert active.any()
    torch.testing.assert_close(cells[:, active].norm(dim=0), torch.ones(int(active.sum())))
    assert (cells[:, active].argmax(dim=0) == bin_).all()
    # an axis-aligned edge puts all of each cell's gradient in that one bin
    if angle % 90 == 0:
        torch.testing.assert_close(cells[bin_, active], torch.ones(int(active.sum())))


def test_hog_flat_cells_are_zero_and_per_channel_affine_maps_do_not_matter() -> None:
    torch.manual_seed(0)
    flat = torch.full((2, 3, 16, 16), 0.7)
    assert HOG()(flat).abs().max() == 0
    img = torch.randint(0, 256, (2, 3, 32, 48)).float() / 256  # 8-bit pixels
    scale = torch.tensor([2.0, 0.5, 4.0]).view(1, 3, 1, 1)
    shift = torch.tensor([-1.0, 0.25, 8.0]).view(1, 3, 1, 1)
    # normalising a clip (x - mean) / std per channel leaves its HOG unchanged (exact binary
    # fractions here: orientation bins are hard, so float rounding could flip a pixel's bin)
    torch.testing.assert_close(HOG()(img), HOG()(img * scale + shift), atol=1e-5, rtol=1e-5)
    assert HOG()(img).shape == (2, 3, 9, 4, 6)
    # the Gaussian window weights pixels within a cell but every cell stays unit-norm
    norms = HOG(gaussian_window=16)(img).norm(dim=2)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    with pytest.raises(ValueError, match="multiple"):
        HOG(cell=8)(torch.rand(1, 3, 20, 16))


def test_tube_masks_have_exact_counts_and_are_the_same_in_every_frame() -> None:
    m = tube_mask(6, 4, 4, 4, 0.4, generator=torch.Generator().manual_seed(0))
    assert m.shape == (6, 4, 4, 4) and m.dtype == torch.bool
    assert (m[:, 0].flatten(1).sum(1) == round(0.4 * 16)).all()
    assert (m == m[:, :1]).all()  # tubes: the same squares at every time step
    assert len({tuple(x.flatten().tolist()) for x in m[:, 0]}) > 1  # per clip


def test_maskfeat_loss_is_the_mse_on_masked_cells_and_trains_the_encoder() -> None:
    torch.manual_seed(0)
    enc = MViTEncoder("xs", drop_path=0.0)
    head = MaskedFeaturePrediction(enc, mask_patch=16, mask_ratio=0.4)
    clip = torch.randn(2, 3, 8, 64, 64)
    out = head(enc, {"rgb": clip}, generator=torch.Generator().manual_seed(1))
    # T' = 4 time slots (the patch embedding strides time by 2), 8 x 8 cells of 8 px,
    # 3 channels x 9 bins per cell
    assert out["pred"].shape == out["target"].shape == (2, 4, 8, 8, 27)
    mask = out["mask"]
    assert mask.shape == (2, 4, 8, 8)
    assert mask.float().mean() == pytest.approx(round(0.4 * 16) / 16)  # 16 squares of 16 px
    assert (mask == mask[:, :1]).all()
    err = (out["pred"] - out["target"]).pow(2).mean(-1)
    torch.testing.assert_close(out["loss"], err[mask].mean())
    # the target is the HOG of the first frame of each temporal slot
    first = clip[:, :, ::2].transpose(1, 2).flatten(0, 1)
    hog = HOG()(first).flatten(1, 2).permute(0, 2, 3, 1).reshape(2, 4, 8, 8, 27)
    torch.testing.assert_close(out["target"], hog)
    out["loss"].backward()
    assert enc.conv_proj.weight.grad is not None and enc.conv_proj.weight.grad.abs().sum() > 0
    assert head.mask_token.grad is not None and head.mask_token.grad.abs().sum() > 0
    # a bare tensor works too; a mask square must fit the patch embedding, cells and output grid
    assert torch.isfinite(head(enc, clip)["loss"])
    for bad in (12, 24, 64):
        with pytest.raises(ValueError, match="mask_patch"):
            MaskedFeaturePrediction(enc, mask_patch=bad)


def test_masked_tokens_are_replaced_before_the_blocks() -> None:
    torch.manual_seed(0)
    enc = MViTEncoder("xs", drop_path=0.0).eval()
    clip = torch.randn(1, 3, 8, 64, 64)
    n = 4 * 16 * 16  # T/2 x H/4 x W/4 patch embeddings
    none = torch.zeros(1, n, dtype=torch.bool)
    token = torch.randn(enc.conv_proj.out_channels)
    torch.testing.assert_close(
        enc(clip, token_mask=none, mask_token=token).tokens, enc(clip).tokens
    )
    every = torch.ones(1, n, dtype=torch.bool)
    a = enc(clip, token_mask=every, mask_token=token).tokens
    b = enc(torch.randn_like(clip), token_mask=every, mask_token=token).tokens
    torch.testing.assert_close(a, b)  # nothing of the clip gets through a full mask
    with pytest.raises(ValueError, match="token_mask"):
        enc(clip, token_mask=torch.zeros(1, 5, dtype=torch.bool), mask_token=token)


def test_maskfeat_runs_under_autocast() -> None:
    enc = MViTEncoder("xs")
    head = MaskedFeaturePrediction(enc, mask_patch=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(enc, {"rgb": torch.randn(2, 3, 8, 64, 64)})
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["target"].dtype == torch.float32


def test_maskfeat_checkpoint_initialises_the_mvit_encoder_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PretrainModule(MViTEncoder("xs"), MaskedFeaturePrediction, optimizer=torch.optim.AdamW)
    path = tmp_path / "maskfeat.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    fresh = MViTEncoder("xs", init=str(path))
    assert load_initial_weights(torch.nn.ModuleDict({"encoder": fresh})) == [f"encoder <- {path}"]
    for k, v in module.encoder.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    # another size is an error naming the keys, not a silent partial load
    other = MViTEncoder("xs", dims=(32, 64, 128, 256), num_heads=(1, 2, 4, 8), init=str(path))
    with pytest.raises((ValueError, RuntimeError), match="conv_proj|size|shape"):
        load_initial_weights(torch.nn.ModuleDict({"encoder": other}))
