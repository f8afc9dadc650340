"""Pose extraction: the MediaPipe -> OpenPose-137 mapping on hand-made landmarks (no MediaPipe
needed), the clear message when the pose environment is missing, and (slow, in the pose
environment) migalab-pose by name on a video without a person."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from migalab.pose import PoseEnvMissing, find_pose_python
from migalab.pose.mapping import FACE68_FROM_MESH, PUPILS_FROM_MESH, to_openpose137

W, H = 200, 100


def _pose() -> np.ndarray:
    rng = np.random.default_rng(0)
    pose = np.zeros((33, 4))
    pose[:, :2] = rng.uniform(0.1, 0.9, (33, 2))
    pose[:, 3] = rng.uniform(0.2, 1.0, 33)
    return pose


def test_body_points_map_to_body25() -> None:
    pose = _pose()
    out = to_openpose137(pose, None, None, None, W, H)
    assert out.shape == (137, 3) and out.dtype == np.float32
    px = pose[:, :2] * [W, H]
    np.testing.assert_allclose(out[0, :2], px[0], rtol=1e-5)  # nose
    np.testing.assert_allclose(out[4, :2], px[16], rtol=1e-5)  # right wrist = MP right wrist
    np.testing.assert_allclose(out[7, :2], px[15], rtol=1e-5)  # left wrist
    np.testing.assert_allclose(out[1, :2], px[[11, 12]].mean(0), rtol=1e-5)  # neck: midpoint
    assert out[1, 2] == pytest.approx(min(pose[11, 3], pose[12, 3]))
    np.testing.assert_allclose(out[8, :2], px[[23, 24]].mean(0), rtol=1e-5)  # mid-hip
    assert (out[[20, 23]] == 0).all()  # small toes: no MediaPipe point
    assert (out[25:] == 0).all()  # no face, no hands


def test_face_and_hands() -> None:
    rng = np.random.default_rng(1)
    face = rng.uniform(0.2, 0.8, (478, 3))
    lhand, rhand = rng.uniform(0.2, 0.8, (21, 3)), rng.uniform(0.2, 0.8, (21, 3))
    out = to_openpose137(None, face, lhand, rhand, W, H)
    assert len(FACE68_FROM_MESH) == 68 and len(set(FACE68_FROM_MESH)) == 68
    np.testing.assert_allclose(out[25:93, :2], face[list(FACE68_FROM_MESH), :2] * [W, H], rtol=1e-5)
    np.testing.assert_allclose(out[93:95, :2], face[list(PUPILS_FROM_MESH), :2] * [W, H], rtol=1e-5)
    np.testing.assert_allclose(out[95:116, :2], lhand[:, :2] * [W, H], rtol=1e-5)  # same order
    np.testing.assert_allclose(out[116:137, :2], rhand[:, :2] * [W, H], rtol=1e-5)
    assert (out[25:, 2] == 1).all() and (out[:25] == 0).all()
    # without the refined iris points the pupils are missing
    assert (to_openpose137(None, face[:468], None, None, W, H)[93:95] == 0).all()


def test_points_outside_the_frame_are_missing() -> None:
    pose = _pose()
    pose[0, :2] = [1.2, 0.5]  # the nose beyond the right edge
    out = to_openpose137(pose, None, None, None, W, H)
    assert (out[0] == 0).all() and out[2, 2] > 0


def test_a_missing_pose_environment_is_a_clear_message(tmp_path: Path) -> None:
    from tests.test_console_scripts import run_script

    with pytest.raises(PoseEnvMissing, match="make pose-env"):
        find_pose_python(sys.executable)  # this environment has no mediapipe
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    env = {"MIGALAB_POSE_PYTHON": sys.executable}
    proc = run_script(["migalab-pose", str(video), "--pose-python", sys.executable], tmp_path, env)
    assert proc.returncode == 2 and "make pose-env" in proc.stderr
    missing = run_script(["migalab-pose", str(tmp_path / "none.mp4")], tmp_path, env)
    assert missing.returncode == 2 and "no video" in missing.stderr


def test_no_pose_python_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A downloaded folder carrying its own ``.pose-env/bin/python`` is never run: the pose
    python comes from --pose-python, $MIGALAB_POSE_PYTHON or the checkout's own .pose-env."""
    from migalab.pose import checkout_pose_python
    from tests.security.audit import RECORDER

    fake = tmp_path / ".pose-env" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(f"#!/bin/sh\ntouch {tmp_path / 'pwned'}\n")
    fake.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIGALAB_POSE_PYTHON", raising=False)
    checkout = checkout_pose_python()
    assert checkout is None or tmp_path not in checkout.parents
    with RECORDER.armed(forbidden=[tmp_path / ".pose-env"]) as events:
        try:
            found = find_pose_python()
        except PoseEnvMissing as err:
            assert str(fake) not in str(err)
        else:
            assert found == checkout
    assert not (tmp_path / "pwned").exists()
    assert not [e for e in events if ".pose-env" in e and str(tmp_path) in e]


