"""Atomic file writes: a temp file in the target's folder, then ``os.replace``.

A reader never sees a half-written file, and a crash leaves at most a hidden ``.<name>.*.tmp``
behind (removed on any Python exception). Used for caches, reports, metrics and configs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import IO, Any


@cache
def default_file_mode() -> int:
    """Permission bits a plain ``open(path, "w")`` would give (0o666 minus the umask);
    ``mkstemp`` alone would leave 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, dump: Callable[[IO[Any]], Any], mode: str = "wb") -> Path:
    """Call ``dump(f)`` on a temp file next to ``path`` and move it into place.

    ``mode`` is ``"wb"`` or ``"w"`` (text, UTF-8, ``newline=""``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as f:
            dump(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    return atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (NumPy scalars/arrays and paths allowed)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_to_builtin))


def _to_builtin(obj: Any) -> Any:
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (its folder created if missing) for the ``with``
    block (``filelock.FileLock``: ``flock`` where the filesystem has it, Windows locks there):
    processes preparing the same data one after another instead of at once (parallel jobs of a
    sweep or a comparison script on a fresh data dir)."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield
