"""The 32 iMiGUE micro-gesture motions, applied to a video's control channels.

Every clip has a random duration, amplitude (log-normal, sd 0.25, times the subject's
expressiveness and ``SynthConfig.amplitude``), speed (0.7-1.4x) and side (the dominant hand
75 % of the time where one hand acts), and is blended into whatever the idle pose is with an
envelope ``w``: ease-in (smoothstep, 15-35 % of the clip), hold (with small oscillations),
ease-out; hands travel on a slight arc. Hand targets are given in the head / torso frame, so a
hand on the chin follows the head. A motion has up to three phases: ``body`` (torso, head, face
channels), ``arms`` (wrist targets, hand frame and shape; may use the posed head and torso) and
``dependent`` (targets on the other, already solved arm: tidy sleeve, scratch arm).

Where the signal is (OpenPose-137 indices; hands: ``H`` = that hand's 21 points, tips
``H4/H8/H12``; face landmark ``f`` = index ``25 + f``). Deliberately close groups are marked
with the same letter: (a) touch face / touch other face part / touch chin / bite nails,
(b) rub hand / cross finger / minaret hand, (c) turtle neck / head up / deep breath,
(d) put arm back / scratch back / withdraw arms, (e) adjust tie / touch chest / touch neck.

=====================  ===============================================  ==========================
class                  motion                                           signal keypoints
=====================  ===============================================  ==========================
0 turtle neck (c)      head drops 2-4 cm and comes forward, shoulders   0, 15-18, face; 2, 5
                       rise 1-2 cm, slight pitch down
1 deep breath (c)      slow rise of neck and shoulders 2-3 cm with      1, 2, 5 (y), 0 slightly
                       chest expansion, one or two breaths
2 touch hat            fingertips to the cap brim / crown, small        H8/H12 above face 17-26;
                       adjusting motion, head dips                      4/7
3 touch face (a)       flat hand on the cheek / temple, head rolls      H vs face 0-16, 36-47;
                       toward it, hand partly hides the face            face confidences
4 touch forehead       fingertips on the forehead, small rubbing,       H8/H12 vs face 17-27
                       head lowers into the hand
5 cover face           both palms over the face, head down, face        both H vs face; face conf
                       landmarks occluded / dropped                     drops
6 rub eyes             fingertips at one or both eyes, fast small       H8 vs 36-47, 15/16;
                       circular rubbing, eyes closed                    37/38/43/44 (lids)
7 touch other face     index tip to the nose, cheek, under-eye,         H8 vs face 27-35 / 1-15;
  part (a)             temple, brow or lip corner, small scratch
8 touch ears           pinch at the earlobe, small tugs                 H4/H8 vs 17/18
9 bite nails (a)       fingertips at the lips, small repeated in-out    H4/H8 vs 48-67; 57/66
                       motion with jaw pulses                           (jaw)
10 touch chin (a)      index / knuckles under the chin, thumb along     H8 vs face 6-10; 4/7
                       the jaw, slow stroking, head rests on it         below the chin
11 touch neck (e)      fingers on the side / back of the neck, rubbing  H vs 1 and face 4-12;
                       or scratching                                    hand partly hidden (nape)
12 play hair           hand at the side / back of the head, twirling    H8 vs 17/18 above; finger
                       (circular fingertip motion, curl changes)        curl oscillation
13 adjust tie (e)      pinch at the collar knot, small tugs, chin up    H4/H8 at 1; 0 up
14 touch chest (e)     palm on the chest centre, still or patting       H12 below 1 on the midline
15 scratch back (d)    over the shoulder or round the side to the back, 3/4 or 6/7 fast oscillation;
                       fast scratching, hand hidden                     H dropped; 2/5
16 fold arm            forearms cross in front of the chest, one hand   4/7 cross the midline;
                       tucked                                           one H dropped
17 tidy sleeve         one hand grips the other forearm and slides      H of one arm vs 6-7 / 3-4
                       along it
18 put arm back (d)    arm goes behind the back / chair, shoulder back  3/4 or 6/7 back and out;
                                                                        H dropped; 2/5 twist
19 move torso          neck and shoulders shift sideways / forward and  1, 2, 5, 0 (translation)
                       back
20 sit straight        torso straightens and rises 2-4 cm, shoulders    1, 2, 5 up; 0 up
                       back
21 scratch arm         claw hand on the other upper arm or forearm,     H vs 2-3 / 5-6 (3-4 / 6-7);
                       fast small oscillation along it                  fast H motion
22 rub hand (b)        palms together in front, rubbing back and forth  both H together; opposite
                                                                        oscillation of 4 and 7
23 cross finger (b)    hands clasped, fingers interlaced, still         H tips interleaved; 4-7
                                                                        close, no oscillation
24 minaret hand (b)    steeple: fingertips of both hands touch, palms   H8/H12 of both hands
                       apart, hands raised                              together, wrists apart
25 play things         fidgeting with an object on the table:           H fingers (fast irregular
                       irregular finger and wrist motion, looks down    curl); 0 pitch
26 withdraw arms (d)   both arms pulled back toward the body / under    4/7 back and down; both H
                       the table                                        dropped
27 head up (c)         head raised (pitch up 0.2-0.4 rad)               0, 15-18, face vertical
                                                                        order (nose vs ears)
28 bite lip            lower lip rolled in and up, jaw closed, lip      face 55-59, 65-67 (lower
                       corners pulled in                                lip) vs 49-53
29 arm akimbo          hands to the hips, elbows out                    3/6 far out; 4/7 low
30 shake shoulder      1-3 quick shrugs (2-4 cm), one or both sides     2/5 (y) fast
31 illustrative        talking gestures: one or both hands move in      4/7 and H: large varied
                       front of the body (beats, sweeps, open palms)    trajectories; jaw
=====================  ===============================================  ==========================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from migalab.synthetic.body import (
    LATERAL,
    BodyPose,
    Subject,
    hand_points,
    normalize,
    shape_arrays,
)
from migalab.synthetic.config import FPS, NUM_CLASSES
from migalab.synthetic.signals import envelope, smooth_noise, smoothstep

#: Typical clip length of each class relative to the middle of ``clip_frames``.
DURATION_FACTOR = np.array(
    [0.9, 1.8, 1.1, 1.3, 1.1, 1.5, 1.3, 0.9, 1.0, 1.4, 1.4, 1.1, 1.3, 1.2, 1.0, 1.2,
     1.6, 1.3, 1.4, 1.0, 1.1, 1.0, 1.2, 1.5, 1.5, 1.5, 1.2, 0.9, 0.8, 1.5, 0.6, 1.2]
)  # fmt: skip

UP = np.array([0.0, -1.0, 0.0])
DOWN = np.array([0.0, 1.0, 0.0])
FWD = np.array([0.0, 0.0, -1.0])  # toward the camera
BACK = np.array([0.0, 0.0, 1.0])
_ARC = normalize(np.array([0.0, -0.4, -1.0]))


@dataclass
class ClipCtx:
    """One clip being applied: its interval, random draws and helpers over the channels."""

    cls: int
    start: int
    end: int  # inclusive
    ctl: dict[str, np.ndarray]
    subject: Subject
    rng: np.random.Generator
    amp: float  # clip amplitude (displacements scale with it)
    speed: float  # oscillation speed factor
    side: str  # acting hand / side ("r" or "l")
    level: float  # how far hands go to their targets (min(1, cfg.amplitude))
    emotion: int
    w: np.ndarray  # (n,) envelope
    pose: BodyPose | None = None
    arms: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    params: dict = field(default_factory=dict)

    @property
    def sl(self) -> slice:
        return slice(self.start, self.end + 1)

    @property
    def n(self) -> int:
        return self.end - self.start + 1

    @property
    def t(self) -> np.ndarray:
        """(n,) clip time in seconds, scaled by the clip's speed."""
        return np.arange(self.n) / FPS * self.speed

    @property
    def other(self) -> str:
        return "l" if self.side == "r" else "r"

    @property
    def lat(self) -> float:
        """Lateral sign of the acting side (-1 right = image left, +1 left)."""
        return LATERAL[self.side]

    # ---- channel edits ---------------------------------------------------------------
    def _w(self, w: np.ndarray | None, ndim: int) -> np.ndarray:
        w = self.w if w is None else w
        return w.reshape((-1,) + (1,) * (ndim - 1))

    def add(self, name: str, delta, w: np.ndarray | None = None, cols=None) -> None:
        """``channel += delta * w`` over the clip (``cols`` selects channel columns)."""
        arr = self.ctl[name][self.sl]
        view = arr if cols is None else arr[:, cols]
        view = view + np.asarray(delta, float) * self._w(w, view.ndim)
        if cols is None:
            self.ctl[name][self.sl] = view
        else:
            arr[:, cols] = view
            self.ctl[name][self.sl] = arr

    def blend(self, name: str, target, w: np.ndarray | None = None, cols=None) -> None:
        """``channel = lerp(channel, target, w)`` over the clip."""
        arr = self.ctl[name][self.sl]
        view = arr if cols is None else arr[:, cols]
        view = view + (np.asarray(target, float) - view) * self._w(w, view.ndim)
        if cols is None:
            self.ctl[name][self.sl] = view
        else:
            arr[:, cols] = view
            self.ctl[name][self.sl] = arr

    def osc(self, freq: float, phase: float | None = None) -> np.ndarray:
        """(n,) sinusoid at ``freq`` Hz (times the clip speed), random phase by default."""
        if phase is None:
            phase = self.rng.uniform(0, 2 * np.pi)
        return np.sin(2 * np.pi * freq * self.t + phase)

    def shaped_envelope(self, ease: tuple[float, float]) -> np.ndarray:
        return envelope(self.n, self.rng, ease)

    # ---- geometry ---------------------------------------------------------------------
    def head(self, local) -> np.ndarray:
        """(n, 3) a head-frame point (or anchor name) over the clip."""
        assert self.pose is not None
        return self.pose.head_point(local)[self.sl]

    def hdir(self, vec) -> np.ndarray:
        """(n, 3) a head-frame direction over the clip."""
        assert self.pose is not None
        return self.pose.head_dir(vec)[self.sl]

    def torso(self, local) -> np.ndarray:
        """(n, 3) a point relative to the neck in the torso frame over the clip."""
        assert self.pose is not None
        return self.pose.torso_point(local)[self.sl]

    def tdir(self, vec) -> np.ndarray:
        assert self.pose is not None
        return self.pose.torso_dir(vec)[self.sl]

    def _bcast(self, v) -> np.ndarray:
        v = np.asarray(v, float)
        return np.broadcast_to(v, (self.n, v.shape[-1])).copy()

    def hand_offset(self, side: str, axis, normal, shape: str, index: int) -> np.ndarray:
        """(n, 3) offset from the wrist to hand point ``index`` for a hand frame and shape."""
        curl, spread = shape_arrays(shape)
        pts = hand_points(
            np.zeros((self.n, 3)),
            self._bcast(axis),
            self._bcast(normal),
            np.broadcast_to(curl, (self.n, 5)),
            np.full(self.n, spread),
            side,
            self.subject.hand_scale,
        )
        return pts[:, index]

    def reach(
        self,
        side: str,
        *,
        axis,
        normal,
        shape: str = "relaxed",
        wrist=None,
        tip=None,
        tip_index: int = 8,
        pole=None,
        arc: float = 4.0,
        w: np.ndarray | None = None,
        hvis: float | None = None,
        avis: float | None = None,
        full: bool = False,
    ) -> np.ndarray:
        """Move a hand to a target (wrist position, or hand point ``tip_index`` at ``tip``).

        The wrist blends from its current (idle) trajectory to the target with the envelope
        (times ``level`` unless ``full``), on an arc of ``arc`` cm up / toward the camera; the
        hand frame, shape, elbow pole and visibilities blend with it. Returns the (n, 3) target.
        """
        w = self.w if w is None else w
        wr = w if full else w * self.level
        axis, normal = self._bcast(axis), self._bcast(normal)
        if tip is not None:
            wrist = np.asarray(tip, float) - self.hand_offset(side, axis, normal, shape, tip_index)
        wrist = self._bcast(wrist)
        s = self.sl
        cur = self.ctl[f"wrist_{side}"][s]
        bump = (4.0 * w * (1.0 - w) * arc)[:, None] * _ARC
        self.ctl[f"wrist_{side}"][s] = cur + (wrist - cur) * wr[:, None] + bump
        for name, target in ((f"axis_{side}", axis), (f"normal_{side}", normal)):
            cur = self.ctl[name][s]
            self.ctl[name][s] = normalize(cur + (target - cur) * wr[:, None])
        curl, spread = shape_arrays(shape)
        self.blend(f"curl_{side}", curl, w=wr)
        self.blend(f"spread_{side}", spread, w=wr)
        if pole is not None:
            self.blend(f"pole_{side}", self._bcast(pole), w=wr)
        if hvis is not None:
            self.blend(f"hvis_{side}", hvis, w=wr)
        if avis is not None:
            self.blend(f"avis_{side}", avis, w=wr)
        return wrist

    def pole(self, side: str, out: float = 0.5, down: float = 0.8, back: float = 0.3):
        """Elbow pole direction for ``side``: outward / downward / backward weights."""
        return normalize(np.array([LATERAL[side] * out, down, back]))


