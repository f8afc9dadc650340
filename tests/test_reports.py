"""Reports: report.md and the PNGs from a metrics.json payload, the timeline and the skeleton
overlay; a training run writes its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from migalab.online import Segment
from migalab.reports import draw_keypoints, timeline_png, write_report


def _split(k: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    cm = rng.integers(0, 3, (k, k))
    np.fill_diagonal(cm, rng.integers(3, 9, k))
    cm[-1] = 0  # a class without test samples
    names = [f"c{i}" for i in range(k)]
    support = cm.sum(1)
    acc = np.where(support > 0, cm.diagonal() / np.maximum(support, 1), np.nan)
    return {"top1": 0.5, "macro_f1": 0.4, "confusion_matrix": cm.tolist(),
            "per_class_acc": dict(zip(names, acc.tolist(), strict=True)),
            "support": dict(zip(names, support.tolist(), strict=True))}  # fmt: skip


def test_report_files_from_a_metrics_payload(tmp_path: Path) -> None:
    payload = {"task": "train", "run_dir": str(tmp_path), "epochs": 3,
               "val": _split(6, 0), "test": _split(6, 1)}  # fmt: skip
    files = write_report(tmp_path, payload, "demo")
    names = {f.name for f in files}
    assert names == {"report.md", "val_confusion.png", "val_per_class.png",
                     "test_confusion.png", "test_per_class.png"}  # fmt: skip
    for f in files:
        assert f.stat().st_size > 0
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    assert (
        "# demo report" in md
        and "| val | 0.5000" in md
        and "![confusion](test_confusion.png)" in md
    )
    assert "Hardest classes:" in md and "Most frequent confusions" in md
    assert "c5 " not in md.split("Hardest classes:")[1].splitlines()[0]  # no samples: not listed
    # an emotion payload has no confusion matrix: the table only
    emo = write_report(tmp_path / "emo", {"task": "train", "val": {"acc": 0.7, "auroc": 0.8}})
    assert [f.name for f in emo] == ["report.md"]
    assert "| val | 0.7000 | 0.8000 |" in (tmp_path / "emo" / "report.md").read_text()


def test_timeline_and_overlay(tmp_path: Path) -> None:
    segs = [Segment(10, 40, 2, 0.8), Segment(60, 90, 0, 0.6)]
    probs = np.random.default_rng(0).random((120, 3)).astype(np.float32)
    path = timeline_png(tmp_path / "t.png", segs, 120, ["a", "b", "c"], truth=[Segment(12, 45, 2)],
                        frame_probs=probs, title="v")  # fmt: skip
    assert path.read_bytes()[:4] == b"\x89PNG"
    # frames without a plausible person are shaded in the predicted lane
    from PIL import Image

    nobody = np.zeros(120, bool)
    nobody[95:120] = True
    shaded = timeline_png(tmp_path / "n.png", segs, 120, ["a", "b", "c"],
                          truth=[Segment(12, 45, 2)], frame_probs=probs, title="v",
                          no_person=nobody)  # fmt: skip
    plain = np.asarray(Image.open(path).convert("L"), np.float32)
    grey = np.asarray(Image.open(shaded).convert("L"), np.float32)
    assert ((grey > 200) & (grey < 225)).sum() > ((plain > 200) & (plain < 225)).sum() + 500
    frame = np.zeros((40, 60, 3), np.uint8)
    kp = np.zeros((137, 3), np.float32)
    kp[[1, 2, 3], :2] = [[30, 10], [20, 12], [15, 25]]  # neck, right shoulder, right elbow
    kp[[1, 2, 3], 2] = 1.0
    kp[30] = [31, 5, 1.0]  # a face point
    out = draw_keypoints(frame, kp, label="x", scale=2)
    assert out.shape == (80, 120, 3) and out.dtype == np.uint8
    assert out[20:30, 35:45].any()  # the shoulder bone was drawn (scaled x2)
    assert not out[60:, :].any()  # nothing where no keypoint is


def test_training_writes_its_report(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    from migalab.train import train
    from migalab.utils.hydra import compose_config
    from tests.conftest import tiny_data_overrides

    cfg = compose_config("train", [*tiny_data_overrides(tiny_release, tiny_cache),
                                   "model.encoder.base_channels=8", "trainer.max_epochs=1",
                                   "callbacks.progress_bar.refresh_rate=0", "report=true"],
                         output_dir=tmp_path)  # fmt: skip
    assert cfg.report is True
    train(cfg)
    assert (tmp_path / "report.md").is_file() and (tmp_path / "test_confusion.png").is_file()
    assert (tmp_path / "val_per_class.png").is_file()


def test_annotated_video_has_every_frame(tmp_path: Path) -> None:
    import av

    from migalab.reports import annotated_video

    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            img = np.full((48, 64, 3), 20 * i, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    kp = np.zeros((10, 137, 3), np.float32)  # 2 frames fewer than the video
    kp[:, 1] = [32, 10, 1]
    kp[:, 2] = [20, 14, 1]
    path = annotated_video(src, kp, [Segment(2, 6, 1)], tmp_path / "out.mp4", ["a", "b"])
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (48, 64, 3)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_annotated_video_scales_keypoints_of_another_frame_size(tmp_path: Path) -> None:
    """A release table's keypoints are in its frame's pixels (1280 x 720 for the synthetic
    release) while its mp4 may be rendered smaller: the skeleton is drawn where the person is."""
    import av

    from migalab.reports import annotated_video

    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(3):
            img = np.zeros((48, 64, 3), np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode(None))
    kp = np.zeros((3, 137, 3), np.float32)
    kp[:, 1] = [40, 80, 1]  # neck -> right shoulder: a red body line, in 128 x 96 pixels
    kp[:, 2] = [120, 80, 1]
    path = annotated_video(src, kp, [], tmp_path / "out.mp4", keypoint_shape=(96, 128))
    with av.open(str(path)) as c:
        frame = next(iter(c.decode(video=0))).to_ndarray(format="rgb24").astype(int)
    red = (frame[..., 0] > 120) & (frame[..., 1] < 100)
    rows = np.flatnonzero(red.any(1))
    assert rows.size and abs(rows.mean() - 40) <= 2  # y 80 of 96 -> 40 of 48
    cols = np.flatnonzero(red.any(0))
    assert cols.min() >= 18 and cols.max() <= 62  # x 40..120 of 128 -> 20..60 of 64
