"""Safe reading of checkpoints and of the run configs stored in them.

Research groups exchange checkpoints; a ``torch.load(weights_only=False)`` of one runs whatever
its pickle holds. Everything here reads with ``weights_only=True`` (tensors, plain containers and
numbers only: what ``migalab-train`` writes), and a file that needs more is refused with a
message naming it. ``unsafe_unpickle=True`` is the explicit opt-in for a legacy file the user
trusts (``unsafe_unpickle_checkpoints=true`` on ``migalab-eval`` / ``migalab-predict``).

A checkpoint's stored config is instantiated to rebuild its model and data pipeline, so a config
``_target_`` is as powerful as a pickle: :mod:`migalab.utils.stored_config` treats it as data
(exact allowlist, no interpolation, locations from the current run). A zip checkpoint whose
entries would inflate far beyond the file's size is refused before torch reads it
(:func:`check_inflation`).
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, ListConfig, OmegaConf

from migalab.errors import MissingInputError, UserError
from migalab.utils.io import atomic_write
from migalab.utils.stored_config import (  # noqa: F401 - re-exported: where callers look
    ALLOWED_TARGETS,
    UnsafeCheckpointError,
    check_config_targets,
)

log = logging.getLogger(__name__)

#: a checkpoint's zip entries may inflate to at most this many times the file's size (torch.save
#: stores them uncompressed: a ratio of 1); a compressed entry beyond it is a decompression bomb
MAX_INFLATION = 4.0
#: below this total size (bytes) inflation is not checked (tiny files, small absolute risk)
INFLATION_FLOOR = 64 * 2**20


class CheckpointReadError(UserError, ValueError):
    """A file given as a checkpoint is not a readable torch checkpoint (named in the message)."""


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
        raise MissingInputError(f"checkpoint {path} does not exist")
    check_inflation(path)
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
        raise CheckpointReadError(
            f"checkpoint {path} is not a readable torch checkpoint "
            f"({type(err).__name__}: {_first_reason(str(err))})"
        ) from err


def check_inflation(path: Path) -> None:
    """Refuse a zip checkpoint whose entries declare more than :data:`MAX_INFLATION` times the
    file's size once inflated (above :data:`INFLATION_FLOOR` bytes): a few KB of deflated zeros
    would otherwise become gigabytes in memory. Reads only the zip's central directory."""
    if not zipfile.is_zipfile(path):
        return  # the legacy (non-zip) format stores tensors raw
    try:
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointReadError(
            f"checkpoint {path} is not a readable torch checkpoint ({err})"
        ) from err
    size = max(path.stat().st_size, 1)
    if declared > INFLATION_FLOOR and declared > MAX_INFLATION * size:
        raise UnsafeCheckpointError(
            f"refused to load checkpoint {path}: its entries inflate to {declared / 2**20:.0f} MiB "
            f"from a {size / 2**20:.1f} MiB file ({declared / size:.0f}x; torch.save writes them "
            f"uncompressed), a decompression bomb"
        )


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


#: the fusion necks that held their own encoders until 0.1 (their ``_target_`` suffixes) and
#: how their stored config named the streams: the token fusion's ``modalities`` mapping, or
#: InterFusion's two stream keys
_OLD_NECK_STREAMS: dict[str, tuple[str, ...] | None] = {
    "CrossModalTokenFusion": None,
    "InterFusion": ("face", "context"),
}
#: a neck-holding model's parameter names before the split: ``encoder.encoders.<stream>.`` (the
#: backbones) and the rest of ``encoder.`` (the neck)
_OLD_BACKBONES, _OLD_NECK = "encoder.encoders.", "encoder."


