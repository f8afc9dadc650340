"""SimMIM pretext on the face encoder: exact mask counts, the loss on masked pixels only,
visible-frame selection, and a pretraining checkpoint loading into the face encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from migalab.models.encoders.swinface import SwinFaceEncoder
from migalab.models.finetune import load_initial_weights
from migalab.models.pretrain.simmim import MaskedImageModeling, random_square_mask
from migalab.tasks.pretrain import PretrainModule


def test_square_masks_have_exact_counts() -> None:
    m = random_square_mask(5, 7, 0.6, generator=torch.Generator().manual_seed(0))
    assert m.shape == (5, 7, 7) and (m.flatten(1).sum(1) == round(0.6 * 49)).all()
    assert not torch.equal(m[0], m[1])  # per image


def test_loss_is_l1_on_masked_pixels_of_visible_crops() -> None:
    torch.manual_seed(0)
    enc = SwinFaceEncoder(preset="xs")
    head = MaskedImageModeling(enc, frames=2)
    crops = torch.randint(0, 256, (3, 4, 3, 112, 112), dtype=torch.uint8)
    visible = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    x = {"face": crops, "face_visible": visible}
    # frames 0 and 3 of each clip (spread over T = 4), visible ones only: clip 0 both, clip 1
    # neither (0 and 3 hidden), clip 2 neither
    assert torch.equal(head.images(x), crops[0, [0, 3]])
    out = head(enc, x, generator=torch.Generator().manual_seed(1))
    assert out["pred"].shape == out["target"].shape == (2, 3, 112, 112)
    mask = out["mask"]
    assert mask.shape == (2, 112, 112) and mask.float().mean() == pytest.approx(29 / 49)
    err = (out["pred"] - out["target"]).abs().mean(1)
    torch.testing.assert_close(out["loss"], err[mask].mean())
    torch.testing.assert_close(out["target"], (crops[0, [0, 3]].float() / 255 - 0.5) / 0.5)
    out["loss"].backward()
    assert enc.backbone.patch_embed.proj.weight.grad is not None
    assert head.mask_token.grad is not None and head.mask_token.grad.abs().sum() > 0
    # no visible face in the batch: a zero loss that still backpropagates
    empty = head(enc, {"face": crops[2:], "face_visible": visible[2:]})
    assert empty["loss"] == 0 and empty["loss"].requires_grad
    with pytest.raises(ValueError, match="mask_patch"):
        MaskedImageModeling(enc, mask_patch=32)


def test_simmim_checkpoint_initialises_the_face_encoder_strictly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = PretrainModule(SwinFaceEncoder(preset="xs"), MaskedImageModeling,
                            optimizer=torch.optim.AdamW)  # fmt: skip
    path = tmp_path / "simmim.ckpt"
    torch.save({"state_dict": module.state_dict()}, path)
    fresh = SwinFaceEncoder(preset="xs", init=str(path))
    assert load_initial_weights(torch.nn.ModuleDict({"encoder": fresh})) == [f"encoder <- {path}"]
    for k, v in module.encoder.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[k], v)


def test_simmim_runs_under_autocast() -> None:
    enc = SwinFaceEncoder(preset="xs")
    head = MaskedImageModeling(enc)
    crops = torch.randint(0, 256, (2, 2, 3, 112, 112), dtype=torch.uint8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head(enc, {"face": crops})["loss"]
    loss.backward()
    assert torch.isfinite(loss)
