"""Every class can be generated and moves the keypoints the gestures docstring says.

Each check compares a statistic of the keypoints during a clip (the middle of its hold, or its
extreme for oscillating classes) with the idle frames just before it, in units of the subject's
shoulder width (sw). Noise and random dropouts are off; occlusions stay on.
"""

from __future__ import annotations

import numpy as np
import pytest

from migalab.synthetic import CLASS_NAMES, SynthConfig, VideoSpec, generate_video
from migalab.synthetic.gestures import MOTIONS, check_registry

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # all-NaN slices of hidden points

L_HAND, R_HAND = 95, 116
TIPS = np.array([4, 8, 12, 16, 20])


def _run(seed: int, subject: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    cfg = SynthConfig(
        seed=seed,
        clip_classes=tuple(range(32)),
        clip_frames=(40, 60),
        gap_frames=(25, 35),
        noise=0.0,
        dropout=0.0,
    )
    res = generate_video(VideoSpec("0007", "train", subject, seed % 2), cfg)
    kp = res.table.reshape(-1, 137, 3).copy()
    kp[kp[..., 2] == 0] = np.nan
    return kp, res.clips


class Clip:
    """Keypoints of one clip (hold / whole) and of the idle frames before it."""

    def __init__(self, kp: np.ndarray, start: int, end: int, idle_from: int):
        n = end - start + 1
        self.hold = kp[start + int(0.35 * n) : start + int(0.65 * n) + 1]
        self.whole = kp[start : end + 1]
        self.idle = kp[idle_from:start]
        self.sw = np.nanmedian(np.linalg.norm(self.idle[:, 2, :2] - self.idle[:, 5, :2], axis=-1))

    def med(self, f) -> tuple[float, float]:
        """nanmedian of a per-frame statistic over (hold, idle), in sw units."""
        return float(np.nanmedian(f(self.hold))) / self.sw, float(
            np.nanmedian(f(self.idle))
        ) / self.sw


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a[..., :2] - b[..., :2], axis=-1)


def tips_to(points: list[int], hands=(L_HAND, R_HAND)):
    """Per frame: smallest distance of any fingertip (of ``hands``) to any of ``points``."""

    def f(k: np.ndarray) -> np.ndarray:
        tips = np.concatenate([k[:, h + TIPS] for h in hands], 1)
        d = _dist(tips[:, :, None], k[:, None, points])
        return np.nanmin(d.reshape(len(k), -1), axis=1)

    return f


def each_hand_to(points: list[int]):
    """Per frame: the larger over the two hands of (closest fingertip to ``points``)."""

    def f(k: np.ndarray) -> np.ndarray:
        return np.fmax(tips_to(points, (L_HAND,))(k), tips_to(points, (R_HAND,))(k))

    return f


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b[..., :2] - a[..., :2]
    u = np.clip(np.sum((p[..., :2] - a[..., :2]) * ab, -1) / np.sum(ab * ab, -1), 0, 1)
    return np.linalg.norm(p[..., :2] - (a[..., :2] + u[..., None] * ab), axis=-1)


def hand_on_other_arm(k: np.ndarray) -> np.ndarray:
    """min over hands of the distance from its palm / fingertips to the other arm's segments."""
    out = []
    for hand, (sh, el, wr) in ((R_HAND, (5, 6, 7)), (L_HAND, (2, 3, 4))):
        pts = k[:, hand + np.array([9, 8, 12])]
        d = np.fmin(
            _seg_dist(pts, k[:, None, sh], k[:, None, el]),
            _seg_dist(pts, k[:, None, el], k[:, None, wr]),
        )
        out.append(np.nanmin(d, axis=1))
    return np.fmin(*out)


def shoulder_y(k: np.ndarray) -> np.ndarray:
    return (k[:, 2, 1] + k[:, 5, 1]) / 2


def wrist_speed(k: np.ndarray) -> np.ndarray:
    """Per frame: the faster wrist's displacement (px / frame)."""
    return np.nanmax(np.linalg.norm(np.diff(k[:, [4, 7], :2], axis=0), axis=-1), 1)


def tips_crossed(k: np.ndarray) -> np.ndarray:
    """Mean x of the right hand's fingertips minus the left hand's (> 0: crossed)."""
    return np.nanmean(k[:, R_HAND + TIPS, 0], 1) - np.nanmean(k[:, L_HAND + TIPS, 0], 1)


