"""The emotion of a new video: the clips it rests on and the one-video release it becomes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from migalab.data.formats.miga2025 import find_videos, read_label_csv
from migalab.emotion_video import EmotionVideoError, emotion_clips, one_video_release
from migalab.online import Segment


def test_clips_are_the_gestures_found_at_least_min_length_long() -> None:
    segments = [Segment(0, 6, 1), Segment(10, 17, 2), Segment(30, 59, 3)]
    assert emotion_clips(segments, 100, window=64, min_length=8) == [(10, 17), (30, 59)]


def test_without_gestures_windows_cover_the_video() -> None:
    assert emotion_clips([], 150, window=64, min_length=8) == [(0, 63), (64, 127), (128, 149)]
    # a last window shorter than min_length is dropped ...
    assert emotion_clips([], 135, window=64, min_length=8) == [(0, 63), (64, 127)]
    assert emotion_clips([], 136, window=64, min_length=8)[-1] == (128, 135)
    # ... unless it is the only one; an empty video has none
    assert emotion_clips([], 5, window=64, min_length=8) == [(0, 4)]
    assert emotion_clips([], 0, window=64) == []
    assert emotion_clips([Segment(0, 3, 1)], 40, window=64, min_length=8) == [(0, 39)]
    for window, min_length in ((0, 8), (64, 0)):
        with pytest.raises(EmotionVideoError, match=">= 1"):
            emotion_clips([], 10, window, min_length)


def test_one_video_release_is_read_as_a_release(tmp_path: Path) -> None:
    table = tmp_path / "in" / "talk_openpose.csv"
    table.parent.mkdir()
    table.write_text("1,2,3\n")
    video = tmp_path / "in" / "talk.mp4"
    video.write_bytes(b"not really a video")
    root = one_video_release(tmp_path / "release", "talk", table, video, [(0, 9), (20, 39)])
    (found,) = find_videos(root, "test")
    assert found.video_id == "talk" and found.table == root / "test/talk/talk_openpose.csv"
    assert found.video is not None and found.video.read_bytes() == b"not really a video"
    assert [(s, e) for _, s, e in read_label_csv(found.label)] == [(0, 9), (20, 39)]
    assert find_videos(root, "train") == [] and find_videos(root, "validate") == []
    # again (a re-run): replaced, not refused
    one_video_release(tmp_path / "release", "talk", table, video, [(5, 9)])
    assert [(s, e) for _, s, e in read_label_csv(found.label)] == [(5, 9)]
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["talk.mp4", "talk_openpose.csv"]


@pytest.mark.slow  # an InterFusion epoch, its evaluation and the one-video release (~40 s)
def test_one_video_path_gives_migalab_eval_s_answer(
    emotion_run: tuple[Path, Path], tiny_video_release: Path, tiny_video_cache: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """On a test video's own labelled clips, the one-video release (a copy of its table, a
    link to its mp4, crops prepared afresh) gives the win probability that migalab-eval gives
    the same checkpoint on the release: same clips, same crops, same pooling."""
    import csv

    from migalab.emotion_video import predict_emotion
    from migalab.eval import evaluate
    from migalab.utils.hydra import compose_config
    from tests.conftest import tiny_eval_overrides

    _, ckpt = emotion_run
    where = tiny_eval_overrides(tiny_video_release, tiny_video_cache)
    cfg = compose_config("eval", [f"ckpt_path={ckpt}", "splits=[test]", *where],
                         output_dir=tmp_path / "ev")  # fmt: skip
    evaluate(cfg)
    rows = list(csv.DictReader((tmp_path / "ev" / "video_predictions_test.csv").open()))
    (folder,) = [p for p in (tiny_video_release / "test").iterdir() if p.is_dir()][:1]
    vid = folder.name
    expected = next(r for r in rows if r["video_id"] == vid)
    clips = [(s, e) for _, s, e in read_label_csv(folder / f"{vid}_label.csv")]
    answer = predict_emotion([str(ckpt)], vid, folder / f"{vid}_openpose.csv", folder / f"{vid}.mp4",
                             clips, (720, 1280), tmp_path / "one", cfg.trainer,
                             {"data_dir": str(tmp_path / "data")})  # fmt: skip
    assert answer["clips"] == int(expected["n_clips"]) == len(clips)
    assert answer["p_win"] == pytest.approx(float(expected["prob_win"]), abs=2e-3)
    assert answer["answer"] == ("win" if float(expected["prob_win"]) >= 0.5 else "lose")
    assert not (folder / "emotion").exists()  # nothing written beside the user's files


@pytest.mark.slow  # a gesture checkpoint trained by name (the session's cli_run) and an emotion one
def test_emotion_needs_a_video_and_an_emotion_checkpoint(
    cli_run: tuple[Path, Path], emotion_run: tuple[Path, Path], tiny_video_release: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    from migalab.predict import predict
    from migalab.utils.hydra import compose_config

    _, gesture = cli_run
    folder = sorted(p for p in (tiny_video_release / "test").iterdir() if p.is_dir())[0]
    video = folder / f"{folder.name}.mp4"
    table = tmp_path / "alone" / f"{folder.name}_openpose.csv"  # no <vid>.mp4 beside this copy
    table.parent.mkdir()
    shutil.copyfile(folder / table.name, table)
    base = [f"ckpt_path={gesture}", f"skeleton={table}", "online.timeline=false"]
    with pytest.raises(EmotionVideoError, match=f"{folder.name} has no video"):
        predict(compose_config("predict", [*base, f"emotion_ckpt={emotion_run[1]}"],
                               output_dir=tmp_path / "a"))  # fmt: skip
    with pytest.raises(EmotionVideoError, match="not an emotion model"):
        predict(compose_config("predict", [*base, f"emotion_ckpt={gesture}",
                                           f"online.annotate_video={video}"],
                               output_dir=tmp_path / "b"))  # fmt: skip
