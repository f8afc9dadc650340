"""The suite's OmegaConf resolvers (``${class_names:}``, ``${cores:4}``, ...), registered by
every entry point before Hydra composes a config. Light on imports (no torch, no Lightning):
console scripts register them before ``--help`` is answered."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf


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
    from migalab.data.representations.heatmap import heatmap_channels

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
