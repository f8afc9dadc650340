"""``migalab-prepare`` on hostile release files, in a fresh interpreter under the audit hook
(:mod:`tests.security.audit`), from a temporary working directory: nothing runs, nothing is
opened outside the run (the secret folder a pickle names is never opened), nothing is written
outside the cache; the run exits 2 with one ``error:`` line naming the file (``--strict``), or,
without ``--strict``, reports the file and converts the rest.

One subprocess per hostile format (~6 s each); heavier variants are marked slow."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.data.formats.hostile import base_xlsx, far_cell_xlsx, zip_bomb_xlsx
from tests.security.audit import AuditedRun, run_audited

ENTRY = "migalab.data.prepare:main"


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """A working directory, a cache folder (the only writable one) and a secret folder."""
    paths = {name: tmp_path / name for name in ("cwd", "cache", "secret", "src")}
    for name in ("cwd", "secret", "src"):
        paths[name].mkdir()
    (paths["secret"] / "key.txt").write_text("secret")
    return paths


def _prepare(world: dict[str, Path], src: Path, *args: str) -> AuditedRun:
    run = run_audited(ENTRY, [str(src), str(world["cache"]), "--quiet", *args], cwd=world["cwd"],
                      writable=[world["cache"]], forbidden=[world["secret"]])  # fmt: skip
    assert run.events == [], run.events
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert list(world["cwd"].iterdir()) == []  # nothing left in the working directory
    return run


def _refused(run: AuditedRun, path: Path, why: str) -> None:
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), run.stderr[-3000:]
    assert why in lines[0], lines[0]


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def _loader_walk(secret: Path) -> bytes:
    """``numpy.dtypes.__loader__.get_data(secret)`` (protocol 4 walks the dotted name)."""
    return (b"\x80\x04" + _unicode("numpy.dtypes") + _unicode("__loader__.get_data") + b"\x93"
            + _unicode(str(secret)) + b"\x85R.")  # fmt: skip


def test_pyskl_pickle(world: dict[str, Path]) -> None:
    """A pyskl annotation pickle that would read a file outside the run."""
    path = world["src"] / "ann.pkl"
    path.write_bytes(_loader_walk(world["secret"] / "key.txt"))
    run = _prepare(world, path, "--dataset", "pyskl", "--strict")
    _refused(run, path, "numpy.dtypes.__loader__.get_data")


@pytest.mark.slow  # a subprocess each; the xlsx and pyskl ones stay in the fast suite
def test_npy2023_release(world: dict[str, Path]) -> None:
    """A 2023 release: ``train`` with a label pickle that asks for the rot13 codec (a codec
    lookup imports a module), ``val`` with an npy header declaring 10**9 samples in a small
    file. Without --strict both are reported, nothing is converted: exit 1."""
    src = world["src"]
    np.save(src / "train_data.npy", np.zeros((2, 3, 5, 22, 1), np.float32))
    (src / "train_label.pkl").write_bytes(
        b"\x80\x02c_codecs\nencode\n" + _unicode("abc") + _unicode("rot13") + b"\x86R."
    )
    np.save(src / "val_data.npy", np.zeros((2, 3, 5, 22, 1), np.float32))
    raw = (src / "val_data.npy").read_bytes()
    (src / "val_data.npy").write_bytes(raw.replace(b"(2, 3,", b"(1000000000, 3,"))
    (src / "val_label.pkl").write_bytes(pickle.dumps((["a_0", "a_1"], [0, 1])))
    run = _prepare(world, src, "--dataset", "miga2023_npy", "--splits", "train", "val")
    assert run.returncode == 1 and "no video could be converted" in run.stderr
    report = json.loads((world["cache"] / "prepare_report.json").read_text())
    skipped = {s["file"]: s["error"] for s in report["skipped"]}
    assert "_codecs.encode" in skipped[str(src / "train_label.pkl")]
    assert "1000000000" in skipped[str(src / "val_data.npy")]


def _release(tiny_release: Path, world: dict[str, Path]) -> tuple[Path, Path]:
    """A copy of the tiny synthetic release and its first video folder."""
    release = world["src"] / "release"
    shutil.copytree(tiny_release, release)
    return release, sorted((release / "train").iterdir())[0]


def test_xlsx_release(tiny_release: Path, world: dict[str, Path], tmp_path: Path) -> None:
    """A 5 KB xlsx with one cell at XFD999999 (python-calamine would abort the process)."""
    release, folder = _release(tiny_release, world)
    bomb = far_cell_xlsx(base_xlsx(tmp_path / "b.xlsx"), folder / f"{folder.name}_openpose.xlsx")
    run = _prepare(world, release, "--splits", "train", "--strict")
    _refused(run, bomb, "XFD999999")


@pytest.mark.slow  # a subprocess each; the xlsx and pyskl ones stay in the fast suite
def test_csv_release(tiny_release: Path, world: dict[str, Path]) -> None:
    """A csv table whose one line holds 100,001 fields (pandas would allocate them for every
    row)."""
    release, folder = _release(tiny_release, world)
    table = folder / f"{folder.name}_openpose.csv"
    table.write_text("0," * 100_000 + "0\n")
    run = _prepare(world, release, "--splits", "train", "--strict")
    _refused(run, table, "100001 fields")


@pytest.mark.slow
def test_release_without_strict_converts_the_rest(
    tiny_release: Path, world: dict[str, Path], tmp_path: Path
) -> None:
    """Without --strict: a far-cell xlsx, a zip bomb, a too-wide csv and a 200,000-line label
    file are each reported and the other videos converted (exit 0)."""
    release, _ = _release(tiny_release, world)
    folders = sorted((release / "train").iterdir()) + sorted((release / "validate").iterdir())
    base = base_xlsx(tmp_path / "b.xlsx")
    bad = [
        far_cell_xlsx(base, folders[0] / f"{folders[0].name}_openpose.xlsx"),
        zip_bomb_xlsx(base, folders[1] / f"{folders[1].name}_openpose.xlsx"),
        folders[2] / f"{folders[2].name}_openpose.csv",
        folders[4] / f"{folders[4].name}_label.csv",
    ]
    bad[2].write_text("0," * 100_000 + "0\n")
    bad[3].write_text("1,0,1\n" * 200_000)
    run = _prepare(world, release, "--splits", "train", "validate")
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((world["cache"] / "prepare_report.json").read_text())
    assert sorted(s["file"] for s in report["skipped"]) == sorted(str(p) for p in bad)
    assert report["num_videos"] == len(folders) - len(bad)


@pytest.mark.slow
def test_npy2023_strict(world: dict[str, Path]) -> None:
    src = world["src"]
    np.save(src / "train_data.npy", np.zeros((2, 3, 5, 22, 1), np.float32))
    (src / "train_label.pkl").write_bytes(_loader_walk(world["secret"] / "key.txt"))
    run = _prepare(world, src, "--dataset", "miga2023_npy", "--splits", "train", "--strict")
    _refused(run, src / "train_label.pkl", "numpy.dtypes.__loader__.get_data")
