"""Micro-gesture classification task: any encoder (or fusion block) + a classification head.

The module owns loss, metrics and optimisation only. The encoder is a plain ``nn.Module`` built
by Hydra and injected; it maps a batch input to ``(tokens, pooled)`` where ``pooled`` is
(N, C). The head is injected as a partial that receives ``in_channels=encoder.out_channels``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from migalab.tasks.losses import ClassificationLoss
from migalab.tasks.metrics import build_metrics, summarize


class GestureModule(LightningModule):
    """Clip-level micro-gesture classifier.

    Batches are dicts with ``x`` (encoder input, e.g. (N, C, T, V, M) skeletons), ``label`` (N,)
    and ``index`` (N,) dataset positions.

    Args:
        encoder: module with ``out_channels`` whose forward returns ``(tokens, pooled (N, C))``.
        head: a module, or a callable ``head(in_channels=C) -> nn.Module`` giving logits (N, K).
        optimizer: partial ``optimizer(params=...)``.
        scheduler: optional partial ``scheduler(optimizer, total_steps=...)`` stepped per step.
        loss: a :class:`ClassificationLoss` (class weights filled from the datamodule's counts).
        num_classes: K.
        class_names: names for per-class reports.
        backbone_lr_mult: lr multiplier for encoder parameters (1.0 = same as the head).
        compile: wrap the encoder in ``torch.compile``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module | Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        loss: ClassificationLoss | None = None,
        num_classes: int = 32,
        class_names: Sequence[str] | None = None,
        backbone_lr_mult: float = 1.0,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # init args that are modules, partials or OmegaConf containers stay out of the checkpoint
        # (it must load with torch.load(weights_only=True)); the run config is stored instead
        self.save_hyperparameters(
            ignore=["encoder", "head", "loss", "optimizer", "scheduler", "class_names"]
        )
        self.encoder = encoder
        self.head = head if isinstance(head, nn.Module) else head(in_channels=encoder.out_channels)
        self.loss_fn = loss if loss is not None else ClassificationLoss()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_metrics = build_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = build_metrics(num_classes).clone(prefix="test/")
        self.last_summaries: dict[str, dict[str, object]] = {}
        self._compile = compile

    # -- model ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder input → logits (N, K)."""
        _, pooled = self.encoder(x)
        return self.head(pooled)

    def setup(self, stage: str) -> None:
        """Take training class counts from the datamodule for class-balanced losses."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        counts = getattr(dm, "class_counts", None)
        if counts is not None:
            self.loss_fn.set_class_counts(counts)
        if self._compile and stage == "fit":
            self.encoder = torch.compile(self.encoder)

    # -- steps ----------------------------------------------------------------------------------
    def _shared_step(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["x"])
        return logits, self.loss_fn(logits, batch["label"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits, loss = self._shared_step(batch)
        n = batch["label"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n, sync_dist=False)
        self.train_top1(logits.detach(), batch["label"])
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True,
                 batch_size=n)  # fmt: skip
        return loss

    def _eval_step(self, batch: dict[str, Any], metrics: Any, prefix: str) -> torch.Tensor:
        logits, loss = self._shared_step(batch)
        metrics.update(logits, batch["label"])
        self.log(f"{prefix}/loss", loss, batch_size=batch["label"].shape[0], sync_dist=True)
        return logits

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Logits (N, K) with dataset indices and labels, for evaluation and score fusion."""
        return {"logits": self(batch["x"]), "index": batch["index"], "label": batch["label"]}

    def _log_epoch(self, metrics: Any, prefix: str) -> None:
        summary = summarize(
            {k.removeprefix(f"{prefix}/"): v for k, v in metrics.compute().items()},
            self.class_names,
        )
        metrics.reset()
        for key in ("top1", "top5", "macro_f1", "mean_class_acc"):
            self.log(f"{prefix}/{key}", summary[key], prog_bar=key == "top1", sync_dist=False)
        self.last_summaries[prefix] = summary

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        mult = self.hparams.backbone_lr_mult
        enc = [p for p in self.encoder.parameters() if p.requires_grad]
        rest = [
            p
            for n, p in self.named_parameters()
            if p.requires_grad and not n.startswith("encoder.")
        ]
        if mult == 1.0:
            optimizer = self.optimizer_factory(params=enc + rest)
        else:
            optimizer = self.optimizer_factory(params=[{"params": rest}])
            base_lr = optimizer.param_groups[0]["lr"]
            optimizer.add_param_group({"params": enc, "lr": base_lr * mult})
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=self.trainer.estimated_stepping_batches
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