def _pose_python() -> str | None:
    try:
        return str(find_pose_python())
    except PoseEnvMissing:
        if os.environ.get("CI"):
            raise  # CI creates the pose environment (make pose-env): it must be there
        return None


@pytest.mark.slow
def test_migalab_pose_on_a_video_without_a_person(tmp_path: Path) -> None:
    """A clip of grey frames: a message and a table of missing keypoints, not a crash."""
    import av

    from migalab.data.formats.miga2025 import read_openpose_table
    from tests.test_console_scripts import _ok, run_script

    python = _pose_python()
    if python is None:
        pytest.skip("no pose environment (make pose-env)")
    video = tmp_path / "empty_room.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for _ in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 128, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    text = _ok(run_script(["migalab-pose", str(video), "-o", str(tmp_path / "poses")], tmp_path,
                          {"MIGALAB_POSE_PYTHON": python}))  # fmt: skip
    assert "no person found" in text
    table = read_openpose_table(tmp_path / "poses" / "empty_room_openpose.csv")
    assert table.shape == (30, 411) and (table == 0).all()


@pytest.mark.slow
def test_migalab_pose_finds_the_synthetic_person_where_the_generator_put_it(
    tiny_video_release: Path, tmp_path: Path
) -> None:
    """MediaPipe on a rendered synthetic video, mapped to OpenPose-137, against the generator's
    own keypoints of the same frames: the body joints land within a few pixels of the video."""
    from migalab.data.formats.miga2025 import read_openpose_table
    from tests.test_console_scripts import _ok, run_script

    python = _pose_python()
    if python is None:
        pytest.skip("no pose environment (make pose-env)")
    folder = sorted((tiny_video_release / "train").iterdir())[0]
    video = folder / f"{folder.name}.mp4"
    _ok(run_script(["migalab-pose", str(video), "-o", str(tmp_path)], tmp_path,
                   {"MIGALAB_POSE_PYTHON": python}))  # fmt: skip
    found = read_openpose_table(tmp_path / f"{folder.name}_openpose.csv").reshape(-1, 137, 3)
    truth = read_openpose_table(folder / f"{folder.name}_openpose.csv").reshape(-1, 137, 3)
    meta = json.loads((tmp_path / f"{folder.name}_openpose.json").read_text())
    from migalab.data.specs import get_dataset

    scale = get_dataset("miga2025").img_shape[1] / meta["width"]  # rendered at 1/4 of 1280 px
    assert len(found) == len(truth)
    body = [1, 2, 3, 5, 6]  # neck, shoulders, elbows
    both = (found[:, body, 2] > 0) & (truth[:, body, 2] > 0)
    assert both.mean() > 0.5, f"MediaPipe found the body in {both.mean():.0%} of the frames"
    err = np.linalg.norm(found[:, body, :2] * scale - truth[:, body, :2], axis=-1)[both]
    assert np.median(err) < 8 * scale, np.median(err)  # within 8 video pixels


