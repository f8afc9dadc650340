"""notebooks/: committed without outputs, and (slow) executed top to bottom on tiny synthetic
data through a real Jupyter kernel (nbclient), as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebooks_are_committed_without_outputs() -> None:
    found = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert {p.stem for p in found} >= {"data_exploration", "results_analysis"}
    for path in found:
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


def _execute(name: str, cwd: Path) -> dict:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()  # fmt: skip
    return nb


def _outputs(nb: dict, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if kind in o.get("data", {})]  # fmt: skip


@pytest.mark.slow
def test_data_exploration_notebook_runs(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIGALAB_NB_RELEASE", str(tiny_release))
    monkeypatch.setenv("MIGALAB_NB_CACHE", str(tiny_cache))
    nb = _execute("data_exploration", tmp_path)
    assert len(_outputs(nb, "image/png")) >= 2  # class histogram, clip lengths
    assert any("<script" in o["data"]["text/html"] for o in _outputs(nb, "text/html"))  # animation


@pytest.mark.slow
def test_results_analysis_notebook_runs(
    cli_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, ckpt = cli_run
    runs = sorted(p.parent for p in (cwd / "logs").glob("train/runs/*/metrics.json"))
    monkeypatch.setenv("MIGALAB_NB_RUNS", ",".join(str(r) for r in runs))
    nb = _execute("results_analysis", tmp_path)
    assert len(_outputs(nb, "image/png")) >= 2  # curves, confusion + per-class
    tables = _outputs(nb, "text/html")
    assert any("clip" in o["data"]["text/html"] and "confidence" in o["data"]["text/html"]
               for o in tables)  # the worst-errors table  # fmt: skip
