"""End-to-end: each experiment trains (fast_dev_run) on a tiny synthetic release; a short real
run writes its results, and migalab-eval reproduces them from the checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from migalab.eval import evaluate, fuse_scores
from migalab.train import train
from tests.conftest import compose_config, tiny_data_overrides
from tests.test_configs import EXPERIMENTS

SYNTH_EXPERIMENTS = [e for e in EXPERIMENTS if e.endswith("_synth")]


def _tiny_cpu_overrides(release: Path, cache: Path) -> list[str]:
    """CPU trainer, csv logger, the tiny synthetic release and an 8-wide AGCN."""
    return [
        "trainer=cpu",
        "trainer.precision=32-true",
        "logger=csv",
        *tiny_data_overrides(release, cache),
        "model.encoder.base_channels=8",
    ]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_every_experiment(
    experiment: str, tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    overrides = [
        f"experiment={experiment}",
        "debug=fdr",
        # real-data experiments run here on the tiny synthetic release, at a CPU size
        *_tiny_cpu_overrides(tiny_release, tiny_cache),
        "data=synthetic",
    ]
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    payload, trainer = train(cfg)
    assert trainer.state.finished
    assert 0.0 <= payload["val"]["top1"] <= 1.0
    assert (tmp_path / "metrics.json").is_file()


def _short_run(release: Path, cache: Path, out: Path, stream: str) -> dict:
    overrides = [
        *_tiny_cpu_overrides(release, cache),
        f"data.stream={stream}",
        "trainer.max_epochs=2",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    cfg = compose_config("train", overrides, output_dir=out)
    payload, _ = train(cfg)
    return payload


def test_train_writes_results_and_eval_reproduces(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    payload = _short_run(tiny_release, tiny_cache, tmp_path / "joint", "joint")
    run = tmp_path / "joint"
    on_disk = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        for key in ("top1", "top5", "macro_f1", "mean_class_acc", "per_class_acc"):
            assert key in on_disk[split]
    assert (run / "config_resolved.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert Path(payload["ckpt_path"]).is_file()

    eval_cfg = compose_config(
        "eval", [f"ckpt_path={payload['ckpt_path']}"], output_dir=tmp_path / "eval"
    )
    result = evaluate(eval_cfg)
    for split in ("val", "test"):
        for key in ("top1", "top5", "macro_f1", "mean_class_acc"):
            assert result[split][key] == pytest.approx(payload[split][key], abs=1e-6), (split, key)
    assert (tmp_path / "eval" / "metrics.json").is_file()


def test_eval_fuses_joint_and_bone(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    joint = _short_run(tiny_release, tiny_cache, tmp_path / "joint", "joint")
    bone = _short_run(tiny_release, tiny_cache, tmp_path / "bone", "bone")
    cfg = compose_config(
        "eval",
        [f"ckpt_path=[{joint['ckpt_path']},{bone['ckpt_path']}]", "fusion.weights=[0.6,0.4]",
         "splits=[val]"],
        output_dir=tmp_path / "eval",
    )  # fmt: skip
    result = evaluate(cfg)
    streams = result["val_streams"]
    assert len(streams) == 2
    for stream, ref in zip(streams.values(), (joint, bone), strict=True):
        assert stream["top1"] == pytest.approx(ref["val"]["top1"], abs=1e-6)
    assert 0.0 <= result["val"]["top1"] <= 1.0


def test_fuse_scores_weights_and_space() -> None:
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
    assert torch.allclose(fuse_scores([a, b], [1.0, 0.5], "logits"), a + 0.5 * b)
    probs = fuse_scores([a, b], None, "probs")
    assert torch.allclose(probs.sum(-1), torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="fusion weights"):
        fuse_scores([a, b], [1.0], "probs")


def test_cli_train_subprocess(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    """The console entry point as a user runs it (Hydra run dir, printed summary)."""
    cmd = [
        sys.executable, "-m", "migalab.train", "debug=fdr", "logger=csv",
        f"paths.log_dir={tmp_path}", *tiny_data_overrides(tiny_release, tiny_cache),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("debug/runs/*/metrics.json"))