Motion = Callable[[ClipCtx], None]
MOTIONS: dict[int, dict[str, Motion]] = {}


def motion(cls: int, phase: str = "body") -> Callable[[Motion], Motion]:
    """Register ``fn`` as the ``phase`` (body / arms / dependent) of class ``cls``."""

    def deco(fn: Motion) -> Motion:
        MOTIONS.setdefault(cls, {})[phase] = fn
        return fn

    return deco


# =====================================================================================
# Head, neck and torso classes
# =====================================================================================


@motion(0)
def turtle_neck(c: ClipCtx) -> None:
    a = c.amp
    c.add("head_pos", [c.rng.uniform(1.0, 2.5) * a, c.rng.uniform(2.0, 3.5) * a])
    c.add("shrug", [c.rng.uniform(0.8, 1.8) * a] * 2)
    c.add("head_rot", [0.0, c.rng.uniform(0.03, 0.09) * a, 0.0])
    c.add("head_pos", 0.25 * a * c.osc(c.rng.uniform(0.8, 1.5)), cols=1)


@motion(1)
def deep_breath(c: ClipCtx) -> None:
    a = c.amp
    cycles = 2 if c.n > 70 and c.rng.random() < 0.5 else 1
    if cycles == 1:
        w = c.shaped_envelope((0.3, 0.45))
    else:
        x = np.arange(c.n) / (c.n - 1)
        w = 0.5 - 0.5 * np.cos(2 * np.pi * cycles * x)
    c.add("rise", c.rng.uniform(1.8, 3.0) * a, w=w)
    c.add("shrug", [c.rng.uniform(1.5, 2.8) * a] * 2, w=w)
    c.add("chest", c.rng.uniform(1.0, 2.0) * a, w=w)
    c.add("head_rot", [0.0, -0.05 * a, 0.0], w=w)
    c.add("lean", [-0.02 * a, 0.0, 0.0], w=w)
    if c.rng.random() < 0.4:
        c.add("jaw", 0.25 * a, w=w)


