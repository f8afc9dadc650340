"""Safe reading of checkpoints and of the run configs stored in them.

Research groups exchange checkpoints; a ``torch.load(weights_only=False)`` of one runs whatever
its pickle holds. Everything here reads with ``weights_only=True`` (tensors, plain containers and
numbers only: what ``migalab-train`` writes), and a file that needs more is refused with a
message naming it. ``unsafe_unpickle=True`` is the explicit opt-in for a legacy file the user
trusts (``unsafe_unpickle_checkpoints=true`` on ``migalab-eval`` / ``migalab-predict``).

A checkpoint's stored config is instantiated to rebuild its model and data pipeline, so a config
``_target_`` is as powerful as a pickle. :func:`check_config_targets` admits only the suite's own
classes, a few named factory functions of the suite, and classes of its libraries that are
models (``nn.Module``), optimisers, learning-rate schedulers or metrics.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, ListConfig, OmegaConf

from migalab.utils.io import atomic_write

log = logging.getLogger(__name__)

#: top-level packages whose objects a stored config may name
ALLOWED_PACKAGES = ("migalab", "torch", "torchvision", "timm", "torchmetrics", "lightning")
#: functions of the suite a stored config may call (factories; every migalab class is allowed)
ALLOWED_FUNCTIONS = frozenset({"migalab.utils.schedulers.cosine_with_warmup"})
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint (or its stored config) would run code that is not the suite's own."""


def load_checkpoint(path: str | Path, *, unsafe_unpickle: bool = False, mmap: bool = False) -> Any:
    """Read a checkpoint onto the CPU without executing code from it.

    Args:
        path: a ``.ckpt`` / ``.pt`` / ``.pth`` file written by ``torch.save``.
        unsafe_unpickle: read it with full pickle (runs the code it holds): only for files
            the user wrote themselves or trusts; logged as a warning.
        mmap: memory-map the tensors instead of reading them (cheap peeks at metadata).

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file holds Python objects beyond tensors and plain data.
        ValueError: the file is not a readable torch checkpoint (truncated, another format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if unsafe_unpickle:
        log.warning(
            "UNSAFE: unpickling %s with weights_only=False; any code it holds runs now", path
        )
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        reason = _first_reason(str(err))
        raise UnsafeCheckpointError(
            f"refused to load checkpoint {path}: it holds Python objects beyond tensors and "
            f"plain data ({reason}), and unpickling them could run arbitrary code. Checkpoints "
            f"written by migalab-train never need this. If you wrote this file yourself or trust "
            f"its author, opt in with unsafe_unpickle_checkpoints=true."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"checkpoint {path} is not a readable torch checkpoint "
            f"({type(err).__name__}: {_first_reason(str(err))})"
        ) from err


def _first_reason(message: str) -> str:
    """The line of torch's weights-only error that names the offending global."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[0] if lines else "unknown reason"


#: classes renamed since checkpoints named them in their stored config: old -> new ``_target_``
RENAMED_TARGETS: dict[str, str] = {
    "migalab.data.datamodules.SkeletonDataModule": "migalab.data.datamodule.ClipDataModule",
}


#: checkpoint entries of renamed datamodules (Lightning keys a datamodule's state by class name)
RENAMED_STATE_KEYS: dict[str, str] = {"SkeletonDataModule": "ClipDataModule"}

#: keys a token-fusion modality entry had before encoders returned EncoderOutput (the encoder
#: now knows its token layout; its initial checkpoint moved into the encoder's config)
_OLD_FUSION_ENTRY_KEYS = ("kind", "input_size")


def upgrade_targets(cfg: Any) -> Any:
    """A copy of a stored config (plain containers) in today's shape: renamed ``_target_``
    values (:data:`RENAMED_TARGETS`) replaced by their current names, and token-fusion modality
    entries of older checkpoints migrated (``kind`` / ``input_size`` dropped, the entry's
    ``checkpoint`` moved to its ``encoder``'s ``init``)."""
    if isinstance(cfg, DictConfig | ListConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(cfg, Mapping):
        out = {
            k: RENAMED_TARGETS.get(v, v) if k == "_target_" and isinstance(v, str)
            else upgrade_targets(v)
            for k, v in cfg.items()
        }  # fmt: skip
        if str(out.get("_target_", "")).endswith("CrossModalTokenFusion"):
            for entry in (out.get("modalities") or {}).values():
                if isinstance(entry, dict) and isinstance(entry.get("encoder"), dict):
                    for key in _OLD_FUSION_ENTRY_KEYS:
                        entry.pop(key, None)
                    if "checkpoint" in entry:
                        entry["encoder"].setdefault("init", entry.pop("checkpoint"))
        return out
    if isinstance(cfg, list | tuple):
        return [upgrade_targets(v) for v in cfg]
    return cfg


def check_config_targets(cfg: Any, source: str) -> None:
    """Raise :class:`UnsafeCheckpointError` unless every ``_target_`` in ``cfg`` is allowed.

    Allowed: any class defined in ``migalab``; the functions in :data:`ALLOWED_FUNCTIONS`;
    ``data.dataset`` must name one of migalab's dataset specs (importing another would run it);
    classes of torch, torchvision, timm, torchmetrics and lightning that are modules (``nn.Module``,
    Lightning modules included), optimisers, learning-rate schedulers or metrics. ``source``
    names where the config came from (for the message).
    """
    if isinstance(cfg, DictConfig | ListConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    data = cfg.get("data") if isinstance(cfg, Mapping) else None
    dataset = data.get("dataset") if isinstance(data, Mapping) else None
    if dataset is not None:
        from migalab.data.specs.base import is_builtin

        if not is_builtin(dataset):
            raise UnsafeCheckpointError(
                f"{source}: refused data.dataset={dataset!r}: a config stored in a checkpoint may "
                f"only name migalab's own dataset specs (importing {dataset!r} would run its "
                f"code); give data.dataset on the command line to use your own"
            )
    for keypath, target in _targets(cfg, ""):
        reason = _target_problem(target)
        if reason:
            raise UnsafeCheckpointError(
                f"{source}: refused to instantiate {keypath or '<root>'}._target_={target!r} "
                f"({reason}); a config stored in a checkpoint may only name migalab's own "
                f"classes and the model, optimiser, scheduler and metric classes of its libraries"
            )


def _targets(node: Any, path: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(node, Mapping):
        if "_target_" in node:
            out.append((path, node["_target_"]))
        for key, value in node.items():
            out.extend(_targets(value, f"{path}.{key}" if path else str(key)))
    elif isinstance(node, Sequence) and not isinstance(node, str | bytes):
        for i, value in enumerate(node):
            out.extend(_targets(value, f"{path}[{i}]"))
    return out


def _library_bases() -> tuple[type, ...]:
    """What a library class named by a stored model/data config must be. Loggers, datasets and
    anything else that may touch the network or the file system are left out on purpose."""
    import torchmetrics
    from torch.optim.lr_scheduler import LRScheduler

    return (torch.nn.Module, torch.optim.Optimizer, LRScheduler, torchmetrics.Metric)


def _target_problem(target: Any) -> str | None:
    """Why ``target`` may not be instantiated from a stored config (None: it may)."""
    if not isinstance(target, str) or not _DOTTED.match(target):
        return "not a dotted import path"
    package = target.split(".", 1)[0]
    if package not in ALLOWED_PACKAGES:
        return f"package {package!r} is not one of {', '.join(ALLOWED_PACKAGES)}"
    if target in ALLOWED_FUNCTIONS:
        return None
    from hydra.utils import get_object

    try:  # imports a module of an allowed package: no code from the file runs
        obj = get_object(target)
    except Exception as err:  # noqa: BLE001 - any import failure means "cannot allow"
        return f"cannot be imported: {type(err).__name__}: {err}"
    if not inspect.isclass(obj):
        return "not a class" if package != "migalab" else "not a class nor an allowed factory"
    if package == "migalab" and obj.__module__.split(".", 1)[0] == "migalab":
        return None
    if not issubclass(obj, _library_bases()):
        return "a library class that is not a model, optimiser, scheduler or metric"
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, but each file is written to a temporary file next to it
    and moved into place (``os.replace``): a job killed while writing (``kill -9``, OOM, node
    failure) leaves the previous ``last.ckpt`` intact instead of a truncated one. Remote (fsspec
    URL) paths are written by Lightning as before. ``migalab-train`` always uses it unless the
    trainer config names a checkpoint IO plugin of its own."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))
        return None
