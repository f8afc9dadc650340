"""The README's comparison scripts, run as a user runs them (``python scripts/<name>.py``, from
another directory) on tiny synthetic data: they train, evaluate and write their tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, check=False)  # fmt: skip
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_emotion_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = _run([str(SCRIPTS / "emotion_table.py"), "--out", str(out), "--seeds", "0", "--",
                 f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=1",
                 "data.synthetic.num_videos={train:6,validate:4,test:6}"], cwd=tmp_path)  # fmt: skip
    rows = json.loads((out / "results.json").read_text())
    assert [r["row"] for r in rows] == [
        "majority", "face only (SwinFace)", "context only (ResNet3D xs)",
        "late fusion face+context (val-searched)", "InterFusion (System B)",
    ]  # fmt: skip
    for r in rows:
        assert 0 <= r["acc"] <= 1 and r["ci95"]["acc"][0] <= r["acc"] <= r["ci95"]["acc"][1]
    assert rows[0]["auroc"] == 0.5 and rows[0]["balance"]["train"]["videos"] == 6
    diff = rows[-1]["vs majority"]["acc"]
    assert diff["lo"] <= diff["diff"] <= diff["hi"] and 0 <= diff["p_not_better"] <= 1
    assert "| 0 | InterFusion (System B) |" in text and (out / "results.md").is_file()


@pytest.mark.slow
def test_compare_system_b(tmp_path: Path) -> None:
    """Two seeds of every row at tiny sizes: per-seed metrics, mean ± sd and paired diffs."""
    out = tmp_path / "out"
    text = _run([str(SCRIPTS / "compare_system_b.py"), "--out", str(out), "--seeds", "0", "1",
                 "--", f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=1",
                 "data.synthetic.num_videos={train:4,validate:2,test:2}",
                 "++data.synthetic.clips_per_video=[4,6]", "data.video.size=32",
                 "data.video.prepared_size=32"], cwd=tmp_path)  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and len(results["per_seed"]) == 2
    rows = results["per_seed"][0]
    assert set(rows) == {
        "RGB only (ResNet3D xs)", "joint (2s-AGCN)", "bone (2s-AGCN)",
        "joint + bone score fusion", "RGB + joint + bone score fusion",
        "token fusion RGB + joint + bone", "token fusion joint + bone",
        "token fusion RGB + joint + bone, modality dropout off",
    }  # fmt: skip
    for metrics in rows.values():
        assert 0 <= metrics["test_top1"] <= 1 and 0 <= metrics["val_top1"] <= 1
    diffs = results["paired"]["token fusion RGB + joint + bone"]
    best = [max(s[r]["test_top1"] for r in ("RGB only (ResNet3D xs)", "joint (2s-AGCN)",
                                            "bone (2s-AGCN)")) for s in results["per_seed"]]  # fmt: skip
    expected = [s["token fusion RGB + joint + bone"]["test_top1"] - b
                for s, b in zip(results["per_seed"], best, strict=True)]  # fmt: skip
    assert diffs["vs_best_single"] == pytest.approx(expected)
    assert "| token fusion joint + bone |" in text and " ± " in text
    assert text.strip().endswith((out / "results.md").read_text().strip())  # printed last


@pytest.mark.slow
def test_pretrain_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = _run([str(SCRIPTS / "pretrain_table.py"), "--out", str(out), "--seeds", "0",
                 "--pretrain-epochs", "1", "--mamp-epochs", "1", "--finetune-epochs", "1",
                 "--stt-epochs", "1", "--workers", "2", "--",
                 f"paths.data_dir={tmp_path / 'data'}",
                 "data.synthetic.num_videos={train:4,validate:2,test:2}"], cwd=tmp_path)  # fmt: skip
    rows = json.loads((out / "results.json").read_text())
    names = [r["row"] for r in rows]
    for expected in ("RGB only (MViT xs), from scratch", "RGB only, from MaskFeat",
                     "token fusion, MViT from MaskFeat", "skeleton transformer, from MAMP",
                     "token fusion joint+bone only (no RGB: what RGB adds)",
                     "2s-AGCN joint on train+val (final model)", "maskfeat pretraining",
                     "mamp pretraining"):  # fmt: skip
        assert expected in names, names
    assert any(n.startswith("cRT") for n in names) and any(n.startswith("ensemble") for n in names)
    assert any("pseudo-labelled" in n for n in names)
    for folder in ("rgb_maskfeat", "fusion_maskfeat", "stt_mamp"):
        log = (out / "seed0" / folder / "stdout.log").read_text()
        assert "initial weights: " in log and "<- " in log, folder  # the pretrained encoder loaded
    pre = {r["row"]: r for r in rows if r["row"].endswith("pretraining")}
    assert pre["maskfeat pretraining"]["items_per_epoch"] > 0
    assert pre["mamp pretraining"]["items_per_s"] > 0 and "clips/s" in text and "windows/s" in text


@pytest.mark.slow
def test_bench_sections_of_the_emotion_and_pretraining_work(tmp_path: Path) -> None:
    """``python scripts/bench.py <section>`` at tiny sizes: a result file with its ratios."""
    runs = {
        "mamp": ["--repeat", "1", "--batch", "2"],
        "swinface": ["--presets", "xs", "--frames", "2", "--repeat", "1"],
        "faces": ["--frames", "300", "--repeats", "1", "--scale", "0.25"],
        "online": ["--frames", "200", "--baseline-frames", "20"],
    }
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        _run([str(SCRIPTS / "bench.py"), name, *extra, "--out", str(out)], cwd=tmp_path)
        payload = json.loads(out.read_text())
        assert payload["section"] == name and payload["machine"]
    mamp = json.loads((tmp_path / "mamp.json").read_text())["rows"]
    assert all(r["windows_per_s"] > 0 for r in mamp.values())
    swin = json.loads((tmp_path / "swinface.json").read_text())["results"][0]
    assert swin["cache_hit_fps"] > 0 and swin["hit_speedup_vs_compute"] > 0
    faces = json.loads((tmp_path / "faces.json").read_text())
    assert faces["face_boxes_frames_per_s"] > 0 and faces["prepare"]["face crops"]["clips"] >= 0
    online = json.loads((tmp_path / "online.json").read_text())["rows"]
    assert all(r["frames_per_s"] > 0 and r["x_vs_baseline"] > 0 for r in online.values())