@motion(19)
def move_torso(c: ClipCtx) -> None:
    a = c.amp
    mode = c.rng.choice(["forward", "back", "side", "mixed"], p=[0.3, 0.1, 0.4, 0.2])
    d = np.zeros(3)
    shift = np.zeros(3)
    rise = 0.0
    if mode in ("forward", "mixed"):  # lean in over the table, the back rounds and sinks
        d[0] += c.rng.uniform(0.08, 0.15) * a
        rise -= c.rng.uniform(1.0, 2.5) * a
        shift[2] = -c.rng.uniform(1.0, 4.0) * a
    if mode == "back":  # lean back in the chair
        d[0] -= c.rng.uniform(0.06, 0.12) * a
        rise -= c.rng.uniform(0.5, 1.5) * a
        shift[2] = c.rng.uniform(2.0, 5.0) * a
    if mode in ("side", "mixed"):
        sgn = c.rng.choice([-1.0, 1.0])
        d[1] += sgn * c.rng.uniform(0.06, 0.12) * a
        shift[0] = sgn * c.rng.uniform(1.5, 3.5) * a
    d[2] = c.rng.normal(0.0, 0.04) * a
    w = c.w
    if c.rng.random() < 0.35:  # rocking: go and come back twice
        x = np.arange(c.n) / (c.n - 1)
        w = 0.5 - 0.5 * np.cos(4 * np.pi * x)
    c.add("lean", d, w=w)
    c.add("shift", shift, w=w)
    c.add("rise", rise, w=w)
    c.add("head_rot", [0.0, -0.5 * d[0], -0.4 * d[1]], w=w)


@motion(20)
def sit_straight(c: ClipCtx) -> None:
    a = c.amp
    c.blend("lean", -0.03, cols=0)
    c.add("lean", [-c.rng.uniform(0.03, 0.06) * a, 0.0, 0.0])
    c.add("rise", c.rng.uniform(2.5, 4.5) * a)
    c.add("shoulder_fwd", [-c.rng.uniform(0.6, 1.5) * a] * 2)
    c.add("chest", c.rng.uniform(0.5, 1.2) * a)
    c.add("head_rot", [0.0, -0.04 * a, 0.0])


@motion(27)
def head_up(c: ClipCtx) -> None:
    a = c.amp
    c.add("head_rot", [c.rng.normal(0, 0.05), -c.rng.uniform(0.2, 0.4) * a, 0.0])
    c.add("head_pos", [c.rng.uniform(0.0, 1.0) * a, -c.rng.uniform(0.0, 1.0) * a])
    c.add("rise", c.rng.uniform(0.0, 0.8) * a)
    c.add("head_rot", 0.02 * a * c.osc(c.rng.uniform(0.5, 1.0)), cols=1)


@motion(28)
def bite_lip(c: ClipCtx) -> None:
    a = min(c.amp, 1.4)
    w = c.w
    if c.n > 40 and c.rng.random() < 0.4:  # bite, release a little, bite again
        w = w * (0.75 + 0.25 * np.cos(2 * np.pi * np.arange(c.n) / (c.n / 2)))
    c.add("lip_in", c.rng.uniform(0.6, 1.0) * a, w=w)
    c.blend("jaw", 0.0, w=w)
    c.blend("smile", 0.0, w=w)
    c.add("head_rot", [0.0, c.rng.uniform(0.0, 0.05), 0.0], w=w)
    # the rest of the body is not necessarily still: glances, a small nod or posture shift
    if c.rng.random() < 0.5:
        c.add("head_rot", [c.rng.normal(0.0, 0.12), c.rng.normal(0.0, 0.04), 0.0])
    if c.rng.random() < 0.3:
        c.add("lean", [c.rng.normal(0.0, 0.04), c.rng.normal(0.0, 0.03), 0.0])


@motion(30)
def shake_shoulder(c: ClipCtx) -> None:
    a = c.amp
    k = int(c.rng.integers(1, 4))
    sides = c.rng.choice(["both", "r", "l"], p=[0.7, 0.15, 0.15])
    w = np.zeros(c.n)
    width = int(np.clip(c.rng.uniform(7, 14) / c.speed, 5, max(5, c.n)))
    centres = np.linspace(0, c.n, k + 2)[1:-1] + c.rng.normal(0, 2, size=k)
    x = np.arange(c.n)
    for ctr in centres:
        u = np.clip((x - ctr) / width * 2, -1, 1)
        w = np.maximum(w, 0.5 + 0.5 * np.cos(np.pi * u))
    w *= smoothstep(np.minimum(x, c.n - 1 - x) / 2.0)  # zero at the clip ends
    h = c.rng.uniform(2.0, 4.0) * a
    amt = [h if sides in ("both", "r") else 0.3 * h, h if sides in ("both", "l") else 0.3 * h]
    c.add("shrug", amt, w=w)
    c.add("head_pos", [0.0, 0.3 * h], w=w)
    c.add("rise", 0.3 * h, w=w)


