"""Unit tests of score-level fusion (``migalab.scoring.ensemble``) and the ``migalab-eval`` entry point on
hand-made scores (no training: ``score_checkpoints`` is replaced by the scores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import migalab.eval
from migalab.eval import evaluate
from migalab.scoring.ensemble import (
    CheckpointScores,
    SplitScores,
    check_same_clips,
    evaluate_scores,
    fit_temperature,
    fuse_scores,
    fused_probabilities,
    fusion_weights_from_file,
    resolve_fusion_weights,
    resolve_temperatures,
    search_fusion_weights,
    simplex_grid,
)
from migalab.scoring.records import FusionRecordError
from migalab.tasks.metrics import compute_metrics
from migalab.utils.hydra import compose_config

LABELS = torch.tensor([0, 1, 0, 1])
#: stream a: sure and right on clips 0 and 2, unsure and wrong on 1 and 3; stream b the reverse
A = torch.tensor([[4.0, 0.0], [0.4, 0.0], [4.0, 0.0], [0.4, 0.0]])
B = torch.tensor([[0.0, 0.4], [0.0, 4.0], [0.0, 0.4], [0.0, 4.0]])
NAMES = ["0001_0", "0001_1", "0002_0", "0002_1"]


def _entry(name: str, logits: torch.Tensor, splits: tuple[str, ...] = ("val", "test")):
    entry = CheckpointScores(path=f"{name}.ckpt", name=name, num_classes=2, class_names=None)
    for split in splits:
        entry.splits[split] = SplitScores(logits, LABELS.clone(), list(NAMES), True)
    return entry


def test_search_finds_the_mixture_that_beats_both_streams() -> None:
    # alone each stream gets half the clips; the even mix gets all (a's sure 0.98 outweighs b's
    # unsure 0.6 on clips 0 and 2, and the reverse on 1 and 3)
    for w in ((1.0, 0.0), (0.0, 1.0)):
        assert compute_metrics(fuse_scores([A, B], w), LABELS, 2)["top1"] == 0.5
    weights, reached = search_fusion_weights([A, B], LABELS, 2, step=0.25)
    assert weights == (0.5, 0.5)
    assert reached == {"top1": 1.0, "macro_f1": 1.0}


def test_search_ties_go_to_the_most_even_weights() -> None:
    weights, reached = search_fusion_weights([A, A, A], LABELS, 2, step=1 / 3)
    assert weights == pytest.approx((1 / 3, 1 / 3, 1 / 3)) and reached["top1"] == 0.5


def test_search_ties_between_equally_even_weights_go_to_the_first_grid_point() -> None:
    # three equal streams, step 0.5: (0, .5, .5), (.5, 0, .5) and (.5, .5, 0) tie on every
    # metric and on evenness; the first in simplex_grid's (lexicographic) order wins
    weights, _ = search_fusion_weights([A, A, A], LABELS, 2, step=0.5)
    assert weights == (0.0, 0.5, 0.5)


def test_search_ranks_top1_then_macro_f1_then_evenness() -> None:
    """step 0.5 over two streams: the grid is (0, 1), (.5, .5), (1, 0)."""
    # top-1 before macro-F1: x alone says class 0 everywhere (top-1 4/6, macro-F1 0.27); y
    # alone and the even mix say y's classes (top-1 3/6, macro-F1 0.52)
    labels = torch.tensor([0, 0, 0, 0, 1, 2])
    x = torch.tensor([[1.0, 0, 0]] * 6)
    y = 5 * torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1, 1, 2]), 3).float()
    weights, reached = search_fusion_weights([x, y], labels, 3, step=0.5)
    assert weights == (1.0, 0.0) and reached["top1"] == pytest.approx(4 / 6)
    assert compute_metrics(fuse_scores([x, y], (0.5, 0.5)), labels, 3)["macro_f1"] > 0.5
    # macro-F1 before evenness: (.5, .5) and (1, 0) both get 2 of 6 clips, (1, 0) has the
    # better macro-F1 (0.33 vs 0.30)
    x = torch.tensor([[-2.0, 0, -2], [0, 0, 2], [-2, 0, 2], [1, 0, -2], [-2, 2, -2], [-1, 0, 2]])
    y = torch.tensor([[-2.0, 1, 2], [0, 2, 1], [0, -2, 2], [-1, 0, 2], [0, -1, -2], [-1, 0, 2]])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    top1 = [
        compute_metrics(fuse_scores([x, y], w), labels, 3)["top1"] for w in ((0.5, 0.5), (1, 0))
    ]
    assert top1[0] == top1[1]
    weights, reached = search_fusion_weights([x, y], labels, 3, step=0.5)
    assert weights == (1.0, 0.0) and reached["macro_f1"] == pytest.approx(1 / 3)


def test_fuse_scores_probs_and_logits() -> None:
    probs = fuse_scores([A, B], [0.25, 0.75], "probs")
    assert torch.allclose(probs, 0.25 * A.softmax(-1) + 0.75 * B.softmax(-1))
    assert torch.allclose(fuse_scores([A, B], None, "logits"), A + B)
    with pytest.raises(ValueError, match="space"):
        fuse_scores([A, B], None, "votes")


def test_fused_probabilities_sum_to_one_in_both_spaces() -> None:
    for space in ("probs", "logits"):
        p = fused_probabilities(fuse_scores([A, B], [2.0, 1.0], space), space)
        assert torch.allclose(p.sum(-1), torch.ones(4))
    # equal weights in probability space: the mean of the softmaxes
    mean = (A.softmax(-1) + B.softmax(-1)) / 2
    assert torch.allclose(fused_probabilities(fuse_scores([A, B], None)), mean)


def test_resolve_fusion_weights_given_searched_and_from_file(tmp_path: Path) -> None:
    entries = [_entry("a", A), _entry("b", B)]
    fusion = OmegaConf.create(
        {"weights": [0.3, 0.7], "space": "probs", "search": False, "search_split": "val",
         "grid_step": 0.25}
    )  # fmt: skip
    weights, info = resolve_fusion_weights(fusion, entries)
    assert weights == [0.3, 0.7] and info["searched"] is False
    assert info["checkpoints"] == ["a.ckpt", "b.ckpt"]

    fusion.search = True
    weights, info = resolve_fusion_weights(fusion, entries)
    assert weights == [0.5, 0.5] and info["search_metrics"]["top1"] == 1.0
    assert info["search_split"] == "val" and info["grid_step"] == 0.25

    (tmp_path / "metrics.json").write_text(json.dumps({"fusion": {"weights": [0.1, 0.9]}}))
    fusion = OmegaConf.merge(fusion, {"from": str(tmp_path / "metrics.json")})
    weights, info = resolve_fusion_weights(fusion, entries)  # from wins over search
    assert weights == [0.1, 0.9] and info["from"] == str(tmp_path / "metrics.json")


def test_search_needs_labelled_scores_of_the_search_split() -> None:
    entries = [_entry("a", A, ("test",)), _entry("b", B, ("test",))]
    fusion = OmegaConf.create({"weights": None, "space": "probs", "search": True})
    with pytest.raises(ValueError, match="labelled val scores"):
        resolve_fusion_weights(fusion, entries)


def test_fusion_weights_from_file_errors(tmp_path: Path) -> None:
    (tmp_path / "fusion.json").write_text(json.dumps({"weights": [1, 2]}))
    assert fusion_weights_from_file(tmp_path / "fusion.json") == [1.0, 2.0]
    with pytest.raises(FusionRecordError, match="nope.json: no such file"):
        fusion_weights_from_file(tmp_path / "nope.json")
    (tmp_path / "metrics.json").write_text(json.dumps({"fusion": None, "val": {}}))
    with pytest.raises(ValueError, match="no fusion weights"):
        fusion_weights_from_file(tmp_path / "metrics.json")


def test_check_same_clips_refuses_other_clips() -> None:
    a, b = _entry("a", A), _entry("b", B)
    check_same_clips([a, b], "val")
    b.splits["val"].names = list(reversed(NAMES))
    with pytest.raises(ValueError, match="disagree on the val clips"):
        check_same_clips([a, b], "val")


def test_evaluate_scores_one_and_several_checkpoints() -> None:
    metrics, table = evaluate_scores([_entry("a", A)], ["val"])
    assert set(metrics) == {"val"} and metrics["val"]["top1"] == 0.5 and set(table) == {"val"}
    metrics, table = evaluate_scores([_entry("a", A), _entry("b", B)], ["val", "train"], [1, 1])
    assert set(metrics) == {"val", "val_streams"}  # train was not scored: skipped
    assert metrics["val"]["top1"] == 1.0
    assert {k: v["top1"] for k, v in metrics["val_streams"].items()} == {"a": 0.5, "b": 0.5}
    assert list(table) == ["val a", "val b", "val fused"]


def test_evaluate_writes_metrics_and_fusion_json(monkeypatch, tmp_path: Path) -> None:
    calls = []

    def fake_scores(ckpts, splits, *args, **kwargs):
        calls.append((list(ckpts), list(splits)))
        return [_entry("a", A), _entry("b", B)]

    monkeypatch.setattr(migalab.eval, "score_checkpoints", fake_scores)
    cfg = compose_config(
        "eval", ["ckpt_path=[a.ckpt,b.ckpt]", "splits=[test]", "fusion.search=true",
                 "fusion.grid_step=0.5"], output_dir=tmp_path,
    )  # fmt: skip
    payload = evaluate(cfg)
    assert calls == [(["a.ckpt", "b.ckpt"], ["val", "test"])]  # the search split is scored too
    assert payload["test"]["top1"] == 1.0 and payload["fusion"]["weights"] == [0.5, 0.5]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"]["top1"] == 1.0 and set(saved["test_streams"]) == {"a", "b"}
    assert json.loads((tmp_path / "fusion.json").read_text())["weights"] == [0.5, 0.5]


def test_fit_temperature_recovers_overconfidence() -> None:
    # labels drawn from softmax(z); a model reporting 3 z is 3x overconfident: T ~ 3
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=gen)
    labels = torch.multinomial(z.softmax(-1), 1, generator=gen).squeeze(1)
    assert fit_temperature(3 * z, labels) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(z / 2, labels) == pytest.approx(0.5, rel=0.1)


def test_temperatures_calibrate_the_fusion_and_round_trip(tmp_path: Path) -> None:
    scaled = fuse_scores([A, B], [0.5, 0.5], "probs", temperatures=[2.0, 0.5])
    assert torch.allclose(scaled, 0.5 * (A / 2).softmax(-1) + 0.5 * (B / 0.5).softmax(-1))
    with pytest.raises(ValueError, match="temperatures for"):
        fuse_scores([A, B], None, "probs", temperatures=[1.0])
    entries = [_entry("a", A), _entry("b", 3 * B)]
    fusion = OmegaConf.create({"weights": None, "space": "probs", "search": True,
                               "search_split": "val", "grid_step": 0.25, "temperature": "fit"})  # fmt: skip
    weights, info = resolve_fusion_weights(fusion, entries)
    temps = info["temperatures"]
    assert len(temps) == 2 and all(t > 0 for t in temps)
    assert temps[1] == pytest.approx(3 * fit_temperature(B, LABELS), rel=1e-3)  # scale-equivariant
    metrics, _ = evaluate_scores(entries, ["val"], weights, "probs", temps)
    assert metrics["val_streams"]["a"]["top1"] == 0.5  # a stream's own metrics are unchanged
    # migalab-predict's fusion.from brings back the weights and the temperatures
    (tmp_path / "fusion.json").write_text(json.dumps(info))
    again = OmegaConf.create({"from": str(tmp_path / "fusion.json"), "space": "probs"})
    assert resolve_temperatures(again, entries) == pytest.approx(temps)
    w2, info2 = resolve_fusion_weights(again, entries)
    assert w2 == list(weights) and info2["temperatures"] == pytest.approx(temps)
    for bad in ("hot", [1.0], [1.0, -1.0]):
        with pytest.raises(ValueError, match="temperature"):
            resolve_temperatures(OmegaConf.create({"temperature": bad}), entries)


def test_fitted_temperatures_decide_which_weights_are_searched() -> None:
    # stream b is 20x overconfident: uncalibrated, the even logit mix lets b's unsure 20 * 0.4
    # outvote a's sure 4 on clips 0 and 2, so only (0.75, 0.25) gets every clip; divided by
    # their fitted temperatures (mirror streams: b's is 20x a's) the even mix gets every clip
    b = 20 * B
    assert search_fusion_weights([A, b], LABELS, 2, step=0.25, space="logits")[0] == (0.75, 0.25)
    fusion = OmegaConf.create({"space": "logits", "search": True, "search_split": "val",
                               "grid_step": 0.25, "temperature": "fit"})  # fmt: skip
    weights, info = resolve_fusion_weights(fusion, [_entry("a", A), _entry("b", b)])
    assert info["temperatures"][1] == pytest.approx(20 * info["temperatures"][0], rel=1e-3)
    assert weights == info["weights"] == [0.5, 0.5]
    assert info["search_metrics"] == {"top1": 1.0, "macro_f1": 1.0}


def test_simplex_grid_steps_at_their_boundaries() -> None:
    assert simplex_grid(2, 1.0) == [(0.0, 1.0), (1.0, 0.0)]  # the largest step
    assert simplex_grid(3, 0.5) == [(0, 0, 1), (0, 0.5, 0.5), (0, 1, 0), (0.5, 0, 0.5),
                                    (0.5, 0.5, 0), (1, 0, 0)]  # fmt: skip
    for bad, match in ((0.0, "be in .0, 1."), (-0.5, "be in .0, 1."), (1.5, "be in .0, 1."),
                       (0.3, "divide 1"), (0.4, "divide 1")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^fusion.grid_step must {match}"):
            simplex_grid(2, bad)
    # the default step is 0.05
    weights, _ = search_fusion_weights([A, B], LABELS, 2)
    assert weights == (0.5, 0.5)


def test_search_in_logit_space_differs_from_probability_space() -> None:
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    x = torch.tensor([[2.0, 2], [0, 3], [2, -1], [-4, 1], [4, 3], [3, 3]])
    y = torch.tensor([[3.0, -3], [-6, 6], [-9, -6], [-12, -12], [0, 12], [-6, 9]])
    probs = search_fusion_weights([x, y], labels, 2, step=0.25, space="probs")
    logits = search_fusion_weights([x, y], labels, 2, step=0.25, space="logits")
    assert probs == ((0.75, 0.25), {"top1": 1.0, "macro_f1": 1.0})
    assert logits[0] == (0.5, 0.5) and logits[1]["top1"] == pytest.approx(5 / 6)
    entries = []
    for name, scores in (("x", x), ("y", y)):
        entry = CheckpointScores(path=name, name=name, num_classes=2, class_names=None)
        entry.splits["val"] = SplitScores(scores, labels, [str(i) for i in range(6)], True)
        entries.append(entry)
    fusion = OmegaConf.create({"space": "logits", "search": True, "grid_step": 0.25})
    assert resolve_fusion_weights(fusion, entries)[0] == [0.5, 0.5]  # searched in logit space


def test_resolve_uses_the_given_grid_step_and_search_split(
    caplog: pytest.LogCaptureFixture,
) -> None:
    entries = [_entry("a", A, ("test",)), _entry("b", B, ("test",))]
    fusion = OmegaConf.create({"weights": None, "space": "probs", "search": True,
                               "search_split": "test", "grid_step": 1.0})  # fmt: skip
    with caplog.at_level("INFO", logger="migalab.scoring.ensemble"):
        weights, info = resolve_fusion_weights(fusion, entries)
    # step 1: only (0, 1) and (1, 0), equal on every metric: the first
    assert weights == [0.0, 1.0] and info["grid_step"] == 1.0 and info["search_split"] == "test"
    assert "fusion weights searched on test: (0.0, 1.0) (top1 0.5000)" in caplog.messages
    fusion = OmegaConf.create({"temperature": "fit", "search_split": "test"})
    with caplog.at_level("INFO", logger="migalab.scoring.ensemble"):
        temps = resolve_temperatures(fusion, entries)
    assert f"temperatures fitted on test: {[round(t, 4) for t in temps]}" in caplog.messages
    assert [round(t, 4) for t in temps] != [round(t, 5) for t in temps]


def test_given_weights_go_to_the_record() -> None:
    fusion = OmegaConf.create({"weights": [1, 3], "space": "logits", "search": False})
    weights, info = resolve_fusion_weights(fusion, [_entry("a", A), _entry("b", B)])
    assert weights == info["weights"] == [1.0, 3.0] and info["searched"] is False
