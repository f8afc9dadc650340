"""Callbacks the entry points always add (not optional config)."""

from __future__ import annotations

from typing import Any

from lightning import Callback, LightningModule, Trainer

CONFIG_KEY = "migalab_config"


class StoreConfigInCheckpoint(Callback):
    """Put the resolved run config into every checkpoint, so ``migalab-eval`` can rebuild the
    exact model and data pipeline from the checkpoint alone."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
