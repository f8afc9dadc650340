"""MaskFeat: masked feature prediction for the MViTv2 video encoder (Wei et al., "Masked Feature
Prediction for Self-Supervised Visual Pre-Training", CVPR 2022), on the prepared person crops of
a release, without labels.

A random ``mask_ratio`` of the clip's space is masked as **tubes**: squares of ``mask_patch``
pixels chosen once per clip and masked in every frame (VideoMAE's tube masking; one square = a
block of patch embeddings, whose embeddings are replaced by a learned mask token right after
MViT's patch embedding, before its class token and blocks). The encoder runs on all tokens; a
linear layer on each last-stage token predicts the **HOG** of the ``cell`` × ``cell`` pixel
cells that token covers (per RGB channel, ``nbins`` orientation bins), for the first frame of
the token's temporal slot (the patch embedding strides time by 2); the loss is the MSE over the
cells inside masked squares only.

HOG as MaskFeat computes it (:class:`HOG`): Sobel gradients per RGB channel (reflect padding),
magnitude weighted by a Gaussian window (``gaussian_window`` px, std half of it) tiled over the
image, hard-assigned to ``nbins`` unsigned orientation bins over 180°, summed over each cell and
L2-normalised per cell and channel (no block normalisation; a flat cell stays zero). A cell's
histogram does not change under a per-channel affine map of the pixels, so it is taken on the
normalised clip.

MaskFeat's K400 recipe as defaults: mask ratio 0.4, 9 bins, 8-px cells, 16-px Gaussian
window, one linear layer as the decoder, ``mask_patch`` = the last stage's stride (32 px: one
output token per square). At the CPU size (64² crops, a 2 × 2 last-stage grid) a 16-px square
keeps the mask finer than the output grid: a token then predicts all its cells and only the
masked ones count.

Written for this suite: no library ships MaskFeat for torchvision's MViT (PySlowFast's
``HOGLayerC`` and ``MaskMViT`` are the authors' code; this follows the paper and those
conventions. One difference: the orientation here is measured from the image x axis,
``atan2(d/dy, d/dx)``, so bin 0 is [0°, 20°); HOGLayerC takes ``atan2(-d/dx, -d/dy)``, the same
nine 20° bins mirrored and offset by half a bin (checked by hand for 0°-175°). With an odd bin
count one image axis falls on a bin edge either way).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from migalab.models.encoders.mvit import MViTEncoder

__all__ = ["HOG", "MaskedFeaturePrediction", "tube_mask"]


def tube_mask(
    n: int,
    t: int,
    h: int,
    w: int,
    ratio: float,
    device: Any = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(n, t, h, w) bool masks, True = masked: per clip exactly ``round(ratio · h·w)`` of the
    h × w squares, the same ones in all t time steps (tubes)."""
    count = round(ratio * h * w)
    order = torch.rand(n, h * w, device=device, generator=generator).argsort(dim=1)
    mask = torch.zeros(n, h * w, dtype=torch.bool, device=device)
    mask.scatter_(1, order[:, :count], True)
    return mask.view(n, 1, h, w).expand(n, t, h, w)