# =====================================================================================
# Face and head touching
# =====================================================================================


def _face_normal(c: ClipCtx) -> np.ndarray:
    """Palm facing the face (into the head)."""
    return c.hdir(BACK)


def _face_pole(c: ClipCtx, side: str) -> np.ndarray:
    """Elbow down and forward (in front of the chest) while the hand is at the face."""
    return c.pole(side, out=0.08, down=0.7, back=-0.7)


@motion(2)
def touch_hat_body(c: ClipCtx) -> None:
    c.add("head_rot", [0.0, c.rng.uniform(0.02, 0.08) * c.amp, 0.0])


@motion(2, "arms")
def touch_hat(c: ClipCtx) -> None:
    a = c.amp
    s = c.side
    where = "hat_brim" if c.rng.random() < 0.6 else "head_top"
    tip = c.head(where) + c.hdir([c.lat * c.rng.uniform(0.0, 2.5), 0.0, 0.0])
    osc = c.osc(c.rng.uniform(0.8, 1.6))
    tip = tip + (0.7 * a * osc * c.w)[:, None] * c.hdir(BACK)
    axis = normalize(c.hdir([-c.lat * 0.25, -0.6, 0.75]))
    normal = c.hdir([0.0, 0.9, 0.4])
    shape = c.rng.choice(["grip", "pinch"])
    c.reach(
        s,
        tip=tip,
        tip_index=12,
        axis=axis,
        normal=normal,
        shape=shape,
        pole=c.pole(s, out=0.8, down=0.55, back=0.0),
        arc=6.0,
    )


@motion(3)
def touch_face_body(c: ClipCtx) -> None:
    c.params["roll"] = c.lat * c.rng.uniform(0.04, 0.14) * c.amp
    c.add("head_rot", [0.0, c.rng.uniform(0.0, 0.06), c.params["roll"]])


