"""Online recognition: window placement, the per-frame merge, segments, the segment F1 on
hand-made cases, the prediction files, and migalab-predict / migalab-eval on a whole sequence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from migalab.online import (
    OnlineSettingsError,
    Segment,
    SequenceWindows,
    fit_class_thresholds,
    fit_online_settings,
    frame_probabilities,
    gate_frames,
    idle_false_segments,
    match_segments,
    read_segments,
    segment_rows,
    segment_scores,
    segments_from_frames,
    smooth_frames,
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


def test_window_and_stride_at_their_boundaries() -> None:
    assert window_starts(1, 1, 1) == [0]  # one frame: one window
    assert window_starts(3, 1, 1) == [0, 1, 2]  # window 1 and stride 1 are the smallest
    assert window_starts(5, 2, 3) == [0, 3]  # the stride lands on the last start (5 - 2)
    assert window_starts(6, 2, 3) == [0, 3, 4]  # it does not: one more window ends at frame 5
    for window, stride in ((0, 1), (1, 0), (-1, 1)):
        with pytest.raises(OnlineSettingsError, match="online.window and online.stride"):
            window_starts(10, window, stride)


def test_frame_probabilities_average_the_covering_windows() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    # windows of 4 at 0, 2, 4 over 8 frames: frames 0-1 one window, 2-3 two, 4-5 two, 6-7 one
    frames = frame_probabilities(probs, [0, 2, 4], 4, 8)
    np.testing.assert_allclose(frames[:, 0], [1, 1, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(frames.sum(1), 1.0)
    assert frame_probabilities(probs[:1], [0], 4, 6)[4:].sum() == 0  # uncovered frames
    assert frames.dtype == np.float32 and frames.shape == (8, 2)


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


def test_threshold_and_min_length_at_their_boundaries() -> None:
    p = np.zeros((9, 2), np.float32)
    p[0:3, 0] = 0.5  # class 0 exactly at the threshold: foreground
    p[3:6, 1] = np.nextafter(np.float32(0.5), np.float32(0))  # just below: background
    p[6:9, 1] = 0.75
    segs = segments_from_frames(p, threshold=0.5, min_length=3)  # both runs exactly 3 long
    assert [(s.start, s.end, s.label) for s in segs] == [(0, 2, 0), (6, 8, 1)]
    assert segs[0].score == 0.5 and segs[1].score == 0.75
    assert segments_from_frames(p, threshold=0.5, min_length=4) == []  # one frame too short
    # threshold 0: no background; frames 3..8 are one run of class 1
    segs = segments_from_frames(p, threshold=0.0)
    assert [(s.start, s.end, s.label) for s in segs] == [(0, 2, 0), (3, 8, 1)]
    assert segments_from_frames(p, threshold=1.0) == []
    assert segments_from_frames(np.ones((2, 1), np.float32), threshold=1.0)[0].length == 2
    for kwargs in ({"threshold": -1e-9}, {"threshold": 1.000001}, {"threshold": float("nan")},
                   {"min_length": 0}):  # fmt: skip
        with pytest.raises(OnlineSettingsError, match="online."):
            segments_from_frames(p, **kwargs)


def test_default_threshold_and_min_length() -> None:
    p = np.zeros((3, 2), np.float32)
    p[0, 0], p[1, 1], p[2, 1] = 0.5, 0.49, 0.6  # a 1-frame class-0 segment at exactly 0.5
    segs = segments_from_frames(p)
    assert [(s.start, s.end, s.label) for s in segs] == [(0, 0, 0), (2, 2, 1)]


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


def test_iou_at_the_threshold_is_no_match() -> None:
    truth = [Segment(0, 9, 1)]
    # inclusive frames: 0..2 shares 3 of 10 frames with 0..9, IoU exactly 0.3
    assert temporal_iou(Segment(0, 2, 1), truth[0]) == 0.3
    assert segment_scores({"v": [Segment(0, 2, 1)]}, {"v": truth}, [0.3])["iou_0.3"]["tp"] == 0
    # 0..3 (IoU 0.4) above 0.3 matches; at 0.4 it does not, just below it does
    assert segment_scores({"v": [Segment(0, 3, 1)]}, {"v": truth}, [0.3])["iou_0.3"]["tp"] == 1
    assert match_segments([Segment(0, 3, 1)], truth, 0.4) == []
    assert match_segments([Segment(0, 3, 1)], truth, np.nextafter(0.4, 0)) == [(0, 0)]
    # exactly 0.5: 0..4 of 0..9; half of the frames is not "more than half"
    assert match_segments([Segment(0, 4, 1)], truth, 0.5) == []
    assert match_segments([Segment(0, 5, 1)], truth, 0.5) == [(0, 0)]
    # touching intervals share one frame (inclusive ends); adjacent ones share none
    assert temporal_iou(Segment(0, 9, 1), Segment(9, 18, 1)) == pytest.approx(1 / 19)
    assert temporal_iou(Segment(0, 9, 1), Segment(10, 19, 1)) == 0.0
    assert temporal_iou(Segment(3, 3, 1), Segment(3, 3, 1)) == 1.0  # one frame each
    assert match_segments([Segment(0, 9, 1)], truth, 0.0) == [(0, 0)]
    assert match_segments([Segment(10, 19, 1)], truth, 0.0) == []  # no overlap, even at 0
    assert match_segments([Segment(0, 9, 2)], truth, 0.0) == []  # another class


def test_predictions_are_matched_by_decreasing_score() -> None:
    """Greedy by confidence, each ground truth once: high (0..9) and low (3..12) both overlap
    g1 (0..9); low also overlaps g2 (8..17) above 0.3. Taking high first, it gets g1 and low
    gets g2 (2 TP); taking low first would give it g1 (its best IoU) and leave high without
    a match (1 TP)."""
    truths = [Segment(0, 9, 1), Segment(8, 17, 1)]
    high, low = Segment(0, 9, 1, 0.9), Segment(3, 12, 1, 0.4)
    assert temporal_iou(low, truths[0]) > temporal_iou(low, truths[1]) > 0.3
    assert temporal_iou(high, truths[1]) < 0.3
    for preds in ([high, low], [low, high]):  # whatever the order given
        s = segment_scores({"v": preds}, {"v": truths}, [0.3])["iou_0.3"]
        assert s["tp"] == 2 and s["precision"] == 1.0 and s["recall"] == 1.0
    assert match_segments([low, high], truths, 0.3) == [(1, 0), (0, 1)]
    # the wrong order would change the count: low alone first takes g1
    assert match_segments([low], truths, 0.3) == [(0, 0)]
    # equal scores: the order given (a stable sort)
    tied = [Segment(0, 9, 1, 0.5), Segment(1, 9, 1, 0.5)]
    assert match_segments(tied, truths[:1], 0.3) == [(0, 0)]
    assert match_segments(tied[::-1], truths[:1], 0.3) == [(0, 0)]
    # each prediction takes its best unmatched ground truth; equal IoUs (6/14 with both): the
    # first ground truth
    assert match_segments([Segment(4, 13, 1)], truths, 0.3) == [(0, 0)]
    assert match_segments([Segment(5, 12, 1)], [Segment(0, 9, 1), Segment(8, 17, 1),
                                                  Segment(5, 12, 1)], 0.3) == [(0, 2)]  # fmt: skip


def test_segment_counts_of_many_videos_and_empty_sides() -> None:
    truths = {"a": [Segment(0, 9, 0), Segment(20, 29, 0)], "b": [Segment(0, 9, 2)]}
    preds = {"a": [Segment(0, 9, 0, 0.9), Segment(20, 29, 0, 0.8)], "b": [Segment(0, 9, 2, 0.7)]}
    s = segment_scores(preds, truths, [0.5])["iou_0.5"]
    assert (s["tp"], s["predicted"], s["true"], s["f1"]) == (3, 3, 3, 1.0)  # counts add up
    only_truth = segment_scores({}, truths, [0.5])["iou_0.5"]
    assert only_truth["precision"] == 0.0 and only_truth["recall"] == 0.0
    only_preds = segment_scores(preds, {}, [0.5])["iou_0.5"]
    assert only_preds["precision"] == 0.0 and only_preds["recall"] == 0.0
    assert only_preds["f1"] == 0.0 and only_preds["predicted"] == 3


def test_segment_rows_for_the_json() -> None:
    segs = [Segment(0, 9, 1, 0.123456789), Segment(3, 4, 0, float("nan"))]
    assert segment_rows(segs, None) == [
        {"start": 0, "end": 9, "label": 1, "score": 0.12346},
        {"start": 3, "end": 4, "label": 0, "score": None},
    ]
    rows = segment_rows(segs, ["sit", "stand"])
    assert [r["class_name"] for r in rows] == ["stand", "sit"]
    assert "class_name" not in segment_rows(segs, [])[0]


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
    np.testing.assert_array_equal(rec.keypoint_score[0], table[30:50][:, idx, 2])
    assert rec.keypoint.dtype == rec.keypoint_score.dtype == np.float32
    assert (rec.video_id, rec.label, rec.img_shape, rec.layout) == ("0007", -1, (720, 1280),
                                                                    "imigue22")  # fmt: skip
    assert sample["x"].dtype == torch.float32 and int(sample["label"]) == -1


def test_sequence_windows_in_the_tables_layout_and_dict_pipelines() -> None:
    table = np.random.default_rng(1).random((12, 137, 3))  # float64: given to the model as f32
    seen = []

    def pipeline(record):  # noqa: ANN001, ANN202
        seen.append(record)
        return {"x": record.keypoint.astype(np.float64), "extra": 1}

    ds = SequenceWindows(table, "v", 8, 4, pipeline, (480, 640))
    sample = ds[1]
    assert ds.joints is None and sample["extra"] == 1 and sample["x"].dtype == torch.float32
    assert seen[0].keypoint.dtype == seen[0].keypoint_score.dtype == np.float32
    assert sample["x"].shape == (1, 8, 137, 2) and int(sample["label"]) == -1
    for bad in (table[..., :2], table[0]):
        with pytest.raises(ValueError, match="v: expected a .T, V, 3. keypoint table"):
            SequenceWindows(bad, "v", 8, 4, lambda r: r, (480, 640))
    with pytest.raises(ValueError, match="v: a imigue22 table has no coco17 joints"):
        SequenceWindows(table[:, :22], "v", 8, 4, lambda r: r, (480, 640), layout="coco17",
                        table_layout="imigue22")  # fmt: skip


def test_class_thresholds_apply_to_each_frame_s_top_class() -> None:
    p = np.zeros((6, 3), np.float32)
    p[0:3, 1], p[3:6, 2] = 0.4, 0.6
    assert [(s.start, s.end, s.label) for s in segments_from_frames(p, [0.9, 0.4, 0.61])] == [
        (0, 2, 1),
    ]  # class 1 at exactly its 0.4: foreground; class 2 below its 0.61: background
    assert len(segments_from_frames(p, [0.9, 0.41, 0.6])) == 1
    with pytest.raises(OnlineSettingsError, match="2 class thresholds for 3 classes"):
        segments_from_frames(p, [0.5, 0.5])
    with pytest.raises(OnlineSettingsError, match="online.threshold"):
        segments_from_frames(p, [0.5, 1.01, 0.5])


def test_fit_class_thresholds_separates_what_one_threshold_cannot() -> None:
    """A true class-1 gesture at p 0.4 and a false class-2 one at p 0.6: no single threshold
    keeps the first and drops the second; per class, class 2 rises above 0.6."""
    a = np.zeros((60, 3), np.float32)
    a[10:30, 1], a[40:60, 2] = 0.4, 0.6
    truths = {"a": [Segment(10, 29, 1)]}
    best_global = max(
        segment_scores({"a": segments_from_frames(a, t, 8)}, truths, [0.3])["iou_0.3"]["f1"]
        for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
    )
    assert best_global == pytest.approx(2 / 3)
    thresholds, f1 = fit_class_thresholds({"a": a}, truths, 0.4, 8)
    assert f1 == 1.0 and thresholds[1] == 0.4 and thresholds[2] > 0.6
    assert thresholds[0] == 0.4  # no class-0 frame: F1 never strictly rises, it keeps its value


def test_smooth_frames_is_a_running_median_that_removes_short_flicker() -> None:
    p = np.zeros((9, 2), np.float32)
    p[:, 0] = 0.9
    p[4] = (0.1, 0.9)  # one frame of class 1: flicker
    p[7:9] = (0.1, 0.9)  # two frames of class 1 at the end
    out = smooth_frames(p, 3)
    assert out.dtype == np.float32 and out.shape == p.shape
    assert out[:, 1].tolist() == pytest.approx([0, 0, 0, 0, 0, 0, 0, 0.9, 0.9])
    assert smooth_frames(p, 1) is p and smooth_frames(p[:0], 5).shape == (0, 2)
    # window 5 at frame 6 sees frames 4..8: the flicker and the last two -> 0.9
    assert smooth_frames(p, 5)[:, 1].tolist() == pytest.approx([0] * 6 + [0.9] * 3)
    for bad in (0, 2, -1, 2.5, True, "3"):
        with pytest.raises(OnlineSettingsError, match="online.smooth"):
            smooth_frames(p, bad)


def test_gate_frames_keeps_actionness_at_the_threshold() -> None:
    frames = np.full((4, 3), 0.5, np.float32)
    act = np.array([0.29, 0.3, 0.31, 1.0])
    gated = gate_frames(frames, act, 0.3)
    assert gated[:, 0].tolist() == [0.0, 0.5, 0.5, 0.5] and gated.dtype == np.float32
    assert gate_frames(frames, None, 0.3) is frames
    assert (
        gate_frames(frames, act, 0.0).min() == 0.5 and gate_frames(frames, act, 1.0)[:3].max() == 0
    )
    for bad in (-0.01, 1.01):
        with pytest.raises(OnlineSettingsError, match="actionness_threshold"):
            gate_frames(frames, act, bad)


def test_idle_false_segments_share_no_frame_with_any_label() -> None:
    truths = {"a": [Segment(10, 19, 1)], "b": []}
    preds = {"a": [Segment(0, 9, 1),     # ends just before the label: false
                   Segment(0, 10, 2),    # shares frame 10 (another class): not idle
                   Segment(19, 25, 1),   # shares frame 19: not idle
                   Segment(20, 29, 0)],  # starts just after: false
             "b": [Segment(0, 4, 3)]}  # fmt: skip
    idle = idle_false_segments(preds, truths, {"a": 1510, "b": 1500}, fps=25.0)
    # a: 1,500 free frames, b: 1,500 -> 3,000 frames = 2 minutes at 25 fps
    assert idle == {"segments": 3, "idle_minutes": 2.0, "per_minute": 1.5}
    # videos are those with a frame count; a video without labels is all idle
    assert idle_false_segments(preds, truths, {"b": 0}, 25.0)["per_minute"] == 0.0
    for bad in (0.0, -25.0):
        with pytest.raises(OnlineSettingsError, match="online.fps"):
            idle_false_segments(preds, truths, {"a": 30}, bad)


def _two_videos() -> tuple[dict, dict]:
    """Video a: a gesture of class 1 at frames 10..29 and an idle stretch 40..59 that the
    classifier reads as class 2 at p 0.9 but an actionness model scores 0.2; video b: a class-0
    gesture at 5..14 (p 0.6)."""
    a = np.zeros((60, 3), np.float32)
    a[10:30, 1], a[40:60, 2] = 0.8, 0.9
    act_a = np.full(60, 0.2)
    act_a[10:30] = 0.9
    b = np.zeros((20, 3), np.float32)
    b[5:15, 0] = 0.6
    act_b = np.full(20, 0.1)
    act_b[5:15] = 0.7
    truths = {"a": [Segment(10, 29, 1)], "b": [Segment(5, 14, 0)]}
    return {"a": (a, act_a), "b": (b, act_b)}, truths


def test_fit_online_settings_finds_the_gate_that_removes_idle_segments() -> None:
    videos, truths = _two_videos()
    plain = fit_online_settings({v: (f, None) for v, (f, _) in videos.items()}, truths)
    # without actionness the idle stretch (p 0.9) cannot be thresholded away: P = 2/3
    assert plain["actionness_threshold"] is None and plain["f1"] == pytest.approx(0.8)
    assert plain["combinations"] == 10 * 7
    fitted = fit_online_settings(videos, truths)
    assert fitted["f1"] == 1.0 and fitted["precision"] == 1.0 and fitted["recall"] == 1.0
    # ties go to the first combination in grid order: the lowest gate that works (0.3 > 0.2)
    # and the lowest class threshold (0.1: at 0 every gated frame is foreground, as class 0)
    assert fitted["actionness_threshold"] == 0.3 and fitted["threshold"] == 0.1
    assert fitted["min_length"] == 1 and fitted["combinations"] == 9 * 10 * 7
    assert fitted["videos"] == 2 and fitted["iou"] == 0.3
    with pytest.raises(ValueError, match=r"labels of every video: none for \['c'\]"):
        fit_online_settings({**videos, "c": videos["b"]}, truths)


def test_predict_online_then_eval_by_name(cli_run: tuple[Path, Path], tiny_release: Path) -> None:
    """migalab-predict skeleton=<the release's test split folder> (one <vid>/ folder per video)
    writes each video's segments, JSON and timeline; migalab-eval online.* scores them against
    the label files of the same split folder."""
    from tests.test_console_scripts import _ok, run_script

    cwd, ckpt = cli_run
    split = tiny_release / "test"
    videos = sorted(p.name for p in split.iterdir() if p.is_dir())
    out = _ok(run_script(["migalab-predict", f"ckpt_path={ckpt}", f"skeleton={split}",
                          "online.threshold=0.0", f"paths.log_dir={cwd / 'online'}"], cwd))  # fmt: skip
    preds = sorted((cwd / "online").glob("predict/runs/*/*_prediction.csv"))
    assert [p.name.removesuffix("_prediction.csv") for p in preds] == videos
    record = json.loads(preds[0].with_suffix(".json").read_text())
    assert record["frames"] > 0 and record["windows"] >= 1 and record["frames_per_s"] > 0
    assert len(record["segments"]) == len(read_segments(preds[0])) > 0  # threshold 0: no background
    assert (preds[0].parent / f"{videos[0]}_timeline.png").stat().st_size > 1000
    assert out.count("segments in") == len(videos)
    _ok(run_script(["migalab-eval", f"online.predictions={preds[0].parent}",
                    f"online.labels={split}", f"paths.log_dir={cwd / 'online'}"], cwd))  # fmt: skip
    (metrics,) = (cwd / "online").glob("eval/runs/*/metrics.json")
    payload = json.loads(metrics.read_text())
    scores = payload["online"]
    assert set(scores) == {"iou_0.3", "iou_0.5"} and payload["videos"] == videos
    truth = sum(len(read_segments(split / v / f"{v}_label.csv")) for v in videos)
    assert scores["iou_0.3"]["true"] == truth and 0 <= scores["iou_0.3"]["f1"] <= 1
    idle = payload["idle"]  # the frames come from the prediction JSONs
    assert idle["idle_minutes"] > 0 and 0 <= idle["segments"] <= scores["iou_0.3"]["predicted"]


def test_actionness_checkpoint_and_settings_are_checked(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from migalab.predict import _online_settings, require_actionness

    require_actionness(OmegaConf.create({"data": {"target": "actionness"}}), "a.ckpt")
    for data in ({"target": "gesture"}, {}, {"target": "actionness", "modalities": ["rgb"]}):
        with pytest.raises(ValueError, match="a.ckpt: not an actionness model"):
            require_actionness(OmegaConf.create({"data": data}), "a.ckpt")
    on = {"threshold": 0.5, "min_length": 8, "actionness_threshold": 0.5, "settings": None}
    assert _online_settings(OmegaConf.create({"online": on})) == {
        "threshold": 0.5, "min_length": 8, "actionness_threshold": 0.5, "class_thresholds": None,
    }  # fmt: skip
    fitted = tmp_path / "online_fit.json"
    fitted.write_text(json.dumps({"threshold": 0.2, "min_length": 4,
                                  "actionness_threshold": None, "f1": 0.7}))  # fmt: skip
    cfg = OmegaConf.create({"online": {**on, "settings": str(fitted)}})
    assert _online_settings(cfg) == {"threshold": 0.2, "min_length": 4,
                                     "actionness_threshold": 0.5, "class_thresholds": None}  # fmt: skip
    fitted.write_text(json.dumps({"threshold": 0.2, "min_length": 4, "class_thresholds": [0.1, 1]}))
    assert _online_settings(cfg)["class_thresholds"] == [0.1, 1.0]
    for bad in ('{"threshold": "0.2", "min_length": 4}', '{"min_length": true, "threshold": 0}',
                "[1, 2]", "not json",
                '{"threshold": 0.2, "min_length": 4, "class_thresholds": [0.1, true]}',
                '{"threshold": 0.2, "min_length": 4, "class_thresholds": 0.3}'):  # fmt: skip
        fitted.write_text(bad)
        with pytest.raises(ValueError, match="online.settings="):
            _online_settings(cfg)


@pytest.mark.slow  # an actionness model trained by name, then two predictions and an evaluation
def test_actionness_fit_on_validate_then_settings_on_test_by_name(
    cli_run: tuple[Path, Path], tiny_release: Path, tiny_cache: Path
) -> None:
    """The documented online recipe: train an actionness model, fit the online settings on the
    validation split folder with it, and spot the test split with those settings."""
    from tests.conftest import tiny_data_overrides
    from tests.test_console_scripts import _ok, run_script

    cwd, ckpt = cli_run
    logs = cwd / "actionness"
    _ok(run_script(["migalab-train", "experiment=actionness_joint_synth", "logger=csv",
                    f"paths.log_dir={logs}", "trainer.max_epochs=1",
                    "model.encoder.base_channels=8", "callbacks.progress_bar.refresh_rate=0",
                    *tiny_data_overrides(tiny_release, tiny_cache)], cwd))  # fmt: skip
    (metrics,) = logs.glob("train/runs/*/metrics.json")
    trained = json.loads(metrics.read_text())
    assert trained["val"]["support"].keys() == {"background", "gesture"}
    act = trained["ckpt_path"]
    out = _ok(run_script(["migalab-predict", f"ckpt_path={ckpt}", f"online.actionness_ckpt={act}",
                          f"skeleton={tiny_release / 'validate'}", "online.fit=true",
                          f"hydra.run.dir={cwd / 'fit'}"], cwd))  # fmt: skip
    fit = json.loads((cwd / "fit" / "online_fit.json").read_text())
    assert "online.fit on 2 videos" in out and 0 <= fit["f1"] <= 1
    assert fit["actionness_threshold"] in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert fit["combinations"] == 9 * 10 * 7 and fit["actionness_checkpoints"] == [act]
    _ok(run_script(["migalab-predict", f"ckpt_path={ckpt}", f"online.actionness_ckpt={act}",
                    f"skeleton={tiny_release / 'test'}",
                    f"online.settings={cwd / 'fit' / 'online_fit.json'}",
                    f"hydra.run.dir={cwd / 'test'}"], cwd))  # fmt: skip
    summary = json.loads((cwd / "test" / "online.json").read_text())
    assert summary["settings"] == {k: fit[k] for k in ("threshold", "min_length",
                                                       "actionness_threshold", "class_thresholds")}  # fmt: skip
    assert len(fit["class_thresholds"]) == 32 and fit["f1_class_thresholds"] >= fit["f1"]
    record = json.loads(next((cwd / "test").glob("*_prediction.json")).read_text())
    assert record["actionness_checkpoints"] == [act]
    refused = run_script(["migalab-predict", f"ckpt_path={ckpt}", f"online.actionness_ckpt={ckpt}",
                          f"skeleton={tiny_release / 'test'}", f"hydra.run.dir={cwd / 'no'}"],
                         cwd)  # fmt: skip
    assert refused.returncode == 2 and "not an actionness model" in refused.stderr
