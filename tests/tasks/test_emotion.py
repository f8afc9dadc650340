"""EmotionModule: video aggregation, metrics, the per-video CSV, input mapping."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from migalab.models.encoders.output import EncoderOutput
from migalab.tasks.emotion import (
    EmotionModule,
    VideoScores,
    aggregate_videos,
    video_metrics,
    write_video_predictions,
)

VIDEOS = torch.tensor([3, 0, 3, 1, 0, 3])
SCORES = torch.tensor([2.0, -1.0, -0.5, 0.25, -3.0, 1.0])


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_mean_and_prob_aggregation_by_hand() -> None:
    ids, counts, out = aggregate_videos(VIDEOS, SCORES)
    assert ids.tolist() == [0, 1, 3] and counts.tolist() == [2, 1, 3]
    assert out.tolist() == pytest.approx([-2.0, 0.25, 2.5 / 3])
    _, _, prob = aggregate_videos(VIDEOS, SCORES, "prob")
    p3 = (_sig(2.0) + _sig(-0.5) + _sig(1.0)) / 3
    assert torch.sigmoid(prob).tolist() == pytest.approx(
        [(_sig(-1) + _sig(-3)) / 2, _sig(0.25), p3]
    )


def test_attention_aggregation_by_hand() -> None:
    _, _, att = aggregate_videos(VIDEOS, SCORES, "attention", temperature=0.5)
    w = [math.exp(2.0 / 0.5), math.exp(0.5 / 0.5), math.exp(1.0 / 0.5)]
    v3 = (w[0] * 2.0 + w[1] * -0.5 + w[2] * 1.0) / sum(w)
    w0 = [math.exp(1 / 0.5), math.exp(3 / 0.5)]
    v0 = (w0[0] * -1 + w0[1] * -3) / sum(w0)
    assert att.tolist() == pytest.approx([v0, 0.25, v3])
    # a large temperature is the mean
    _, _, flat = aggregate_videos(VIDEOS, SCORES, "attention", temperature=1e9)
    assert flat.tolist() == pytest.approx(aggregate_videos(VIDEOS, SCORES)[2].tolist())
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_videos(VIDEOS, SCORES, "median")


def test_video_metrics_by_hand() -> None:
    # video means: 0 -> -2 (lose), 1 -> 0.25 (win), 3 -> 0.833 (win); true labels 0: lose,
    # 1: lose, 3: win -> video acc 2/3; F1(win) = 2*1/(2*1+1) = 2/3, F1(lose) = 2/(2+1) = 2/3
    labels = torch.tensor([1, 0, 1, 0, 0, 1])
    m, per_video = video_metrics(VIDEOS, SCORES, labels)
    assert m["acc"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    # AUROC: positive (v3, p=.70) against negatives (v0 p=.12, v1 p=.56): both ranked below = 1
    assert m["auroc"] == pytest.approx(1.0)
    # clips: predicted win where score > 0: [1,0,0,1,0,1] vs labels [1,0,1,0,0,1] -> 4/6
    assert m["clip_acc"] == pytest.approx(4 / 6)
    assert (m["num_videos"], m["num_clips"]) == (3, 6)
    assert per_video["label"].tolist() == [0, 0, 1]
    m1, _ = video_metrics(VIDEOS, SCORES, torch.ones(6, dtype=torch.long))
    assert math.isnan(m1["auroc"])  # one class only
    with pytest.raises(ValueError, match=r"videos \[3\] have clips with different"):
        video_metrics(VIDEOS, SCORES, torch.tensor([1, 0, 0, 0, 0, 1]))


def test_video_scores_state_and_csv(tmp_path: Path) -> None:
    state = VideoScores()
    state.update(VIDEOS[:3], SCORES[:3], torch.tensor([1, 0, 1]))
    state.update(VIDEOS[3:], SCORES[3:], torch.tensor([0, 0, 1]))
    videos, scores, labels = state.compute()
    assert videos.tolist() == VIDEOS.tolist() and scores.tolist() == SCORES.tolist()
    _, per_video = video_metrics(videos, scores, labels)
    names = ["0010", "0011", "0012", "0013"]
    path = write_video_predictions(tmp_path / "video_predictions.csv", per_video, names)
    rows = list(csv.DictReader(path.open()))
    assert [r["video_id"] for r in rows] == ["0010", "0011", "0013"]
    assert [int(r["n_clips"]) for r in rows] == [2, 1, 3]
    assert [int(r["label"]) for r in rows] == [0, 0, 1]
    assert float(rows[2]["prob_win"]) == pytest.approx(_sig(2.5 / 3), abs=1e-6)


class _Enc(nn.Module):
    out_channels = 4

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 4)
        self.seen: list = []

    def forward(self, x, visible=None):  # noqa: ANN001, ANN201
        self.seen.append((x, visible))
        feats = x if isinstance(x, torch.Tensor) else x["face"]
        pooled = self.fc(feats.float().flatten(1)[:, :2])
        zero = torch.zeros(1, dtype=torch.long)
        return EncoderOutput(tokens=pooled[:, None], pooled=pooled, time=zero, space=zero)


def _module(**kw: object) -> EmotionModule:
    return EmotionModule(_Enc(), head=nn.Linear(4, kw.pop("num_outputs", 1)),
                         optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
                         num_outputs=kw.pop("n", 1), **kw)  # fmt: skip


def test_input_mapping_and_clip_scores() -> None:
    x = {"face": torch.ones(2, 3), "face_visible": torch.tensor([[True], [False]]),
         "rgb": torch.zeros(2, 3), "present": {"face": torch.tensor([True, False]),
                                              "rgb": torch.tensor([True, True])}}  # fmt: skip
    m = _module(input_key="face")
    m(x)
    assert m.encoder.seen[-1][0] is x["face"] and m.encoder.seen[-1][1] is x["face_visible"]
    m = _module(inputs={"face": "face", "context": "rgb"})
    inp, _ = m.encoder_input(x)
    assert inp["context"] is x["rgb"] and inp["face"] is x["face"]
    assert inp["present"] == {"face": x["present"]["face"], "context": x["present"]["rgb"]}
    assert inp["visible"] == {"face": x["face_visible"]}
    with pytest.raises(KeyError, match="inputs need"):
        m.encoder_input({"face": x["face"]})
    with pytest.raises(ValueError, match="not both"):
        _module(input_key="face", inputs={"face": "face"})
    two = _module(num_outputs=2, n=2)
    assert two.clip_scores(torch.tensor([[1.0, 3.0]])).tolist() == [2.0]
    assert isinstance(two.loss_fn, nn.CrossEntropyLoss)
    assert isinstance(_module().loss_fn, nn.BCEWithLogitsLoss)


def test_two_logit_ce_config() -> None:
    """``model.num_outputs=2 model/loss=ce``: two logits, the classification loss, win log-odds."""
    import hydra

    from migalab.tasks.losses import ClassificationLoss
    from migalab.utils.hydra import compose_config

    cfg = compose_config("train", ["experiment=emotion_context_synth", "model.num_outputs=2",
                                   "model/loss=ce",
                                   "data.video.num_frames=4", "data.video.size=32"])  # fmt: skip
    m = hydra.utils.instantiate(cfg.model)
    assert isinstance(m.loss_fn, ClassificationLoss) and m.head.fc.out_features == 2
    logits = m({"rgb": torch.randn(2, 3, 4, 32, 32)})
    assert logits.shape == (2, 2) and torch.isfinite(m._loss(logits, torch.tensor([0, 1])))
