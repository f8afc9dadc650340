"""Unit tests of ``migalab-predict``: submission files and ``predict()`` on hand-made scores
(``score_checkpoints`` is replaced by the scores; no training)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch

import migalab.predict
from migalab.predict import predict, write_submission
from migalab.scoring.ensemble import CheckpointScores, SplitScores
from migalab.utils.hydra import compose_config

NAMES = ["0104_0", "0104_1", "0105_0"]
#: two streams over 3 classes; test labels hidden (-1) except the last clip
A = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 1.0, 0.0]])
B = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
LABELS = torch.tensor([-1, -1, 1])


def _entries() -> list[CheckpointScores]:
    out = []
    for name, logits in (("joint", A), ("bone", B)):
        e = CheckpointScores(f"{name}.ckpt", name, 3, ["c0", "c1", "c2"])
        e.splits["test"] = SplitScores(logits, LABELS.clone(), list(NAMES), False)
        out.append(e)
    return out


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_write_submission_writes_the_csv_and_the_same_csv_zipped(tmp_path: Path) -> None:
    csv_path, zip_path = write_submission(tmp_path, NAMES, [0, 31, 7])
    text = csv_path.read_text()
    assert text == "Id,Target\n0104_0,0\n0104_1,31\n0105_0,7\n"
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == ["submission.csv"]
        assert zf.read("submission.csv").decode() == text
    raw, _ = write_submission(tmp_path / "raw", NAMES, [0, 31, 7], "raw")
    assert raw.read_text() == "Id,Target\n0104_0,1\n0104_1,99\n0105_0,8\n"
    with pytest.raises(ValueError, match="not a index class id"):
        write_submission(tmp_path / "bad", NAMES, [0, 32, 7])
    assert not (tmp_path / "bad" / "submission.csv").exists()  # checked before writing


def test_predict_fuses_with_weights_from_a_file(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(migalab.predict, "score_checkpoints", lambda *a, **k: _entries())
    (tmp_path / "fusion.json").write_text(json.dumps({"weights": [0.25, 0.75]}))
    out = tmp_path / "run"
    cfg = compose_config(
        "predict", ["ckpt_path=[joint.ckpt,bone.ckpt]", f"fusion.from={tmp_path / 'fusion.json'}"],
        output_dir=out,
    )  # fmt: skip
    summary = predict(cfg)
    probs = 0.25 * A.softmax(-1) + 0.75 * B.softmax(-1)  # rows sum to 1 already
    conf, preds = probs.max(-1)
    assert preds.tolist() == [1, 2, 1]  # clip 0: b's class wins with weight 0.75
    assert (out / "submission.csv").read_text() == "Id,Target\n0104_0,1\n0104_1,2\n0105_0,1\n"
    rows = _rows((out / "predictions.csv").read_text())
    assert rows[0] == ["name", "pred", "pred_name", "prob", "label"]
    assert rows[1:] == [[n, str(p), f"c{p}", f"{c:.5f}", str(y)]
                        for n, p, c, y in zip(NAMES, preds.tolist(), conf.tolist(),
                                              LABELS.tolist(), strict=True)]  # fmt: skip
    assert summary["clips"] == 3 and summary["top1_known_labels"] == 1.0  # the one known label
    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["weights"] == [0.25, 0.75] and fusion["checkpoints"] == [
        "joint.ckpt",
        "bone.ckpt",
    ]


def test_predict_one_checkpoint_writes_no_fusion_file(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(migalab.predict, "score_checkpoints", lambda *a, **k: _entries()[:1])
    cfg = compose_config("predict", ["ckpt_path=joint.ckpt"], output_dir=tmp_path)
    summary = predict(cfg)
    assert summary["fusion"] is None and not (tmp_path / "fusion.json").exists()
    assert _rows((tmp_path / "submission.csv").read_text())[1:] == [
        ["0104_0", "0"], ["0104_1", "2"], ["0105_0", "1"]
    ]  # fmt: skip


def test_predict_without_the_split_is_an_error(monkeypatch, tmp_path: Path) -> None:
    entries = _entries()
    for e in entries:
        e.splits.clear()
    monkeypatch.setattr(migalab.predict, "score_checkpoints", lambda *a, **k: entries)
    cfg = compose_config("predict", ["ckpt_path=[a.ckpt,b.ckpt]"], output_dir=tmp_path)
    with pytest.raises(ValueError, match="split test is missing or empty"):
        predict(cfg)


def test_raw_ids_come_from_the_dataset_spec(tmp_path: Path) -> None:
    """MiGA 2025 raw ids are 1-based with 99; a 0-based release (2023 npy) keeps the index."""
    from migalab.predict import submission_csv

    assert submission_csv(NAMES, [0, 31, 7], "raw") == "Id,Target\n0104_0,1\n0104_1,99\n0105_0,8\n"
    text = submission_csv(NAMES, [0, 31, 7], "raw", "miga2023_npy")
    assert text == "Id,Target\n0104_0,0\n0104_1,31\n0105_0,7\n"