@pytest.mark.slow
def test_predict_from_a_video_by_name(
    cli_run: tuple[Path, Path], emotion_run: tuple[Path, Path], tiny_video_release: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """migalab-predict video=<mp4> emotion_ckpt=<ckpt>: pose extracted (pose environment),
    windows scored, the segments, the emotion, the timeline and the annotated video written:
    the whole answer in one command."""
    from tests.test_console_scripts import _ok, run_script

    python = _pose_python()
    if python is None:
        pytest.skip("no pose environment (make pose-env)")
    _, ckpt = cli_run
    folder = sorted((tiny_video_release / "test").iterdir())[0]
    out = _ok(run_script(["migalab-predict", f"ckpt_path={ckpt}",
                          f"video={folder / f'{folder.name}.mp4'}", "online.annotate=true",
                          f"emotion_ckpt={emotion_run[1]}",
                          "online.threshold=0.0", f"paths.log_dir={tmp_path / 'logs'}"],
                         tmp_path, {"MIGALAB_POSE_PYTHON": python}))  # fmt: skip
    (pred,) = (tmp_path / "logs").glob(f"predict/runs/*/{folder.name}_prediction.json")
    record = json.loads(pred.read_text())
    assert record["frames"] > 0 and record["segments"] and "segments in" in out
    assert Path(record["annotated"]).stat().st_size > 0
    assert (pred.parent / "pose" / f"{folder.name}_openpose.csv").is_file()
    assert (pred.parent / f"{folder.name}_timeline.png").is_file()
    emotion = record["emotion"]
    assert emotion["answer"] in ("win", "lose") and 0 <= emotion["p_win"] <= 1
    assert emotion["clips"] == len(emotion["clip_frames"]) >= 1
    assert f"{folder.name}: emotion: {emotion['answer']}" in out
    page = (pred.parent / f"{folder.name}_report.html").read_text()
    assert f"emotion: <b>{emotion['answer']}</b>" in page and "report.html" in out


# -- which python is probed, and the message (mutation testing: scripts/mutation.py) --------------
def _fake_python(path: Path, ok: bool) -> Path:
    """A stand-in python: records its arguments, then imports mediapipe (``ok``) or fails as a
    python without it does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fail = ("echo 'Traceback (most recent call last):' >&2\necho '  File x' >&2\n"
            "echo \"ModuleNotFoundError: No module named 'mediapipe'\" >&2\nexit 1\n")  # fmt: skip
    path.write_text(f'#!/bin/sh\necho "$@" > "{path}.args"\n' + ("exit 0\n" if ok else fail))
    path.chmod(0o755)
    return path


MISSING = (
    "pose extraction needs its own environment with MediaPipe (mediapipe pins protobuf<5, wandb "
    "needs >=5). Create it with `make pose-env` in the migalab checkout, or point "
    "MIGALAB_POSE_PYTHON (or --pose-python) at a python with mediapipe 0.10.14-0.10.21. Tried: "
)


def test_find_pose_python_order_and_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migalab.pose as pose

    good, bad = _fake_python(tmp_path / "good", True), _fake_python(tmp_path / "bad", False)
    checkout = _fake_python(tmp_path / "co" / "python", True)
    monkeypatch.setattr(pose, "checkout_pose_python", lambda: checkout)
    monkeypatch.delenv("MIGALAB_POSE_PYTHON", raising=False)
    assert find_pose_python(good) == good
    assert Path(f"{good}.args").read_text() == "-c import mediapipe, cv2\n"
    assert find_pose_python() == checkout  # nothing given: the checkout's
    monkeypatch.setenv("MIGALAB_POSE_PYTHON", str(good))
    assert find_pose_python() == good  # the variable
    with pytest.raises(PoseEnvMissing) as err:  # explicit wins, even over a working variable
        find_pose_python(bad)
    assert str(err.value) == MISSING + (
        f"{bad} (cannot import mediapipe: [\"ModuleNotFoundError: No module named 'mediapipe'\"])"
    )
    with pytest.raises(PoseEnvMissing) as err:
        find_pose_python(tmp_path / "none")
    assert str(err.value) == MISSING + str(tmp_path / "none")
    monkeypatch.delenv("MIGALAB_POSE_PYTHON")
    monkeypatch.setattr(pose, "checkout_pose_python", lambda: None)  # an installed wheel
    with pytest.raises(PoseEnvMissing) as err:
        find_pose_python()
    assert str(err.value) == MISSING + "nothing"


def test_checkout_pose_python_needs_both_markers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import migalab.pose as pose
    import migalab.utils.paths as paths

    root = tmp_path / "checkout"
    module = root / "src" / "migalab" / "utils" / "paths.py"  # where the checkout is found from
    module.parent.mkdir(parents=True)
    monkeypatch.setattr(paths, "__file__", str(module))
    assert pose.checkout_pose_python() is None  # neither marker
    (root / "pyproject.toml").write_text("")
    (root / "src" / "conf").mkdir()
    (root / "src" / "conf" / "train.yaml").write_text("")  # a marker each, never both
    (root / "src" / "migalab" / "pyproject.toml").write_text("")
    assert pose.checkout_pose_python() is None
    (root / "conf").mkdir()
    (root / "conf" / "train.yaml").write_text("")
    assert pose.checkout_pose_python() == root.resolve() / ".pose-env" / "bin" / "python"
