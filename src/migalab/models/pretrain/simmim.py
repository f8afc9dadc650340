"""SimMIM: masked image modelling for the Swin backbone of the face encoder (Xie et al., CVPR
2022), on the face crops of a release, without labels.

Each training clip contributes ``frames`` of its visible face crops (B·frames images of
112²). The images are cut into ``mask_patch`` × ``mask_patch`` squares; a random ``mask_ratio``
of them (exactly ``round(ratio · squares)`` per image) have their patch embeddings replaced by a
learned mask token right after the Swin patch embedding; the backbone runs on all tokens; a
1×1 conv on its last stage (stride 16 at 112², a 7² grid) predicts the raw normalised pixels of
each 16² square (pixel shuffle), and the loss is the mean L1 over the masked pixels only.
SimMIM's recipe (mask ratio 0.6, one linear layer as the decoder, L1 on raw pixels) with a 16-px
mask square, since SimMIM's 32 px does not divide a 112² face crop.

The checkpoint's ``encoder.*`` keys are the whole :class:`SwinFaceEncoder` (its feature
attention module keeps its initialisation: only the backbone learns here), so
``model.encoder.init=<ckpt>`` loads into the emotion models' face encoder strictly.

Written for this suite: timm has the Swin backbone but no masked-image-modelling wrapper.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from migalab.models.encoders.swinface import SwinFaceEncoder

__all__ = ["MaskedImageModeling", "random_square_mask"]


def random_square_mask(
    n: int, grid: int, ratio: float, device: Any = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, grid, grid) bool masks, True = masked, exactly ``round(ratio · grid²)`` per image."""
    count = round(ratio * grid * grid)
    order = torch.rand(n, grid * grid, device=device, generator=generator).argsort(dim=1)
    mask = torch.zeros(n, grid * grid, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :count], True)
    return mask.view(n, grid, grid)


class MaskedImageModeling(nn.Module):
    """The SimMIM pretext over a :class:`SwinFaceEncoder` (not owned: the task holds it).

    Args:
        encoder: the face encoder (its ``backbone``, a timm Swin, is what learns).
        mask_patch: side of a mask square in pixels; a multiple of the patch embedding's
            stride and the stride of the last stage (16 for both presets at 112²).
        mask_ratio: share of squares masked per image.
        frames: face crops taken per clip (the first visible ones, evenly spread).
        input_key: the batch entry holding the crops (B, T, 3, H, W) uint8.
    """

    def __init__(
        self,
        encoder: SwinFaceEncoder,
        mask_patch: int = 16,
        mask_ratio: float = 0.6,
        frames: int = 2,
        input_key: str = "face",
    ) -> None:
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        size = encoder.image_size
        stride = size // encoder.feature_grid
        embed_stride = encoder.backbone.patch_embed.patch_size[0]
        if size % mask_patch or mask_patch != stride or mask_patch % embed_stride:
            raise ValueError(
                f"mask_patch must be the last stage's stride ({stride} px at "
                f"{size}²), got {mask_patch}"
            )
        self.mask_patch, self.mask_ratio = int(mask_patch), float(mask_ratio)
        self.frames, self.input_key = int(frames), input_key
        self.grid = size // mask_patch
        embed_dim = encoder.backbone.embed_dim
        last_dim = encoder.backbone.num_features
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, embed_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Conv2d(last_dim, mask_patch * mask_patch * 3, kernel_size=1)

    def images(self, x: Any) -> torch.Tensor:
        """The crops to learn from: ``frames`` visible ones per clip -> (N, 3, H, W) uint8."""
        if isinstance(x, dict):
            crops, visible = x[self.input_key], x.get(f"{self.input_key}_visible")
        else:
            crops, visible = x, None
        if crops.dim() == 4:
            crops = crops[:, None]
        b, t = crops.shape[:2]
        if visible is None:
            visible = torch.ones(b, t, dtype=torch.bool, device=crops.device)
        picks = torch.linspace(0, t - 1, self.frames, device=crops.device).round().long()
        chosen = crops[:, picks].flatten(0, 1)
        keep = visible.bool()[:, picks].flatten()
        return chosen[keep]

    def forward(
        self, encoder: SwinFaceEncoder, x: Any, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss of one batch (the face crops in ``x``).

        Returns:
            ``loss`` (scalar; 0 with a gradient when no crop is visible), ``pred`` and
            ``target`` (N, 3, H, W) normalised pixels, ``mask`` (N, H, W) bool.
        """
        images = self.images(x)
        backbone = encoder.backbone
        if len(images) == 0:
            zero = self.mask_token.sum() * 0.0
            return {
                "loss": zero,
                "pred": images.float(),
                "target": images.float(),
                "mask": images[:, 0].bool(),
            }
        target = encoder.normalize(images)  # (N, 3, H, W)
        n = len(target)
        squares = random_square_mask(n, self.grid, self.mask_ratio, target.device, generator)
        tokens = backbone.patch_embed(target)  # (N, h, w, C) channels last
        scale = tokens.shape[1] // self.grid
        token_mask = squares.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        tokens = torch.where(token_mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        feats = backbone.norm(backbone.layers(tokens))  # (N, g, g, C_last)
        pred = F.pixel_shuffle(self.decoder(feats.permute(0, 3, 1, 2)), self.mask_patch)
        pixel_mask = squares.repeat_interleave(self.mask_patch, 1).repeat_interleave(
            self.mask_patch, 2
        )  # (N, H, W)
        err = (pred - target).abs().mean(dim=1)  # (N, H, W), mean over RGB
        loss = (err * pixel_mask).sum() / pixel_mask.sum().clamp(min=1)
        return {"loss": loss, "pred": pred, "target": target, "mask": pixel_mask}
