"""Video-level evaluation and late fusion of emotion checkpoints (``migalab.scoring.emotion``)
on hand-made clip scores, and ``migalab-eval`` with emotion entries (no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import migalab.eval
from migalab.eval import evaluate
from migalab.scoring.emotion import (
    bootstrap_ci,
    evaluate_emotion,
    fuse_video_scores,
    paired_bootstrap_diff,
    video_level,
)
from migalab.scoring.ensemble import CheckpointScores, SplitScores
from migalab.tasks.emotion import binary_video_metrics
from migalab.utils.hydra import compose_config

#: 4 videos (ids in dataset order: v0 lost, v1 won, v2 lost, v3 won), 2 clips each
VIDEO_IDS = ["v0", "v1", "v2", "v3"]
VIDEOS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
LABELS = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
NAMES = [f"c{i}" for i in range(8)]
#: face: sure and right on v0, v1, unsure and wrong on v2, v3; context the reverse
FACE = torch.tensor([-3.0, -3.0, 3.0, 3.0, 0.5, 0.5, -0.5, -0.5])
CONTEXT = torch.tensor([0.5, 0.5, -0.5, -0.5, -3.0, -3.0, 3.0, 3.0])


def _entry(name: str, clip_logits: torch.Tensor, two_logits: bool = False) -> CheckpointScores:
    logits = clip_logits[:, None]
    if two_logits:  # (lose, win) logits with the same log-odds
        logits = torch.stack([torch.zeros_like(clip_logits), clip_logits], -1)
    entry = CheckpointScores(f"{name}.ckpt", name, 2, None, dataset="synthetic", target="emotion")
    for split in ("val", "test"):
        entry.splits[split] = SplitScores(logits, LABELS.clone(), list(NAMES), True,
                                          VIDEOS.clone(), list(VIDEO_IDS))  # fmt: skip
    return entry


def test_video_level_pools_clips_with_the_models_aggregation() -> None:
    level, metrics = video_level(_entry("face", FACE, two_logits=True), "val")
    assert level.names == VIDEO_IDS
    assert torch.allclose(level.logits, torch.tensor([-3.0, 3.0, 0.5, -0.5]))
    assert level.labels.tolist() == [0, 1, 0, 1] and level.n_clips.tolist() == [2, 2, 2, 2]
    assert metrics["acc"] == 0.5 and metrics["clip_acc"] == 0.5 and metrics["num_videos"] == 4
    entry = _entry("face", torch.tensor([-3.0, 1.0, 3.0, 3.0, 0.5, 0.5, -0.5, -0.5]))
    entry.aggregation, entry.temperature = "attention", 0.01  # the most confident clip
    level, _ = video_level(entry, "val")
    assert level.logits[0] == pytest.approx(-3.0, abs=1e-4)


def test_late_fusion_beats_both_models_when_their_errors_differ() -> None:
    face, _ = video_level(_entry("face", FACE), "val")
    context, _ = video_level(_entry("context", CONTEXT), "val")
    fused = fuse_video_scores([face, context], [0.5, 0.5], "logits")
    assert torch.allclose(fused.logits, torch.tensor([-1.25, 1.25, -1.25, 1.25]))
    probs = fuse_video_scores([face, context], [0.5, 0.5], "probs")
    expected = 0.5 * torch.sigmoid(face.logits) + 0.5 * torch.sigmoid(context.logits)
    assert torch.allclose(probs.prob, expected, atol=1e-6)
    with pytest.raises(ValueError, match="different videos"):
        shifted = video_level(_entry("x", FACE), "val")[0]
        shifted.names = ["v0", "v1", "v2", "v9"]
        fuse_video_scores([face, shifted], None)


def test_evaluate_emotion_searches_weights_and_writes_predictions(tmp_path: Path) -> None:
    entries = [_entry("face", FACE), _entry("context", CONTEXT)]
    fusion = OmegaConf.create({"space": "logits", "search": True, "search_split": "val",
                               "grid_step": 0.25, "weights": None})  # fmt: skip
    metrics, table, info = evaluate_emotion(entries, ["val", "test"], fusion, tmp_path)
    assert info["weights"] == [0.5, 0.5] and info["searched"] and info["level"] == "video"
    assert metrics["val_streams"]["face"]["acc"] == 0.5
    assert metrics["val_streams"]["context"]["acc"] == 0.5
    assert metrics["test"]["acc"] == 1.0 and metrics["test"]["auroc"] == 1.0
    assert metrics["test"]["ci95"]["acc"][1] == 1.0
    assert set(table) == {f"{s} {n}" for s in ("val", "test") for n in ("face", "context", "fused")}
    rows = list(csv.DictReader((tmp_path / "video_predictions_test.csv").open()))
    assert [r["video_id"] for r in rows] == VIDEO_IDS
    assert [r["label"] for r in rows] == ["0", "1", "0", "1"]
    assert [float(r["prob_win"]) > 0.5 for r in rows] == [False, True, False, True]


def test_migalab_eval_takes_emotion_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = [_entry("face", FACE), _entry("context", CONTEXT)]
    monkeypatch.setattr(migalab.eval, "score_checkpoints", lambda *a, **k: entries)
    cfg = compose_config("eval", ["ckpt_path=[face.ckpt,context.ckpt]", "fusion.search=true",
                                  "fusion.space=logits", "fusion.grid_step=0.25"],
                         output_dir=tmp_path)  # fmt: skip
    payload = evaluate(cfg)
    assert payload["target"] == "emotion" and payload["test"]["acc"] == 1.0
    assert json.loads((tmp_path / "fusion.json").read_text())["weights"] == [0.5, 0.5]
    assert (tmp_path / "video_predictions_val.csv").is_file()
    gesture = CheckpointScores("g.ckpt", "g", 2, None)
    monkeypatch.setattr(migalab.eval, "score_checkpoints", lambda *a, **k: [entries[0], gesture])
    with pytest.raises(ValueError, match="different tasks"):
        evaluate(compose_config("eval", ["ckpt_path=[face.ckpt,g.ckpt]"], output_dir=tmp_path))


def test_bootstrap_ci_brackets_the_metrics_and_narrows_with_more_videos() -> None:
    gen = torch.Generator().manual_seed(0)
    widths = []
    for v in (20, 320):
        labels = torch.arange(v) % 2
        prob = (0.5 + 0.3 * (2 * labels - 1) + 0.35 * torch.randn(v, generator=gen)).clamp(0, 1)
        m = binary_video_metrics(prob, labels)
        ci = bootstrap_ci(prob, labels, n=1000)
        for key in ("acc", "auroc"):
            lo, hi = ci[key]
            assert lo <= m[key] <= hi, (v, key, m[key], ci[key])
        widths.append(ci["auroc"][1] - ci["auroc"][0])
    assert widths[1] < widths[0] / 2  # ~1/sqrt(16) of the width
    # a perfect ranking stays perfect in every resample; reproducible for a seed
    perfect = bootstrap_ci(torch.tensor([0.1, 0.2, 0.8, 0.9]), torch.tensor([0, 0, 1, 1]))
    assert perfect == {"acc": [1.0, 1.0], "auroc": [1.0, 1.0]}
    assert bootstrap_ci(prob, labels, n=100) == bootstrap_ci(prob, labels, n=100)


def test_paired_bootstrap_diff_separates_a_better_model_from_noise() -> None:
    gen = torch.Generator().manual_seed(1)
    v = 200
    labels = torch.arange(v) % 2
    sign = 2 * labels - 1
    weak = (0.5 + 0.1 * sign + 0.3 * torch.randn(v, generator=gen)).clamp(0, 1)
    strong = (0.5 + 0.3 * sign + 0.2 * torch.randn(v, generator=gen)).clamp(0, 1)
    d = paired_bootstrap_diff(strong, weak, labels, n=1000)
    full_strong, full_weak = (
        binary_video_metrics(strong, labels),
        binary_video_metrics(weak, labels),
    )
    for key in ("acc", "auroc"):
        assert d[key]["diff"] == pytest.approx(full_strong[key] - full_weak[key], abs=1e-6)
        assert 0 < d[key]["lo"] <= d[key]["diff"] <= d[key]["hi"]
        assert d[key]["p_not_better"] < 0.01
    # a model against itself: no difference in any resample
    same = paired_bootstrap_diff(weak, weak, labels, n=200)
    assert same["acc"] == {"diff": 0.0, "lo": 0.0, "hi": 0.0, "p_not_better": 1.0}
    # the reverse comparison mirrors the interval
    rev = paired_bootstrap_diff(weak, strong, labels, n=1000)
    assert rev["auroc"]["lo"] == pytest.approx(-d["auroc"]["hi"])
