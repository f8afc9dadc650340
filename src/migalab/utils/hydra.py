"""Hydra glue shared by the entry points: resolvers, instantiation of callbacks/loggers, config
printing and saving."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from migalab.utils.io import atomic_write_text
from migalab.utils.resolvers import (  # noqa: F401  (re-exported for existing imports)
    REQUEUEING_LAUNCHERS,
    ckpt_path_default,
    register_resolvers,
    usable_cores,
)

log = logging.getLogger(__name__)


def compose_config(
    config_name: str, overrides: Sequence[str] = (), output_dir: Path | None = None
) -> DictConfig:
    """Compose ``<config_name>.yaml`` of the installed configs with overrides as the CLI would,
    outside a Hydra app (tests, benchmarks, notebooks): no run dir is created; ``output_dir`` sets
    ``paths.output_dir`` / ``paths.log_dir``. The Hydra config is registered (for
    ``${hydra:...}`` interpolations) and removed from the returned config."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from migalab.utils.paths import CONFIG_MODULE

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(Path(output_dir) / "logs")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


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
