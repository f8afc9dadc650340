"""Hydra glue shared by the entry points: resolvers, instantiation of callbacks/loggers, config
printing and saving."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from migalab.utils.io import atomic_write_text

log = logging.getLogger(__name__)


def register_resolvers() -> None:
    """Register the ``${migalab_root:}``, ``${class_names:}`` and
    ``${heatmap_channels:<layout>,<stream>}`` resolvers (idempotent)."""
    from migalab.data.classes import CLASS_NAMES
    from migalab.data.datamodules import heatmap_channels
    from migalab.utils.paths import project_root

    if not OmegaConf.has_resolver("migalab_root"):
        OmegaConf.register_new_resolver("migalab_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("class_names"):
        OmegaConf.register_new_resolver("class_names", lambda: OmegaConf.create(list(CLASS_NAMES)))
    if not OmegaConf.has_resolver("heatmap_channels"):
        OmegaConf.register_new_resolver("heatmap_channels", heatmap_channels)


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Every ``_target_`` entry of the callbacks group, in order."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Every ``_target_`` entry of the logger group."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def save_resolved_config(cfg: DictConfig, output_dir: str | Path) -> Path:
    """Write the fully resolved config as ``<output_dir>/config_resolved.yaml``."""
    return atomic_write_text(
        Path(output_dir) / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True)
    )


def resolved_container(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain resolved Python containers (for checkpoints and loggers)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
