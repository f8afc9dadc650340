"""fast_dev_run of the emotion experiments on the tiny synthetic release with videos."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from migalab.train import train
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_eval_overrides, tiny_video_overrides

#: CPU-sized encoders of each experiment (MViT xs, SwinFace xs, a 32-wide InterFusion)
TINY_MODELS = {
    "emotion_context_synth": [],  # FrameStack2D: CPU-sized already
    "emotion_face_synth": ["data.face.num_frames=2"],
    "system_b_emotion_synth": ["data.face.num_frames=2", "model.neck.dim=32"],
}


@pytest.mark.parametrize("experiment", sorted(TINY_MODELS))
def test_fast_dev_run_emotion_experiments(
    experiment: str, tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    overrides = [
        f"experiment={experiment}", "debug=fdr", "trainer=cpu", "trainer.precision=32-true",
        "logger=csv", *tiny_video_overrides(tiny_video_release, tiny_video_cache),
        *TINY_MODELS[experiment],
    ]  # fmt: skip
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    assert cfg.data.target == "emotion"
    payload, trainer = train(cfg)
    assert trainer.state.finished
    val = payload["val"]
    assert 0.0 <= val["acc"] <= 1.0 and 0.0 <= val["clip_acc"] <= 1.0
    assert val["num_videos"] >= 1 and val["balance"]["videos"] == val["num_videos"]
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["val"]["acc"] == val["acc"]
    rows = list(csv.DictReader((tmp_path / "video_predictions.csv").open()))
    assert rows and set(rows[0]) == {"video_id", "n_clips", "prob_win", "label"}
    assert all(0.0 <= float(r["prob_win"]) <= 1.0 and r["label"] in ("0", "1") for r in rows)


def test_emotion_checkpoint_evaluates_again(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """One epoch of emotion_context_synth; ``train=false ckpt_path=<best>`` gives the same
    video metrics, and so does migalab-eval (per video, with video_predictions_<split>.csv);
    migalab-predict refuses it."""
    from migalab.eval import evaluate

    overrides = [
        "experiment=emotion_context_synth", "trainer=cpu", "trainer.precision=32-true",
        "logger=csv", *tiny_video_overrides(tiny_video_release, tiny_video_cache),
        "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0",
    ]  # fmt: skip
    payload, _ = train(compose_config("train", overrides, output_dir=tmp_path / "run"))
    assert payload["ckpt_path"] and "acc" in capsys.readouterr().out  # the summary table
    again, _ = train(compose_config("train", [*overrides, "train=false",
                                              f"ckpt_path={payload['ckpt_path']}"],
                                    output_dir=tmp_path / "again"))  # fmt: skip
    assert again["val"]["acc"] == pytest.approx(payload["val"]["acc"])
    assert again["test"]["clip_acc"] == pytest.approx(payload["test"]["clip_acc"])
    # migalab-eval: the same video metrics, and the per-video probabilities of the test run
    where = tiny_eval_overrides(tiny_video_release, tiny_video_cache)
    ev = evaluate(compose_config("eval", [f"ckpt_path={payload['ckpt_path']}", *where],
                                 output_dir=tmp_path / "ev"))  # fmt: skip
    assert ev["target"] == "emotion"
    for split in ("val", "test"):
        for key in ("acc", "macro_f1", "clip_acc", "num_videos", "num_clips"):
            assert ev[split][key] == pytest.approx(payload[split][key]), (split, key)
    by_eval = {r["video_id"]: r for r in csv.DictReader(
        (tmp_path / "ev" / "video_predictions_test.csv").open())}  # fmt: skip
    by_train = {r["video_id"]: r for r in csv.DictReader(
        (tmp_path / "run" / "video_predictions.csv").open())}  # fmt: skip
    assert by_eval.keys() == by_train.keys()
    for vid, row in by_train.items():
        assert float(by_eval[vid]["prob_win"]) == pytest.approx(float(row["prob_win"]), abs=1e-5)
        assert by_eval[vid]["label"] == row["label"] and by_eval[vid]["n_clips"] == row["n_clips"]
    # late fusion of the checkpoint with itself: the same videos, weights searched on val
    fused = evaluate(compose_config("eval", [f"ckpt_path=[{payload['ckpt_path']},{payload['ckpt_path']}]",
                                             "fusion.search=true", "fusion.grid_step=0.5", *where],
                                    output_dir=tmp_path / "fused"))  # fmt: skip
    assert fused["test"]["acc"] == pytest.approx(ev["test"]["acc"])
    assert json.loads((tmp_path / "fused" / "fusion.json").read_text())["level"] == "video"
    # migalab-predict writes gesture submissions: it refuses the emotion checkpoint up front
    from migalab.scoring.ensemble import score_checkpoints

    with pytest.raises(ValueError, match="emotion checkpoint.*migalab-eval"):
        score_checkpoints([payload["ckpt_path"]], ["test"], None, target="gesture",
                          data_overrides={"release_root": str(tiny_video_release),
                                          "cache_dir": str(tiny_video_cache)})  # fmt: skip
