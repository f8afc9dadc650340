"""Online recognition: window placement, the per-frame merge, segments, the segment F1 on
hand-made cases, the prediction files, and migalab-predict / migalab-eval on a whole sequence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from migalab.online import (
    Segment,
    SequenceWindows,
    frame_probabilities,
    read_segments,
    segment_scores,
    segments_from_frames,
    temporal_iou,
    window_starts,
    write_segments,
)


def test_windows_cover_the_whole_sequence() -> None:
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]  # the last ends at frame 99
    assert window_starts(96, 32, 16) == [0, 16, 32, 48, 64]
    assert window_starts(10, 32, 8) == [0]  # shorter than a window: one (resampled) window
    assert window_starts(0, 32, 8) == []
    with pytest.raises(ValueError):
        window_starts(10, 0, 1)


def test_frame_probabilities_average_the_covering_windows() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    # windows of 4 at 0, 2, 4 over 8 frames: frames 0-1 one window, 2-3 two, 4-5 two, 6-7 one
    frames = frame_probabilities(probs, [0, 2, 4], 4, 8)
    np.testing.assert_allclose(frames[:, 0], [1, 1, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(frames.sum(1), 1.0)
    assert frame_probabilities(probs[:1], [0], 4, 6)[4:].sum() == 0  # uncovered frames


def test_segments_from_frames_threshold_and_min_length() -> None:
    p = np.zeros((12, 3), np.float32)
    p[0:4, 1] = 0.9  # class 1, 4 frames
    p[4:6, 2] = 0.3  # below threshold: background
    p[6:7, 0] = 0.8  # 1 frame: too short
    p[7:12, 2] = [0.6, 0.7, 0.8, 0.9, 1.0]
    segs = segments_from_frames(p, threshold=0.5, min_length=2)
    assert [(s.start, s.end, s.label) for s in segs] == [(0, 3, 1), (7, 11, 2)]
    assert segs[1].score == pytest.approx(0.8)
    assert segments_from_frames(np.zeros((0, 3)), 0.5) == []


def test_segment_f1_on_hand_made_cases() -> None:
    a = Segment(0, 9, 1)
    assert temporal_iou(a, Segment(5, 14, 1)) == pytest.approx(5 / 15)
    assert temporal_iou(a, Segment(10, 20, 1)) == 0.0
    truths = {"v1": [Segment(0, 9, 1), Segment(20, 29, 2)], "v2": [Segment(0, 9, 3)]}
    preds = {
        "v1": [
            Segment(1, 10, 1, 0.9),  # IoU 9/11: TP
            Segment(0, 9, 1, 0.5),  # the same label again: already matched, FP
            Segment(20, 29, 4, 0.9),  # wrong class: FP
        ],
        "v2": [Segment(6, 15, 3, 0.8)],  # IoU 4/16 = 0.25: TP only below 0.25
        "v3": [Segment(0, 5, 0, 0.7)],  # a video without labels: FP
    }
    s = segment_scores(preds, truths, [0.3, 0.2])
    assert s["iou_0.3"]["tp"] == 1 and s["iou_0.3"]["predicted"] == 5 and s["iou_0.3"]["true"] == 3
    assert s["iou_0.3"]["precision"] == pytest.approx(1 / 5)
    assert s["iou_0.3"]["recall"] == pytest.approx(1 / 3)
    assert s["iou_0.3"]["f1"] == pytest.approx(2 * (1 / 5) * (1 / 3) / (1 / 5 + 1 / 3))
    assert s["iou_0.2"]["tp"] == 2
    # the higher-scored of two overlapping predictions takes the ground truth
    two = {"v": [Segment(0, 9, 1, 0.2), Segment(0, 8, 1, 0.9)]}
    assert segment_scores(two, {"v": [Segment(0, 9, 1)]}, [0.5])["iou_0.5"]["tp"] == 1
    assert segment_scores({}, {}, [0.3])["iou_0.3"]["f1"] == 0.0


def test_prediction_csv_is_the_label_files_format(tmp_path: Path) -> None:
    segs = [Segment(0, 9, 0, 0.9), Segment(20, 29, 31, 0.7)]
    path = write_segments(tmp_path / "0001_prediction.csv", segs)
    assert path.read_text() == "1,0,9\n99,20,29\n"  # release ids: 1-based, 99 = illustrative
    assert [(s.start, s.end, s.label) for s in read_segments(path)] == [(0, 9, 0), (20, 29, 31)]


def test_sequence_windows_select_the_models_joints() -> None:
    table = np.random.default_rng(0).random((50, 137, 3)).astype(np.float32)
    seen = []

    def pipeline(record):  # noqa: ANN001, ANN202
        seen.append(record)
        return np.zeros((3, 4, record.num_joints, 1), np.float32)

    ds = SequenceWindows(table, "0007", 20, 10, pipeline, (720, 1280), layout="imigue22")
    assert ds.starts == [0, 10, 20, 30] and len(ds) == 4
    sample = ds[3]
    assert sample["x"].shape == (3, 4, 22, 1) and int(sample["index"]) == 3
    rec = seen[-1]
    assert rec.name == "0007_w30" and (rec.start, rec.end) == (30, 49)
    from migalab.data.skeleton.layouts import get_layout

    idx = list(get_layout("imigue22").indices)
    np.testing.assert_array_equal(rec.keypoint[0], table[30:50][:, idx, :2])


def test_predict_online_then_eval_by_name(cli_run: tuple[Path, Path], tiny_release: Path) -> None:
    """migalab-predict skeleton=<a video's table> writes the segments, the JSON and the
    timeline; migalab-eval online.* scores them against the video's label file."""
    from tests.test_console_scripts import _ok, run_script

    cwd, ckpt = cli_run
    video = sorted((tiny_release / "test").iterdir())[0]
    out = _ok(run_script(["migalab-predict", f"ckpt_path={ckpt}", f"skeleton={video}",
                          "online.threshold=0.0", f"paths.log_dir={cwd / 'online'}"], cwd))  # fmt: skip
    (pred,) = (cwd / "online").glob(f"predict/runs/*/{video.name}_prediction.csv")
    record = json.loads(pred.with_suffix(".json").read_text())
    assert record["frames"] > 0 and record["windows"] >= 1 and record["frames_per_s"] > 0
    assert len(record["segments"]) == len(read_segments(pred)) > 0  # threshold 0: no background
    assert (pred.parent / f"{video.name}_timeline.png").stat().st_size > 1000
    assert "segments in" in out
    _ok(run_script(["migalab-eval", f"online.predictions={pred.parent}", f"online.labels={video}",
                    f"paths.log_dir={cwd / 'online'}"], cwd))  # fmt: skip
    (metrics,) = (cwd / "online").glob("eval/runs/*/metrics.json")
    scores = json.loads(metrics.read_text())["online"]
    assert set(scores) == {"iou_0.3", "iou_0.5"}
    truth = len(read_segments(video / f"{video.name}_label.csv"))
    assert scores["iou_0.3"]["true"] == truth and 0 <= scores["iou_0.3"]["f1"] <= 1