class HOG(nn.Module):
    """Histograms of oriented gradients per cell and channel, MaskFeat's prediction target.

    Args:
        nbins: orientation bins over [0°, 180°) (unsigned gradients), hard assignment.
        cell: cell side in pixels (H and W must be multiples of it).
        gaussian_window: side of the Gaussian weighting window (std = half of it), tiled over
            the image; 0 = no weighting.

    Forward: images (N, C, H, W) float -> (N, C, nbins, H/cell, W/cell), each histogram
    (fixed n, c, cell) of unit L2 norm, or all zero for a flat cell (summed gradient magnitude
    under :attr:`FLAT`). Computed in float32.
    """

    #: cells whose weighted gradient magnitudes sum (L2 over bins) to less count as flat
    FLAT = 1e-4

    def __init__(self, nbins: int = 9, cell: int = 8, gaussian_window: int = 16) -> None:
        super().__init__()
        if nbins < 1 or cell < 1 or gaussian_window < 0:
            raise ValueError(
                f"nbins, cell must be >= 1, gaussian_window >= 0; got {nbins}, "
                f"{cell}, {gaussian_window}"
            )
        self.nbins, self.cell, self.gaussian_window = int(nbins), int(cell), int(gaussian_window)
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("sobel", torch.stack([sobel_x, sobel_x.t()])[:, None], False)
        if self.gaussian_window:
            n = torch.arange(self.gaussian_window, dtype=torch.float32)
            g = torch.exp(-0.5 * ((n - n.mean()) / (self.gaussian_window / 2)) ** 2)
            window = g[:, None] * g[None, :]
            self.register_buffer("window", window / window.max(), False)  # peak 1
        else:
            self.window = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        if h % self.cell or w % self.cell:
            raise ValueError(
                f"HOG: image size {h}x{w} is not a multiple of the {self.cell}-px cell"
            )
        with torch.autocast(images.device.type, enabled=False):
            x = F.pad(images.float().reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="reflect")
            grad = F.conv2d(x, self.sobel.float())  # (N·C, 2, H, W): d/dx, d/dy
            magnitude = grad.norm(dim=1)  # (N·C, H, W)
            theta = torch.atan2(grad[:, 1], grad[:, 0]).remainder(math.pi)  # [0, pi)
            bins = (theta * (self.nbins / math.pi)).floor().long().clamp_(0, self.nbins - 1)
            if self.window is not None:
                rows = torch.arange(h, device=images.device) % self.gaussian_window
                cols = torch.arange(w, device=images.device) % self.gaussian_window
                magnitude = magnitude * self.window[rows][:, cols]
            hist = torch.zeros(n * c, self.nbins, h, w, device=images.device)
            hist.scatter_add_(1, bins[:, None], magnitude[:, None])
            hist = F.avg_pool2d(hist, self.cell) * (self.cell * self.cell)  # sum per cell
            norm = hist.norm(dim=1, keepdim=True)
            # a flat cell's float noise (~1e-7) is no target: below FLAT (far under one 8-bit
            # step, 1/255 per pixel) the histogram is zero
            hist = torch.where(norm > self.FLAT, hist / norm.clamp(min=self.FLAT), 0.0)
        return hist.view(n, c, self.nbins, h // self.cell, w // self.cell)


class MaskedFeaturePrediction(nn.Module):
    """The MaskFeat pretext over an :class:`MViTEncoder` (not owned: the task holds it).

    Args:
        encoder: the MViT encoder being pretrained.
        mask_patch: side of a masked square in pixels: a multiple of the patch embedding's
            spatial stride (4) and of ``cell``, dividing the last stage's stride (32).
        mask_ratio: share of the squares masked per clip (the same squares in every frame).
        nbins, cell, gaussian_window: the HOG target (:class:`HOG`).
        input_key: the batch entry holding the clip (B, 3, T, H, W), when the batch is a dict.

    Forward (``encoder``, ``x``, ``generator``) returns ``loss`` (scalar), ``pred`` and
    ``target`` (B, T', H/cell, W/cell, 3·nbins), ``mask`` (B, T', H/cell, W/cell) bool (the
    cells that count), T' = T / 2.
    """

    def __init__(
        self,
        encoder: MViTEncoder,
        mask_patch: int = 32,
        mask_ratio: float = 0.4,
        nbins: int = 9,
        cell: int = 8,
        gaussian_window: int = 16,
        input_key: str = "rgb",
    ) -> None:
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        t_stride, embed_stride = encoder.conv_proj.stride[0], encoder.conv_proj.stride[1]
        h, w = encoder.spatial_size
        out_stride = h // encoder.grid[1]
        if (
            mask_patch % embed_stride
            or mask_patch % cell
            or out_stride % mask_patch
            or out_stride % cell
            or h % mask_patch
            or w % mask_patch
        ):
            raise ValueError(
                f"mask_patch {mask_patch} must be a multiple of the patch embedding's stride "
                f"({embed_stride}) and of the HOG cell ({cell}) and divide the last stage's "
                f"stride ({out_stride} px)"
            )
        self.mask_patch, self.mask_ratio, self.input_key = (
            int(mask_patch),
            float(mask_ratio),
            input_key,
        )
        self.t_stride, self.embed_stride, self.out_stride = (
            int(t_stride),
            int(embed_stride),
            out_stride,
        )
        self.cell = int(cell)
        self.hog = HOG(nbins, cell, gaussian_window)
        self.mask_token = nn.Parameter(torch.zeros(encoder.conv_proj.out_channels))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        per_token = (out_stride // cell) ** 2 * 3 * nbins
        self.decoder = nn.Linear(encoder.out_channels, per_token)
        nn.init.trunc_normal_(self.decoder.weight, std=0.02)
        nn.init.zeros_(self.decoder.bias)

    def target(self, clip: torch.Tensor) -> torch.Tensor:
        """HOG of the first frame of every temporal token slot: (B, 3, T, H, W) ->
        (B, T', H/cell, W/cell, 3·nbins)."""
        frames = clip[:, :, :: self.t_stride].transpose(1, 2)  # (B, T', 3, H, W)
        b, t = frames.shape[:2]
        hog = self.hog(frames.flatten(0, 1))  # (B·T', 3, nbins, Hc, Wc)
        hog = hog.flatten(1, 2).permute(0, 2, 3, 1)  # (B·T', Hc, Wc, 3·nbins)
        return hog.reshape(b, t, *hog.shape[1:])

    def forward(
        self, encoder: MViTEncoder, x: Any, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        clip = x[self.input_key] if isinstance(x, dict) else x
        b, _, t, h, w = clip.shape
        tt = t // self.t_stride
        squares = tube_mask(
            b,
            tt,
            h // self.mask_patch,
            w // self.mask_patch,
            self.mask_ratio,
            clip.device,
            generator,
        )
        k = self.mask_patch // self.embed_stride
        token_mask = squares.repeat_interleave(k, 2).repeat_interleave(k, 3).flatten(1)
        out = encoder(clip, token_mask=token_mask, mask_token=self.mask_token)
        gt, gh, gw = encoder.grid
        feats = out.tokens[:, 1:].reshape(b, gt, gh, gw, -1)  # drop the class token
        c = self.out_stride // self.cell  # cells per token side
        pred = self.decoder(feats).reshape(b, gt, gh, gw, c, c, -1)
        pred = pred.permute(0, 1, 2, 4, 3, 5, 6).reshape(b, gt, gh * c, gw * c, -1)
        target = self.target(clip)
        m = self.mask_patch // self.cell
        cell_mask = squares.repeat_interleave(m, 2).repeat_interleave(m, 3)  # (B, T', Hc, Wc)
        err = (pred.float() - target).pow(2).mean(dim=-1)
        loss = (err * cell_mask).sum() / cell_mask.sum().clamp(min=1)
        return {"loss": loss, "pred": pred, "target": target, "mask": cell_mask}
