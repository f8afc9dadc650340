from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from migalab.utils import io


def test_atomic_json_roundtrip_and_no_temp_left(tmp_path: Path) -> None:
    path = io.atomic_write_json(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 0.5, "p": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    path = io.atomic_write_json(tmp_path / "m.json", {"ok": 1})
    with pytest.raises(TypeError):
        io.atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_file_lock_makes_preparers_take_turns(tmp_path: Path) -> None:
    """A second holder waits until the first releases (separate opens conflict under flock,
    as separate processes do)."""
    import threading
    import time

    from migalab.utils.io import file_lock

    events: list[str] = []
    lock = tmp_path / "sub" / ".cache.prepare.lock"

    def first() -> None:
        with file_lock(lock):
            events.append("first in")
            time.sleep(0.3)
            events.append("first out")

    t = threading.Thread(target=first)
    t.start()
    time.sleep(0.1)
    with file_lock(lock):
        events.append("second in")
    t.join()
    assert events == ["first in", "first out", "second in"]