def upgrade_targets(cfg: Any) -> Any:
    """A copy of a stored config (plain containers) in today's shape: renamed ``_target_``
    values (:data:`RENAMED_TARGETS`) replaced by their current names, token-fusion modality
    entries of older checkpoints migrated (``kind`` / ``input_size`` dropped, the entry's
    ``checkpoint`` moved to its ``encoder``'s ``init``), and a model whose ``encoder`` was a
    fusion neck holding its backbones split into ``encoders`` + ``neck``
    (:func:`split_neck_config`)."""
    if isinstance(cfg, DictConfig | ListConfig):
        cfg = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(cfg, Mapping):
        out = {
            k: RENAMED_TARGETS.get(v, v)
            if k == "_target_" and isinstance(v, str)
            else upgrade_targets(v)
            for k, v in cfg.items()
        }
        if str(out.get("_target_", "")).endswith("CrossModalTokenFusion"):
            for entry in (out.get("modalities") or {}).values():
                if isinstance(entry, dict) and isinstance(entry.get("encoder"), dict):
                    for key in _OLD_FUSION_ENTRY_KEYS:
                        entry.pop(key, None)
                    if "checkpoint" in entry:
                        entry["encoder"].setdefault("init", entry.pop("checkpoint"))
        return split_neck_config(out)
    if isinstance(cfg, list | tuple):
        return [upgrade_targets(v) for v in cfg]
    return cfg


def _old_neck_streams(node: Any) -> tuple[str, ...] | None:
    """The stream names of a pre-split fusion neck config (one holding its encoders), else
    None."""
    if not isinstance(node, Mapping):
        return None
    target = str(node.get("_target_", ""))
    for suffix, streams in _OLD_NECK_STREAMS.items():
        if target.endswith("." + suffix):
            if streams is None:  # the token fusion: its modalities mapping
                modalities = node.get("modalities")
                return tuple(modalities) if isinstance(modalities, Mapping) else None
            return streams if all(isinstance(node.get(s), Mapping) for s in streams) else None
    return None


def split_neck_config(model: dict[str, Any]) -> dict[str, Any]:
    """A model config whose ``encoder`` is a fusion neck holding its backbones (before 0.1:
    ``encoder: {_target_: ...CrossModalTokenFusion, modalities: {rgb: {encoder, pool}, ...}}``
    or ``encoder: {_target_: ...InterFusion, face: {encoder, pool}, context: ...}``) in today's
    shape: ``encoders: {stream: <encoder config>}`` and ``neck: {<the rest>, pool: {stream:
    pool}, _partial_: true}``, keys in the same order (``encoders`` then ``neck`` where
    ``encoder`` was). Any other mapping is returned as it is."""
    streams = _old_neck_streams(model.get("encoder"))
    if streams is None:
        return model
    old = model["encoder"]
    entries = old["modalities"] if "modalities" in old else {s: old[s] for s in streams}
    encoders: dict[str, Any] = {}
    pools: dict[str, Any] = {}
    positions: dict[str, Any] = {}
    for name, entry in entries.items():
        if isinstance(entry, Mapping) and "encoder" in entry:
            encoders[name] = entry["encoder"]
            pools[name] = entry.get("pool") or "none"
            if entry.get("spatial_positions") is not None:
                positions[name] = entry["spatial_positions"]
        else:  # a bare encoder config
            encoders[name], pools[name] = entry, "none"
    skip = {"modalities", *streams} if "modalities" in old else set(streams)
    neck = {k: v for k, v in old.items() if k not in skip}
    neck["pool"] = pools
    if positions:
        neck["spatial_positions"] = positions
    neck["_partial_"] = True
    out: dict[str, Any] = {}
    for key, value in model.items():
        if key == "encoder":
            out["encoders"], out["neck"] = encoders, neck
        else:
            out[key] = value
    return out


def upgrade_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """A model state dict in today's parameter names: one saved before the fusion necks were
    split from their backbones (it has ``encoder.encoders.<stream>.*`` keys) gets
    ``encoder.encoders.<stream>.*`` -> ``encoders.<stream>.*`` and every other ``encoder.*`` ->
    ``neck.*``; any other state dict comes back unchanged (as a new dict)."""
    if not any(str(k).startswith(_OLD_BACKBONES) for k in state):
        return dict(state)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(_OLD_BACKBONES):
            key = "encoders." + key[len(_OLD_BACKBONES) :]
        elif key.startswith(_OLD_NECK):
            key = "neck." + key[len(_OLD_NECK) :]
        out[key] = value
    return out


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
