"""Fusion records (``fusion.json``) and the fusion options, read and checked strictly.

``migalab-eval`` writes the weights (and per-checkpoint temperatures) of a score fusion to
``fusion.json`` and to the ``fusion`` entry of ``metrics.json``; ``migalab-predict
fusion.from=<file>`` and ``migalab-eval fusion.from=<file>`` read them back
(:func:`read_fusion_record`). The file is user input: anything wrong with it -- unreadable, larger
than :data:`MAX_RECORD_BYTES`, not UTF-8 JSON, nested deeper than :data:`MAX_DEPTH`, a duplicate
key, not a JSON object, no weights, weights or temperatures that are not what
:func:`check_weights` / :func:`check_temperatures` accept -- is one :class:`FusionRecordError`
naming the file and the problem. The command-line options ``fusion.weights`` and
``fusion.temperature`` go through the same two checks.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from migalab.errors import UserError

__all__ = [
    "MAX_DEPTH",
    "MAX_RECORD_BYTES",
    "FusionRecordError",
    "check_temperatures",
    "check_weights",
    "read_fusion_record",
]

#: the largest fusion record read (a ``fusion.json`` is under 1 KiB, a ``metrics.json`` with
#: per-class metrics and confusion matrices some 100 KiB)
MAX_RECORD_BYTES = 4 * 1024 * 1024
#: the deepest nesting of JSON arrays / objects accepted (``metrics.json`` has 4 levels)
MAX_DEPTH = 32


class FusionRecordError(UserError, ValueError):
    """A fusion record (``fusion.from``) or a fusion option (``fusion.weights``,
    ``fusion.temperature``) that cannot be used; the message names the file or option."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _numbers(value: Any, where: str, what: str) -> list[float]:
    """``value``, a non-empty list (or an OmegaConf list) of finite real numbers, as floats."""
    if isinstance(value, ListConfig | DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, list | tuple):
        raise FusionRecordError(
            f"{where} must be a list of {what}, one per checkpoint, got {_show(value)}"
        )
    if not value:
        raise FusionRecordError(f"{where} must not be empty")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise FusionRecordError(f"{where}[{i}] must be a number, got {_show(v)}")
        try:
            f = float(v)
        except OverflowError:  # an integer beyond the floats
            f = math.inf
        if not math.isfinite(f):
            raise FusionRecordError(f"{where}[{i}] must be finite, got {_show(v)}")
        out.append(f)
    return out


def _count(values: Sequence[Any], n: int | None, where: str) -> None:
    if n is not None and len(values) != n:
        raise FusionRecordError(f"{where} has {len(values)} values for {n} checkpoints")


def check_weights(value: Any, n: int | None = None, where: str = "fusion.weights") -> list[float]:
    """Fusion weights as floats: a non-empty list of finite, non-negative real numbers (no
    bools, no strings) with a positive sum, ``n`` of them when the number of checkpoints ``n``
    is known. ``where`` names the option or file in the :class:`FusionRecordError` raised."""
    values = _numbers(value, where, "non-negative weights")
    for i, v in enumerate(values):
        if v < 0:
            raise FusionRecordError(f"{where}[{i}] must be non-negative, got {_show(v)}")
    if not sum(values) > 0:
        raise FusionRecordError(f"{where} must have a positive sum, got {_show(values)}")
    _count(values, n, where)
    return values


def check_temperatures(
    value: Any, n: int | None = None, where: str = "fusion.temperature"
) -> list[float] | None:
    """Per-checkpoint temperatures as floats: None, or a non-empty list of finite, positive
    real numbers (``n`` of them when known). ``where`` names the option or file."""
    if value is None:
        return None
    values = _numbers(value, where, "positive temperatures")
    for i, v in enumerate(values):
        if not v > 0:
            raise FusionRecordError(f"{where}[{i}] must be positive, got {_show(v)}")
    _count(values, n, where)
    return values


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {_show(key)}")
        out[key] = value
    return out


def _depth(data: Any) -> int:
    """The nesting depth of parsed JSON (a scalar: 0, ``[]``: 1), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, level + 1) for c in children)
    return deepest


def _load_json(path: Path, where: str) -> Any:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        raise FusionRecordError(f"{where}: no such file") from None
    except OSError as err:
        raise FusionRecordError(f"{where}: cannot be read ({err.strerror or err})") from None
    if len(raw) > MAX_RECORD_BYTES:
        raise FusionRecordError(
            f"{where}: larger than {MAX_RECORD_BYTES} bytes; not a fusion record"
        )
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise FusionRecordError(f"{where}: JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, a duplicate key
        raise FusionRecordError(f"{where}: not valid UTF-8 JSON ({err})") from None
    if _depth(data) > MAX_DEPTH:
        raise FusionRecordError(f"{where}: JSON nested too deeply (over {MAX_DEPTH} levels)")
    return data


def read_fusion_record(path: str | Path, n: int | None = None) -> dict[str, Any]:
    """The fusion record of a ``fusion.json`` (the object itself) or a ``metrics.json`` (its
    ``fusion`` entry), checked: ``weights`` (:func:`check_weights`, ``n`` of them when the
    number of checkpoints is known) and ``temperatures`` (:func:`check_temperatures`, absent =
    null). Returns the record with the checked ``weights`` and ``temperatures`` as floats.
    Raises :class:`FusionRecordError` naming the file."""
    where = f"fusion.from {path}"
    data = _load_json(Path(path), where)
    if not isinstance(data, dict):
        raise FusionRecordError(f"{where}: must hold a JSON object, got {type(data).__name__}")
    record = data
    if "weights" not in data and "fusion" in data:  # a metrics.json
        record = data["fusion"]
        if record is None:
            raise FusionRecordError(
                f"{where}: holds no fusion weights (its evaluation had one checkpoint)"
            )
        if not isinstance(record, dict):
            raise FusionRecordError(f"{where}: its fusion entry must be a JSON object")
    if record.get("weights") is None:
        raise FusionRecordError(f"{where}: holds no fusion weights")
    out = dict(record)
    out["weights"] = check_weights(record["weights"], n, f"{where}: weights")
    out["temperatures"] = check_temperatures(
        record.get("temperatures"), n, f"{where}: temperatures"
    )
    return out
