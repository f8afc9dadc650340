"""Hydra glue shared by the entry points: resolvers, instantiation of callbacks/loggers, config
printing and saving."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from migalab.utils.io import atomic_write_text

log = logging.getLogger(__name__)


def register_resolvers() -> None:
    """Register the suite's resolvers (idempotent):

    * ``${migalab_root:}``: the project root (:func:`migalab.utils.paths.project_root`);
    * ``${class_names:}`` / ``${num_classes:}``: of the dataset spec named by ``data.dataset``
      (``miga2025`` when the config has none);
    * ``${heatmap_channels:<layout>,<stream>}``: input channels of a heatmap encoder;
    * ``${ckpt_path_default:}``: see :func:`ckpt_path_default`;
    * ``${cores:<at most>}``: see :func:`usable_cores` (worker counts that follow the machine).
    """
    from migalab.utils.paths import project_root

    resolvers = {
        "migalab_root": lambda: str(project_root()),
        "class_names": lambda *, _root_: OmegaConf.create(list(_dataset(_root_).class_names)),
        "num_classes": lambda *, _root_: _dataset(_root_).num_classes,
        "heatmap_channels": _heatmap_channels,
        "ckpt_path_default": ckpt_path_default,
        "cores": usable_cores,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def usable_cores(at_most: int | str | None = None) -> int:
    """The CPU cores this process may run on (its affinity mask, else ``os.cpu_count()``), capped
    at ``at_most``; at least 1. ``${cores:4}`` in a config: e.g. 2 worker processes on a
    2-core machine, 4 on a 16-core one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    if at_most is not None and str(at_most) != "":
        cores = min(cores, int(at_most))
    return max(1, cores)


def _dataset(root: DictConfig) -> Any:
    """The DatasetSpec named by ``data.dataset`` of a config (miga2025 when unset)."""
    from migalab.data.specs import get_dataset

    name = OmegaConf.select(root, "data.dataset", default=None)
    return get_dataset(name or "miga2025")


def _heatmap_channels(layout: str, stream: str) -> int:
    from migalab.data.pipelines.heatmap import heatmap_channels

    return heatmap_channels(layout, stream)


#: launchers whose jobs may be requeued with the same command (``ckpt_path`` defaults to auto)
REQUEUEING_LAUNCHERS = ("slurm",)


def ckpt_path_default() -> str | None:
    """``${ckpt_path_default:}``: ``"auto"`` in a job of a requeueing launcher
    (``hydra/launcher=slurm``: a requeued job runs the very same command and must resume), else
    None (a fresh run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    choice = HydraConfig.get().runtime.choices.get("hydra/launcher")
    return "auto" if choice in REQUEUEING_LAUNCHERS else None


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