def check(cls: int, c: Clip) -> bool | None:
    """True / False: the class's signal is (not) there; None: not testable in this video."""
    head = [0, 15, 16, 17, 18]
    if cls == 0:  # head sinks toward the shoulders
        h, i = c.med(lambda k: shoulder_y(k) - k[:, 0, 1])
        return h < i - 0.03
    if cls == 1:  # shoulders rise (extreme over the clip, one or two breaths)
        i = np.nanmedian(shoulder_y(c.idle))
        return (i - np.nanmin(shoulder_y(c.whole))) / c.sw > 0.03
    if cls == 2:  # fingertips above the eyebrows
        h, i = c.med(
            lambda k: (
                np.fmin(np.nanmin(k[:, L_HAND + TIPS, 1], 1), np.nanmin(k[:, R_HAND + TIPS, 1], 1))
                - np.nanmean(k[:, 42:52, 1], 1)
            )
        )  # noqa: E501
        return h < 0 < i
    if cls in (3, 7):  # fingertips on the face
        h, i = c.med(tips_to(head))
        return h < 0.25 < i
    if cls == 4:  # fingertips at the forehead: near and above the eyes
        h, i = c.med(tips_to([15, 16]))
        return h < 0.25 < i
    if cls == 5:  # both hands on the face
        h, i = c.med(each_hand_to(head))
        return h < 0.25 < i
    if cls == 6:  # fingertips at an eye
        h, i = c.med(tips_to([15, 16]))
        return h < 0.15 < i
    if cls == 8:  # fingertips at an ear
        h, i = c.med(tips_to([15, 16, 17, 18]))
        return h < 0.22 < i
    if cls == 9:  # fingertips at the mouth (just below the nose)
        h, i = c.med(tips_to([0]))
        return h < 0.2 < i
    if cls == 10:  # fingertips under the chin
        h, i = c.med(tips_to([0]))
        below = np.nanmedian(np.nanmax(c.hold[:, [L_HAND + 8, R_HAND + 8], 1], 1) - c.hold[:, 0, 1])
        return h < 0.35 < i and below > 0
    if cls == 11:  # a wrist comes up to the neck
        h, i = c.med(lambda k: np.fmin(_dist(k[:, 4], k[:, 1]), _dist(k[:, 7], k[:, 1])))
        return h < 0.6 and h < i - 0.2
    if cls == 12:  # a wrist above the shoulders
        h, i = c.med(lambda k: np.fmin(k[:, 4, 1], k[:, 7, 1]) - shoulder_y(k))
        return h < 0 < i
    if cls == 13:  # fingertips at the collar (neck joint)
        h, i = c.med(tips_to([1]))
        return h < 0.25 < i
    if cls == 14:  # fingertips on the chest below the neck, near the midline

        def f(k):
            best = []
            for hand in (L_HAND, R_HAND):
                t = k[:, hand + 12]
                ok = (t[:, 1] > k[:, 1, 1]) & (np.abs(t[:, 0] - k[:, 1, 0]) < 0.3 * c.sw)
                best.append(np.where(ok, t[:, 1] - k[:, 1, 1], np.nan))
            return np.fmin(*best)

        h = np.nanmedian(f(c.hold)) / c.sw
        return 0.1 < h < 0.6
    if cls in (15, 18):  # a wrist moves away (behind / over the shoulder), its hand is hidden
        if np.isnan(c.idle[:, [4, 7], 0]).mean() > 0.5:
            return None
        for wrist, hand in ((4, R_HAND), (7, L_HAND)):
            gone = np.isnan(c.hold[:, wrist, 0]).mean() > 0.8
            disp = np.nanmedian(_dist(c.hold[:, wrist], np.nanmedian(c.idle[:, wrist], 0))) / c.sw
            hidden = np.isnan(c.hold[:, hand + np.arange(21), 0]).mean()
            if (gone or disp > 0.2) and hidden > 0.8:
                return True
        return False
    if cls == 16:  # wrists cross the midline
        h = (
            np.nanmedian(c.hold[:, 4, 0] - c.hold[:, 1, 0]),
            np.nanmedian(c.hold[:, 7, 0] - c.hold[:, 1, 0]),
        )
        return h[0] > 0 > h[1]
    if cls == 17:  # a hand on the other arm
        h, i = c.med(hand_on_other_arm)
        return h < 0.15 and h < i - 0.05
    if cls == 21:  # a hand on the other arm, scratching fast
        h, i = c.med(hand_on_other_arm)
        fast = np.nanmean(wrist_speed(c.hold)) > 1.5 * np.nanmean(wrist_speed(c.idle))
        return h < 0.15 and (fast or h < i - 0.1)
    if cls == 19:  # the neck moves
        ref = np.nanmedian(c.idle[:, 1], 0)
        return np.nanmax(_dist(c.whole[:, 1], ref)) / c.sw > 0.04
    if cls == 20:  # the neck rises
        h, i = c.med(lambda k: k[:, 1, 1])
        return h < i - 0.02
    if cls == 22:  # palms together and rubbing (relative oscillation)
        h, _ = c.med(lambda k: _dist(k[:, L_HAND + 9], k[:, R_HAND + 9]))
        rel = c.whole[:, 4, :2] - c.whole[:, 7, :2]
        osc = np.nanstd(np.diff(rel, axis=0)) / c.sw
        rel_i = c.idle[:, 4, :2] - c.idle[:, 7, :2]
        return h < 0.2 and osc > 2 * np.nanstd(np.diff(rel_i, axis=0)) / c.sw
    if cls == 23:  # fingers crossed: the right hand's fingertips past the left hand's
        h, _ = c.med(tips_crossed)
        wr, _ = c.med(lambda k: _dist(k[:, 4], k[:, 7]))
        return h > 0.05 and 0.2 < wr < 0.5
    if cls == 24:  # middle fingertips touch, wrists apart
        h, _ = c.med(lambda k: _dist(k[:, L_HAND + 12], k[:, R_HAND + 12]))
        wr, _ = c.med(lambda k: _dist(k[:, 4], k[:, 7]))
        return h < 0.1 and wr > 0.2
    if cls == 25:  # fingers move relative to the wrist

        def energy(k):
            rel = np.concatenate(
                [k[:, h + TIPS, :2] - k[:, h : h + 1, :2] for h in (L_HAND, R_HAND)], 1
            )
            return np.nanmax(np.linalg.norm(np.diff(rel, axis=0), axis=-1), axis=1)

        idle = np.nanmean(energy(c.idle))
        if np.isnan(idle):  # hands hidden (lap) before the clip
            return None
        return np.nanmean(energy(c.hold)) > 2 * idle
    if cls == 26:  # both wrists go down / hidden under the table
        if np.isnan(c.idle[:, L_HAND:, 0]).mean() > 0.5:
            return None  # hands already in the lap: nothing to withdraw
        hidden = min(np.isnan(c.hold[:, h + np.arange(21), 0]).mean() for h in (L_HAND, R_HAND))
        return hidden > 0.8
    if cls == 27:  # nose up relative to the neck
        h, i = c.med(lambda k: k[:, 1, 1] - k[:, 0, 1])
        return h > i + 0.02
    if cls == 28:  # lower lip (face 57) closer to the upper lip (face 51)
        h, i = c.med(lambda k: k[:, 25 + 57, 1] - k[:, 25 + 51, 1])
        return h < i - 0.005
    if cls == 29:  # elbows far apart
        h, i = c.med(lambda k: _dist(k[:, 3], k[:, 6]))
        return h > i + 0.15
    if cls == 30:  # a shoulder rises quickly
        rise = max(
            (np.nanmedian(c.idle[:, j, 1]) - np.nanmin(c.whole[:, j, 1])) / c.sw for j in (2, 5)
        )
        return rise > 0.04
    if cls == 31:  # a wrist travels
        disp = max(
            np.nanmax(_dist(c.whole[:, j], np.nanmedian(c.idle[:, j], 0))) / c.sw for j in (4, 7)
        )
        return disp > 0.15
    raise AssertionError(cls)


def test_registry_covers_all_classes():
    check_registry()
    assert set(MOTIONS) == set(range(32))


@pytest.mark.parametrize("seed,subject", [(0, 0), (1, 4), (2, 9)])
def test_every_class_is_generated(seed, subject):
    kp, clips = _run(seed, subject)
    assert [c for c, _, _ in clips] == list(range(32))


def test_class_signals():
    """Each class moves its keypoints in at least 2 of 3 videos and never fails outright
    where it is testable."""
    passed = {k: 0 for k in range(32)}
    failed = {k: [] for k in range(32)}
    for seed, subject in ((0, 0), (1, 4), (2, 9)):
        kp, clips = _run(seed, subject)
        prev_end = -1
        for cls, start, end in clips:
            ok = check(cls, Clip(kp, start, end, max(prev_end + 1, start - 20)))
            prev_end = end
            if ok is None:
                continue
            if ok:
                passed[cls] += 1
            else:
                failed[cls].append((seed, subject))
    bad = {CLASS_NAMES[k]: v for k, v in failed.items() if len(v) > 1 or passed[k] == 0}
    assert not bad, f"classes without their signal: {bad}"
    assert sum(len(v) for v in failed.values()) <= 3, failed
