"""The per-frame pose plausibility gate of online recognition, at each of its thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from migalab.pose_gate import PoseGate, plausible_person


def _person(frames: int = 6, width: float = 100.0, conf: float = 0.9) -> np.ndarray:
    """(T, 137, 3): a seated person in a 720 x 1280 frame, shoulders ``width`` px apart."""
    table = np.zeros((frames, 137, 3), np.float32)
    table[:, 1] = (640, 300, conf)  # neck
    table[:, 2] = (640 - width / 2, 300, conf)  # right shoulder
    table[:, 5] = (640 + width / 2, 300, conf)  # left shoulder
    table[:, 0] = (640, 220, conf)  # nose
    return table


SHAPE = (720, 1280)


def test_a_seated_person_passes_and_the_gate_can_be_off() -> None:
    assert plausible_person(_person(), SHAPE, PoseGate()).all()
    empty = np.zeros((6, 137, 3), np.float32)
    assert not plausible_person(empty, SHAPE, PoseGate()).any()
    assert plausible_person(empty, SHAPE, PoseGate(enabled=False)).all()


def test_confidence_at_the_threshold_counts() -> None:
    gate = PoseGate(min_confidence=0.3)
    assert plausible_person(_person(conf=0.3), SHAPE, gate).all()
    assert not plausible_person(_person(conf=0.2999), SHAPE, gate).any()


@pytest.mark.parametrize("missing", [1, 2, 5])
def test_neck_and_both_shoulders_are_needed(missing: int) -> None:
    table = _person()
    table[:, missing, 2] = 0.0
    assert not plausible_person(table, SHAPE, PoseGate()).any()


def test_the_face_is_the_nose_or_an_eye() -> None:
    table = _person()
    table[:, 0, 2] = 0.0
    assert not plausible_person(table, SHAPE, PoseGate()).any()
    for eye in (15, 16):
        one = table.copy()
        one[:, eye] = (630, 210, 0.9)
        assert plausible_person(one, SHAPE, PoseGate()).all()


def test_body_size_at_the_threshold() -> None:
    gate = PoseGate(min_shoulder_width=0.05)  # 0.05 x 720 = 36 px
    assert plausible_person(_person(width=36.0), SHAPE, gate).all()
    assert not plausible_person(_person(width=35.9), SHAPE, gate).any()


def test_a_jump_between_frames_fails_the_later_frame_only() -> None:
    table = _person(frames=5, width=100.0)
    table[2:, [0, 1, 2, 5], 0] += 100.0  # frame 2 moves one shoulder width: allowed
    gate = PoseGate(max_jump=1.0, min_run=1)
    assert plausible_person(table, SHAPE, gate).all()
    table[3:, [0, 1, 2, 5], 0] += 100.01  # frame 3 moves just over one width: it fails
    assert plausible_person(table, SHAPE, gate).tolist() == [True, True, True, False, True]


def test_flicker_between_two_places_fails_every_frame() -> None:
    table = _person(frames=8, width=100.0)
    table[1::2, [0, 1, 2, 5], 0] += 300.0  # a detector jumping between two "people"
    assert plausible_person(table, SHAPE, PoseGate(min_run=5)).tolist() == [True] + [False] * 7


def test_dropouts_shorter_than_min_run_pass() -> None:
    table = _person(frames=12)
    table[2:6, 2, 2] = 0.0  # a shoulder lost for 4 frames: a dropout at min_run 5
    table[7:12, 2, 2] = 0.0  # lost for 5 frames: no person
    ok = plausible_person(table, SHAPE, PoseGate(min_run=5))
    assert ok.tolist() == [True] * 7 + [False] * 5


def test_settings_are_checked() -> None:
    assert PoseGate.from_config(None) == PoseGate()
    assert PoseGate.from_config({"max_jump": 2.0}).max_jump == 2.0
    with pytest.raises(ValueError, match="online.pose_gate takes"):
        PoseGate.from_config({"min_conf": 0.1})
    for bad in ({"min_confidence": -0.01}, {"min_confidence": 1.01},
                {"min_shoulder_width": -0.01}, {"max_jump": 0.0}, {"min_run": 0},
                {"min_run": 2.5}, {"min_run": True}):  # fmt: skip
        with pytest.raises(ValueError, match="pose_gate"):
            PoseGate.from_config(bad)
    assert PoseGate(min_confidence=0.0).min_confidence == 0.0
    assert PoseGate(min_confidence=1.0, min_shoulder_width=0.0).min_shoulder_width == 0.0
    assert PoseGate(min_run=1).min_run == 1
    with pytest.raises(ValueError, match="expected a"):
        plausible_person(np.zeros((2, 10, 3)), SHAPE, PoseGate())
