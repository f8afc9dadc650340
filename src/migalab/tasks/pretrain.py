"""Self-supervised pretraining task (``migalab-pretrain``): an encoder + a pretext head
(:mod:`migalab.models.pretrain`), no labels.

The module owns optimisation and the loss bookkeeping only, like the supervised tasks: the
encoder and the pretext head are built by Hydra and injected. Batches are the datamodule's
(``data.unlabelled``: windows of every sequence); ``x`` goes to ``pretext(encoder, x)``, which
returns ``{"loss": ...}``. Logged: ``train/loss`` per step and epoch, ``val/loss`` (the pretext
loss on the validation windows with masks fixed per batch, so epochs compare) when there is a
validation set. The checkpoint's ``encoder.*`` weights initialise a fine-tuned encoder:
``migalab-train ... model.encoder.init=<ckpt>`` (strict keys).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import MeanMetric

from migalab.tasks.optimization import OptimizationMixin


class PretrainModule(OptimizationMixin, LightningModule):
    """Encoder + pretext head trained on a self-supervised loss.

    Args:
        encoder: the encoder being pretrained (its state dict is what fine-tuning loads).
        pretext: ``pretext(encoder=encoder) -> nn.Module`` (a Hydra partial) whose
            ``forward(encoder, x, generator=None)`` returns a dict with ``loss``.
        optimizer: partial ``optimizer(params=...)``; scheduler: optional partial
            ``scheduler(optimizer, total_steps=...)`` stepped per step.
        compile: as for ``GestureModule``.
        lr_scaling: as for ``GestureModule``.
        channels_last: as for ``GestureModule``.
        val_seed: seed of the validation masks (the same masks every epoch).
        backbone_lr_mult: lr multiplier of the encoder against the pretext head (1: one lr).
    """

    def __init__(
        self,
        encoder: nn.Module,
        pretext: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
        lr_scaling: Mapping[str, Any] | None = None,
        channels_last: bool = False,
        val_seed: int = 0,
        backbone_lr_mult: float = 1.0,
    ) -> None:
        super().__init__()
        # modules, partials and OmegaConf containers stay out of the checkpoint (it must load
        # with torch.load(weights_only=True)); the run config is stored instead
        self.save_hyperparameters(
            ignore=["encoder", "pretext", "optimizer", "scheduler", "lr_scaling", "compile"]
        )
        self.encoder = encoder
        self.pretext = pretext(encoder=encoder) if not isinstance(pretext, nn.Module) else pretext
        self.init_optimization(optimizer, scheduler, compile, lr_scaling, channels_last)
        self.val_loss = MeanMetric()
        #: per split prefix: the last epoch's summary (metrics.json of migalab-train)
        self.last_summaries: dict[str, dict[str, float]] = {}

    def setup(self, stage: str) -> None:
        self.setup_encoder(stage)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        return self.pretext(self.encoder, x, generator=generator)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self(batch["x"])["loss"]
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["index"]),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["x"]
        device = batch["index"].device  # x may be a dict of modalities
        gen = torch.Generator(device=device).manual_seed(self.hparams.val_seed + batch_idx)
        out = self(x, generator=gen)
        self.val_loss.update(out["loss"], weight=len(batch["index"]))

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val/loss", loss, prog_bar=True, sync_dist=False)  # MeanMetric is synced
        self.last_summaries["val"] = {"loss": float(loss)}

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("train/loss_epoch")
        if loss is not None:
            self.last_summaries["train"] = {"loss": float(loss)}