@motion(3, "arms")
def touch_face(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    tip = c.head((lat * c.rng.uniform(4.5, 6.0), c.rng.uniform(-1.5, 1.5), c.rng.uniform(0.0, 1.5)))
    tip = tip + (0.3 * c.amp * c.osc(c.rng.uniform(0.3, 0.8)) * c.w)[:, None] * c.hdir(UP)
    axis = normalize(c.hdir([-lat * 0.15, -1.0, 0.15]))
    normal = normalize(c.hdir([-lat * 0.8, 0.0, 0.6]))
    c.reach(s, tip=tip, tip_index=12, axis=axis, normal=normal,
            shape=c.rng.choice(["flat", "relaxed"]), pole=_face_pole(c, s), arc=4.0)  # fmt: skip


@motion(4)
def touch_forehead_body(c: ClipCtx) -> None:
    c.add("head_rot", [0.0, c.rng.uniform(0.04, 0.12) * c.amp, 0.0])


@motion(4, "arms")
def touch_forehead(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    tip = c.head((lat * c.rng.uniform(-1.5, 2.0), -3.6, -0.6))
    if c.rng.random() < 0.5:
        tip = tip + (0.6 * c.amp * c.osc(c.rng.uniform(1.0, 2.0)) * c.w)[:, None] * c.hdir(
            [1.0, 0.0, 0.0]
        )
    axis = normalize(c.hdir([-lat * 0.6, -0.75, 0.2]))
    c.reach(
        s,
        tip=tip,
        tip_index=c.rng.choice([8, 12]),
        axis=axis,
        normal=_face_normal(c),
        shape=c.rng.choice(["flat", "relaxed"]),
        pole=_face_pole(c, s),
    )


@motion(5)
def cover_face_body(c: ClipCtx) -> None:
    c.add("head_rot", [0.0, c.rng.uniform(0.1, 0.25) * c.amp, 0.0])
    c.add("head_pos", [0.0, 1.0 * c.amp])
    c.blend("face_vis", 0.55)
    c.add("lean", [0.04 * c.amp, 0.0, 0.0])


@motion(5, "arms")
def cover_face(c: ClipCtx) -> None:
    for s in ("r", "l"):
        lat = LATERAL[s]
        tip = c.head((lat * c.rng.uniform(1.0, 2.5), c.rng.uniform(-3.0, -1.0), -1.2))
        axis = normalize(c.hdir([-lat * 0.15, -1.0, 0.05]))
        c.reach(
            s,
            tip=tip,
            tip_index=12,
            axis=axis,
            normal=_face_normal(c),
            shape="flat",
            pole=_face_pole(c, s),
        )


@motion(6)
def rub_eyes_body(c: ClipCtx) -> None:
    c.params["both"] = c.rng.random() < 0.3
    c.add("head_rot", [0.0, c.rng.uniform(0.04, 0.12) * c.amp, 0.0])
    c.blend("blink", [0.85, 0.85])


@motion(6, "arms")
def rub_eyes(c: ClipCtx) -> None:
    sides = ("r", "l") if c.params.get("both") else (c.side,)
    for s in sides:
        lat = LATERAL[s]
        eye = (
            f"{s}_eye"
            if len(sides) == 2 or c.rng.random() < 0.8
            else f"{'l' if s == 'r' else 'r'}_eye"
        )
        f = c.rng.uniform(2.0, 4.0)
        ph = c.rng.uniform(0, 2 * np.pi)
        r = c.rng.uniform(0.4, 0.8) * c.amp
        ang = 2 * np.pi * f * c.t + ph
        circ = np.cos(ang)[:, None] * c.hdir([1.0, 0.0, 0.0]) + np.sin(ang)[:, None] * c.hdir(UP)
        tip = c.head(eye) + c.hdir([0.0, 0.0, -0.5]) + r * c.w[:, None] * circ
        axis = normalize(c.hdir([-lat * 0.3, -0.9, 0.2]))
        c.reach(
            s,
            tip=tip,
            tip_index=8,
            axis=axis,
            normal=_face_normal(c),
            shape=c.rng.choice(["pinch", "relaxed", "fist"]),
            pole=_face_pole(c, s),
        )


_OTHER_FACE_TARGETS = (
    (0.9, 3.2, -1.6),  # side of the nose
    (0.0, 3.8, -2.3),  # nose tip
    (2.8, 2.6, 0.0),  # under the eye
    (4.0, 4.5, 0.2),  # cheek
    (5.8, -1.0, 2.2),  # temple
    (3.0, -1.9, -0.1),  # eyebrow
    (2.6, 7.2, 0.3),  # lip corner
    (5.3, 7.0, 2.0),  # jaw line
)


@motion(7, "arms")
def touch_other_face_part(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    x, y, z = _OTHER_FACE_TARGETS[int(c.rng.integers(len(_OTHER_FACE_TARGETS)))]
    if x and c.rng.random() < 0.25:
        x = -x  # the other side of the face
    tip = c.head((lat * x, y, z - 0.3))
    tip = tip + (0.3 * c.amp * c.osc(c.rng.uniform(1.5, 3.0)) * c.w)[:, None] * c.hdir(UP)
    axis = normalize(c.hdir([-lat * 0.35, -0.85, 0.35]))
    c.reach(
        s,
        tip=tip,
        tip_index=8,
        axis=axis,
        normal=_face_normal(c),
        shape=c.rng.choice(["point", "pinch", "relaxed"]),
        pole=_face_pole(c, s),
    )


@motion(8, "arms")
def touch_ears(c: ClipCtx) -> None:
    s = c.side
    ear = s if c.rng.random() < 0.85 else c.other
    lat = LATERAL[ear]
    tip = c.head((lat * 7.4, c.rng.uniform(2.5, 4.2), 6.5))
    tip = tip + (0.4 * c.amp * c.osc(c.rng.uniform(1.2, 2.5)) * c.w)[:, None] * c.hdir(DOWN)
    axis = normalize(c.hdir([0.0, -1.0, 0.3]))
    normal = normalize(c.hdir([-lat, 0.0, 0.3]))
    c.reach(
        s,
        tip=tip,
        tip_index=c.rng.choice([4, 8]),
        axis=axis,
        normal=normal,
        shape="pinch",
        pole=c.pole(s, out=0.8, down=0.6, back=0.0),
    )


@motion(9)
def bite_nails_body(c: ClipCtx) -> None:
    f = c.rng.uniform(1.8, 3.2)
    c.params["f"], c.params["ph"] = f, c.rng.uniform(0, 2 * np.pi)
    pulses = np.maximum(0.0, np.sin(2 * np.pi * f * c.t + c.params["ph"]))
    c.add("jaw", 0.1 + 0.25 * c.amp * pulses)
    c.add("head_rot", [0.0, c.rng.uniform(0.03, 0.1), 0.0])


@motion(9, "arms")
def bite_nails(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    tip = c.head((lat * c.rng.uniform(-0.5, 1.0), 7.4, -1.4))
    inout = np.sin(2 * np.pi * c.params["f"] * c.t + c.params["ph"])
    tip = tip + (0.35 * c.amp * inout * c.w)[:, None] * c.hdir(BACK)
    axis = normalize(c.hdir([-lat * 0.45, -0.8, 0.4]))
    normal = normalize(c.hdir([-lat * 0.3, -0.3, 0.9]))
    c.reach(
        s,
        tip=tip,
        tip_index=c.rng.choice([4, 8]),
        axis=axis,
        normal=normal,
        shape=c.rng.choice(["pinch", "fist", "claw"]),
        pole=_face_pole(c, s),
    )


@motion(10)
def touch_chin_body(c: ClipCtx) -> None:
    c.add("head_rot", [0.0, c.rng.uniform(0.0, 0.07), c.rng.normal(0, 0.03)])


@motion(10, "arms")
def touch_chin(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    tip = c.head((lat * c.rng.uniform(-0.5, 2.5), 11.6, c.rng.uniform(-0.8, 0.6)))
    stroke = 0.7 * c.amp * c.osc(c.rng.uniform(0.4, 0.9))
    tip = tip + (stroke * c.w)[:, None] * c.hdir([lat * 0.6, 0.8, 0.0])
    axis = normalize(c.hdir([-lat * 0.55, -0.75, 0.35]))
    normal = normalize(c.hdir([-lat * 0.4, -0.5, 0.75]))
    c.reach(
        s,
        tip=tip,
        tip_index=8,
        axis=axis,
        normal=normal,
        shape=c.rng.choice(["relaxed", "fist", "pinch"]),
        pole=_face_pole(c, s),
    )


@motion(11, "arms")
def touch_neck(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    u = c.rng.random()
    if u < 0.55:
        tip = c.head(f"{s}_neck_side")
        normal = normalize(c.hdir([-lat, 0.0, 0.4]))
    elif u < 0.8:
        tip = c.head("nape") + c.hdir([lat * 2.0, 0.0, 0.0])
        normal = c.hdir(FWD)
    else:
        tip = c.torso((lat * 1.0, -5.0, -6.0))
        normal = c.hdir(BACK)
    f = c.rng.uniform(1.5, 4.0)
    tip = tip + (0.6 * c.amp * c.osc(f) * c.w)[:, None] * c.hdir(UP)
    axis = normalize(c.hdir([-lat * 0.4, -0.8, 0.45]))
    c.reach(
        s,
        tip=tip,
        tip_index=12,
        axis=axis,
        normal=normal,
        shape=c.rng.choice(["claw", "flat", "relaxed"]),
        pole=c.pole(s, out=0.8, down=0.6, back=0.1),
    )


@motion(12)
def play_hair_body(c: ClipCtx) -> None:
    c.add("head_rot", [0.0, 0.0, c.lat * c.rng.uniform(0.02, 0.08)])


@motion(12, "arms")
def play_hair(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    if c.rng.random() < 0.7:
        base = c.head((lat * 7.6, c.rng.uniform(-5.0, -1.0), c.rng.uniform(4.0, 8.0)))
    else:
        base = c.head((lat * 4.0, -6.5, 9.5))
    f = c.rng.uniform(1.0, 2.2)
    r = c.rng.uniform(0.7, 1.4) * c.amp
    ph = c.rng.uniform(0, 2 * np.pi)
    circ = np.cos(2 * np.pi * f * c.t + ph)[:, None] * c.hdir(UP) + np.sin(
        2 * np.pi * f * c.t + ph
    )[:, None] * c.hdir(BACK)
    tip = base + r * c.w[:, None] * circ
    axis = normalize(c.hdir([0.0, -0.8, 0.6]))
    normal = normalize(c.hdir([-lat, 0.0, 0.2]))
    c.reach(
        s,
        tip=tip,
        tip_index=8,
        axis=axis,
        normal=normal,
        shape="pinch",
        pole=c.pole(s, out=0.9, down=0.3, back=0.1),
        arc=6.0,
    )
    twirl = 0.25 * np.sin(2 * np.pi * f * c.t + ph + 1.0)
    c.add(f"curl_{s}", twirl[:, None] * np.array([0.6, 1.0, 0.8, 0.5, 0.3]))


# =====================================================================================
# Chest, neck front, back
# =====================================================================================


@motion(13)
def adjust_tie_body(c: ClipCtx) -> None:
    c.params["both"] = c.rng.random() < 0.35
    c.add("head_rot", [0.0, -c.rng.uniform(0.05, 0.15) * c.amp, 0.0])


@motion(13, "arms")
def adjust_tie(c: ClipCtx) -> None:
    sides = ("r", "l") if c.params.get("both") else (c.side,)
    f = c.rng.uniform(1.0, 2.2)
    tug = 0.8 * c.amp * c.osc(f)
    wig = 0.5 * c.amp * c.osc(f * 0.5)
    for s in sides:
        lat = LATERAL[s]
        dx = lat * 1.2 if len(sides) == 2 else c.rng.uniform(-1.0, 1.0)
        tip = c.torso((dx, c.rng.uniform(-1.0, 2.5), -8.5))
        tip = tip + (tug * c.w)[:, None] * c.tdir(DOWN) + (wig * c.w)[:, None] * c.tdir([1, 0, 0])
        axis = normalize(c.tdir([-lat * 0.5, -0.8, 0.2]))
        normal = c.tdir(BACK)
        c.reach(
            s,
            tip=tip,
            tip_index=c.rng.choice([4, 8]),
            axis=axis,
            normal=normal,
            shape="pinch",
            pole=c.pole(s, out=0.4, down=0.9, back=0.0),
        )


@motion(14, "arms")
def touch_chest(c: ClipCtx) -> None:
    sides = ("r", "l") if c.rng.random() < 0.2 else (c.side,)
    pat = c.rng.random() < 0.4
    for s in sides:
        lat = LATERAL[s]
        tip = c.torso((-lat * c.rng.uniform(-1.0, 4.0), c.rng.uniform(9.0, 16.0), -10.0))
        if pat:
            tap = np.maximum(0.0, c.osc(c.rng.uniform(1.5, 2.5)))
            tip = tip + (1.0 * c.amp * tap * c.w)[:, None] * c.tdir(FWD)
        axis = normalize(c.tdir([-lat * 0.55, -0.8, 0.1]))
        c.reach(
            s,
            tip=tip,
            tip_index=12,
            axis=axis,
            normal=c.tdir(BACK),
            shape="flat",
            pole=c.pole(s, out=0.45, down=0.9, back=0.05),
        )


@motion(15)
def scratch_back_body(c: ClipCtx) -> None:
    c.params["over"] = c.rng.random() < 0.55
    i = 0 if c.side == "r" else 1
    if c.params["over"]:
        c.add("shrug", 1.2 * c.amp, cols=i)
    else:
        c.add("shoulder_fwd", -1.5 * c.amp, cols=i)
        c.add("lean", [0.0, 0.0, c.lat * 0.05 * c.amp])


@motion(15, "arms")
def scratch_back(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    sw = c.subject.shoulder_width
    f = c.rng.uniform(3.0, 5.0)
    scr = 1.2 * c.amp * c.osc(f) * c.w
    if c.params["over"]:
        wrist = c.torso((-lat * c.rng.uniform(0.0, 6.0), c.rng.uniform(-4.0, 2.0), 9.0))
        wrist = wrist + scr[:, None] * c.tdir(DOWN)
        c.reach(
            s,
            wrist=wrist,
            axis=c.tdir(DOWN),
            normal=c.tdir(FWD),
            shape="claw",
            pole=c.pole(s, out=0.5, down=-0.8, back=-0.1),
            hvis=0.0,
            avis=0.6,
            arc=8.0,
        )
    else:
        wrist = c.torso((lat * (sw / 2 + 2.0), c.rng.uniform(24.0, 34.0), 12.0))
        wrist = wrist + scr[:, None] * c.tdir(UP)
        c.reach(
            s,
            wrist=wrist,
            axis=c.tdir([-lat, 0.2, 0.0]),
            normal=c.tdir(BACK),
            shape="claw",
            pole=c.pole(s, out=0.8, down=0.2, back=0.6),
            hvis=0.0,
            avis=0.5,
        )


@motion(18)
def put_arm_back_body(c: ClipCtx) -> None:
    i = 0 if c.side == "r" else 1
    c.add("shoulder_fwd", -c.rng.uniform(1.0, 2.5) * c.amp, cols=i)
    c.add("lean", [-0.02 * c.amp, 0.0, c.lat * c.rng.uniform(0.03, 0.07) * c.amp])


@motion(18, "arms")
def put_arm_back(c: ClipCtx) -> None:
    s, lat = c.side, c.lat
    sw = c.subject.shoulder_width
    wrist = c.torso(
        (
            lat * (sw / 2 + c.rng.uniform(3.0, 8.0)),
            c.rng.uniform(26.0, 36.0),
            c.rng.uniform(14.0, 22.0),
        )
    )
    c.reach(
        s,
        wrist=wrist,
        axis=c.tdir([0.0, 1.0, 0.3]),
        normal=c.tdir([-lat, 0.0, 0.0]),
        shape="relaxed",
        pole=c.pole(s, out=0.6, down=0.4, back=0.7),
        hvis=0.0,
        avis=0.4,
        full=True,
    )


# =====================================================================================
# Arms and hands
# =====================================================================================


@motion(16)
def fold_arm_body(c: ClipCtx) -> None:
    c.params["top"] = c.rng.choice(["r", "l"])
    c.add("lean", [-c.rng.uniform(0.0, 0.05) * c.amp, 0.0, 0.0])
    c.add("shrug", [0.5 * c.amp] * 2)


@motion(16, "arms")
def fold_arm(c: ClipCtx) -> None:
    sw = c.subject.shoulder_width
    top = c.params["top"]
    for s in ("r", "l"):
        lat = LATERAL[s]
        under = s != top
        wrist = c.torso(
            (
                -lat * sw * c.rng.uniform(0.25, 0.38),
                c.rng.uniform(17.0, 23.0),
                -14.0 if under else -17.0,
            )
        )
        axis = c.tdir([-lat, 0.15, 0.35])
        c.reach(
            s,
            wrist=wrist,
            axis=axis,
            normal=c.tdir(BACK),
            shape="grip",
            pole=c.pole(s, out=0.45, down=0.85, back=-0.1),
            hvis=0.15 if under else 1.0,
        )
    c.add(f"wrist_{top}", (0.3 * c.amp * c.osc(0.3))[:, None] * np.array([1.0, 0.0, 0.0]))


@motion(17, "arms")
def tidy_sleeve_hold(c: ClipCtx) -> None:
    o = c.other
    lat_o = LATERAL[o]
    wrist = c.torso((lat_o * c.rng.uniform(4.0, 10.0), c.rng.uniform(22.0, 28.0), -30.0))
    c.reach(
        o,
        wrist=wrist,
        axis=c.tdir([-lat_o * 0.3, 0.1, -1.0]),
        normal=c.tdir(DOWN),
        shape="relaxed",
        pole=c.pole(o, out=0.4, down=0.9, back=0.1),
    )


@motion(17, "dependent")
def tidy_sleeve(c: ClipCtx) -> None:
    assert c.arms is not None
    s, o = c.side, c.other
    elbow, wrist = (a[c.sl] for a in c.arms[o])
    passes = int(c.rng.integers(1, 3))
    x = np.arange(c.n) / max(1, c.n - 1)
    f = 0.45 + 0.35 * (0.5 - 0.5 * np.cos(2 * np.pi * passes * x))
    point = elbow + f[:, None] * (wrist - elbow) + np.array([0.0, -2.5, -3.0])
    axis = normalize(np.array([LATERAL[o], 0.6, 0.1]))
    c.reach(
        s,
        tip=point,
        tip_index=9,
        axis=axis,
        normal=np.array([0.0, 0.8, 0.6]),
        shape="grip",
        pole=c.pole(s, out=0.5, down=0.9, back=0.0),
    )


@motion(21, "dependent")
def scratch_arm(c: ClipCtx) -> None:
    assert c.arms is not None and c.pose is not None
    s, o = c.side, c.other
    i = 0 if o == "r" else 1
    elbow, wrist = (a[c.sl] for a in c.arms[o])
    shoulder = c.pose.shoulders[c.sl, i]
    if c.rng.random() < 0.6:
        a, b = shoulder, elbow
        frac = c.rng.uniform(0.35, 0.75)
        surface = np.array([LATERAL[o] * 1.5, 0.0, -3.5])
    else:
        a, b = elbow, wrist
        frac = c.rng.uniform(0.25, 0.7)
        surface = np.array([0.0, -2.5, -2.0])
    along = normalize(b - a)
    f = c.rng.uniform(3.0, 5.5)
    scr = 1.0 * c.amp * c.osc(f) * c.w
    tip = a + frac * (b - a) + surface + scr[:, None] * along
    axis = normalize(-along * 0.2 + np.array([LATERAL[o], 0.3, 0.0]))
    c.reach(
        s,
        tip=tip,
        tip_index=12,
        axis=axis,
        normal=np.array([0.0, 0.3, 1.0]),
        shape="claw",
        pole=c.pole(s, out=0.5, down=0.9, back=0.0),
    )


def _table_point(c: ClipCtx, dx: float, above: float, dz: float) -> np.ndarray:
    """(n, 3) a point in front of the subject relative to the table top and the neck's x."""
    assert c.pose is not None
    x = c.pose.neck[c.sl, 0] + dx
    y = np.full(c.n, c.subject.table_y - above)
    z = np.full(c.n, -dz)
    return np.stack([x, y, z], -1)


@motion(22, "arms")
def rub_hand(c: ClipCtx) -> None:
    a = c.amp
    centre = _table_point(c, c.rng.uniform(-3, 3), c.rng.uniform(5.0, 11.0), c.rng.uniform(24, 32))
    fwd = normalize(np.array([0.0, -c.rng.uniform(0.3, 0.9), -1.0]))
    f = c.rng.uniform(1.8, 3.2)
    rub = c.rng.uniform(1.0, 2.2) * a * c.osc(f) * c.w
    circular = c.rng.random() < 0.3
    for s in ("r", "l"):
        lat = LATERAL[s]
        sign = 1.0 if s == "r" else -1.0
        wrist = centre + np.array([lat * 1.7, 0.0, 0.0]) - 0.55 * c.subject.hand_scale * 9.0 * fwd
        wrist = wrist + sign * rub[:, None] * fwd
        if circular:
            wrist = wrist + sign * (0.6 * a * c.osc(f, 0.0) * c.w)[:, None] * DOWN
        c.reach(
            s,
            wrist=wrist,
            axis=fwd,
            normal=np.array([-lat, 0.0, 0.0]),
            shape="flat",
            pole=c.pole(s, out=0.35, down=0.9, back=0.1),
        )


@motion(23, "arms")
def cross_finger(c: ClipCtx) -> None:
    centre = _table_point(c, c.rng.uniform(-3, 3), c.rng.uniform(2.0, 8.0), c.rng.uniform(22, 30))
    tilt = c.rng.uniform(0.1, 0.6)
    twiddle = c.rng.random() < 0.3
    for s in ("r", "l"):
        lat = LATERAL[s]
        wrist = centre + np.array([lat * 6.5, 1.0, 1.0])
        axis = normalize(np.array([-lat * 0.8, -tilt, -0.5]))
        normal = normalize(np.array([-lat * 0.45, 0.35, 0.8]))
        c.reach(
            s,
            wrist=wrist,
            axis=axis,
            normal=normal,
            shape="interlace",
            pole=c.pole(s, out=0.4, down=0.9, back=0.1),
        )
        c.add(f"wrist_{s}", (0.15 * c.osc(0.4))[:, None] * DOWN)
        if twiddle:
            c.add(
                f"curl_{s}",
                (0.3 * c.osc(2.0, 0.0 if s == "r" else np.pi))[:, None]
                * np.array([1.0, 0, 0, 0, 0]),
            )


@motion(24, "arms")
def minaret_hand(c: ClipCtx) -> None:
    apex = _table_point(c, c.rng.uniform(-3, 3), c.rng.uniform(13.0, 22.0), c.rng.uniform(26, 34))
    phi = np.radians(c.rng.uniform(18.0, 40.0))
    lean = c.rng.uniform(-0.4, 0.1)
    tap = c.rng.random() < 0.4
    for s in ("r", "l"):
        lat = LATERAL[s]
        axis = normalize(np.array([-lat * np.sin(phi), -np.cos(phi), lean]))
        normal = normalize(np.array([-lat * np.cos(phi), np.sin(phi), 0.0]))
        tip = apex + np.array([lat * 0.4, 0.0, 0.0])
        c.reach(
            s,
            tip=tip,
            tip_index=12,
            axis=axis,
            normal=normal,
            shape="steeple",
            pole=c.pole(s, out=0.5, down=0.85, back=0.1),
        )
        if tap:
            c.add(f"spread_{s}", 0.25 * c.osc(1.2, 0.0))


@motion(25)
def play_things_body(c: ClipCtx) -> None:
    c.params["both"] = c.rng.random() < 0.3
    c.add("head_rot", [0.0, c.rng.uniform(0.05, 0.15) * c.amp, c.rng.normal(0, 0.03)])


@motion(25, "arms")
def play_things(c: ClipCtx) -> None:
    a = c.amp
    obj = _table_point(c, c.lat * c.rng.uniform(2.0, 12.0), 2.5, c.rng.uniform(24, 34))
    sides = ("r", "l") if c.params.get("both") else (c.side,)
    for s in sides:
        lat = LATERAL[s]
        wrist = obj + np.array([lat * 3.5, -1.0, 6.0])
        fid = smooth_noise(c.rng, c.n, 3, period=c.rng.uniform(6, 12)) * 0.8 * a
        wrist = wrist + fid * c.w[:, None]
        axis = normalize(np.array([-lat * 0.4, 0.4, -1.0]))
        c.reach(
            s,
            wrist=wrist,
            axis=axis,
            normal=np.array([0.0, 0.9, 0.3]),
            shape=c.rng.choice(["pinch", "grip"]),
            pole=c.pole(s, out=0.45, down=0.9, back=0.2),
        )
        fing = smooth_noise(c.rng, c.n, 5, period=c.rng.uniform(4, 9)) * 0.22 * a
        c.add(f"curl_{s}", fing)
        rot = smooth_noise(c.rng, c.n, 3, period=10) * 0.2 * a
        c.ctl[f"axis_{s}"][c.sl] = normalize(c.ctl[f"axis_{s}"][c.sl] + rot * c.w[:, None])


@motion(26)
def withdraw_arms_body(c: ClipCtx) -> None:
    c.add("lean", [-c.rng.uniform(0.0, 0.05) * c.amp, 0.0, 0.0])
    c.add("shrug", [0.6 * c.amp] * 2)
    c.add("shoulder_fwd", [0.6 * c.amp] * 2)


@motion(26, "arms")
def withdraw_arms(c: ClipCtx) -> None:
    sw = c.subject.shoulder_width
    for s in ("r", "l"):
        lat = LATERAL[s]
        wrist = c.torso(
            (
                lat * (sw / 2 - c.rng.uniform(1.0, 6.0)),
                c.subject.table_y + c.rng.uniform(5.0, 10.0),
                -c.rng.uniform(3.0, 9.0),
            )
        )
        c.reach(
            s,
            wrist=wrist,
            axis=c.tdir([-lat * 0.2, 0.9, -0.3]),
            normal=c.tdir(BACK),
            shape="relaxed",
            pole=c.pole(s, out=0.35, down=0.8, back=0.5),
            arc=0.0,
            full=True,
        )


@motion(29)
def arm_akimbo_body(c: ClipCtx) -> None:
    c.params["both"] = c.rng.random() < 0.8
    c.add("lean", [-c.rng.uniform(0.02, 0.06) * c.amp, 0.0, 0.0])
    c.add("chest", 1.0 * c.amp)
    c.add("shoulder_fwd", [-1.0 * c.amp] * 2)


@motion(29, "arms")
def arm_akimbo(c: ClipCtx) -> None:
    assert c.pose is not None
    sides = ("r", "l") if c.params.get("both") else (c.side,)
    for s in sides:
        lat = LATERAL[s]
        i = 1 if s == "r" else 2
        wrist = c.pose.hips[c.sl, i] + np.array([lat * 4.0, -c.rng.uniform(6.0, 12.0), -2.0])
        c.reach(
            s,
            wrist=wrist,
            axis=np.array([-lat * 0.6, 0.8, 0.1]),
            normal=np.array([-lat, 0.0, 0.2]),
            shape="flat",
            pole=c.pole(s, out=1.0, down=-0.1, back=0.35),
            full=True,
        )


@motion(31)
def illustrative_body(c: ClipCtx) -> None:
    a = c.amp
    c.params["hands"] = c.rng.choice(["dominant", "both", "other"], p=[0.5, 0.4, 0.1])
    syll = np.abs(smooth_noise(c.rng, c.n, 1, period=5)[:, 0])
    c.add("jaw", 0.12 + 0.3 * syll)
    c.add("head_rot", 0.03 * a * c.osc(c.rng.uniform(0.8, 1.8)), cols=1)
    c.add("head_rot", 0.06 * a * smooth_noise(c.rng, c.n, 1, period=40)[:, 0], cols=0)


@motion(31, "arms")
def illustrative(c: ClipCtx) -> None:
    a = c.amp
    mode = c.params["hands"]
    sides = ("r", "l") if mode == "both" else ((c.side,) if mode == "dominant" else (c.other,))
    beat_f = c.rng.uniform(1.0, 2.5)
    beat_amp = c.rng.uniform(1.0, 4.0) * a if c.rng.random() < 0.6 else 0.0
    sym = c.rng.random() < 0.5
    shared = smooth_noise(c.rng, c.n, 3, period=c.rng.uniform(10, 25))
    for s in sides:
        lat = LATERAL[s]
        centre = _table_point(
            c, lat * c.rng.uniform(6.0, 20.0), c.rng.uniform(6.0, 18.0), c.rng.uniform(28.0, 42.0)
        )
        path = shared if sym else smooth_noise(c.rng, c.n, 3, period=c.rng.uniform(10, 25))
        path = path * np.array([lat if sym else 1.0, 1.0, 1.0]) * c.rng.uniform(3.0, 7.0) * a
        beat = beat_amp * np.maximum(0, c.osc(beat_f, 0.0))
        wrist = centre + path + beat[:, None] * DOWN
        palm = c.rng.choice(["up", "in", "down", "fwd"])
        normal = {
            "up": UP,
            "in": np.array([-lat, -0.3, 0.0]),
            "down": DOWN,
            "fwd": np.array([0.0, -0.2, -1.0]),
        }[palm]
        axis = normalize(np.array([-lat * 0.4, -0.3, -1.0]) + 0.3 * c.rng.standard_normal(3))
        shape = c.rng.choice(["open", "relaxed", "point", "flat", "cup"])
        c.reach(
            s,
            wrist=wrist,
            axis=axis,
            normal=normal,
            shape=shape,
            pole=c.pole(s, out=0.55, down=0.8, back=0.2),
            arc=3.0,
        )
        c.add(f"curl_{s}", smooth_noise(c.rng, c.n, 5, period=15) * 0.12)


def check_registry() -> None:
    """Every class has at least one phase (import-time sanity, used by the tests)."""
    missing = [k for k in range(NUM_CLASSES) if k not in MOTIONS]
    if missing:
        raise RuntimeError(f"no motion for classes {missing}")


def apply_phase(phase: str, clips: list[ClipCtx]) -> None:
    """Run ``phase`` of every clip's motion (clips never overlap)."""
    for c in clips:
        fn = MOTIONS[c.cls].get(phase)
        if fn is not None:
            fn(c)
