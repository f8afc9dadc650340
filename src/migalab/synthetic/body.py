"""The synthetic subject: body proportions, camera, a 3-D upper-body model and its 137 points.

World frame (centimetres): origin at the subject's rest neck joint, ``x`` to the image right
(the subject's LEFT, since the subject faces the camera), ``y`` down, ``z`` away from the camera.
"r" / "l" always mean the subject's right / left (OpenPose convention): the right arm is on the
image left (``x < 0``). A weak-perspective camera maps the world to pixels (:class:`Camera`).

* Torso: a rigid body leaning about the hip centre (forward lean, side lean, twist), with neck
  rise, per-side shrug / shoulder protraction and chest expansion.
* Head: 68 iBUG face landmarks + 2 pupils as a 3-D template (jaw 0-16, brows 17-26, nose 27-35,
  eyes 36-47, lips 48-67) scaled by the subject's head size and individualised per subject, with
  jaw opening, lower-lip roll-in (lip biting), smile, per-eye blink and gaze; rotated by yaw,
  pitch and roll about a pivot on top of the neck (turned heads foreshorten realistically).
  BODY_25 nose, eyes and ears are points of the same head.
* Arms: two-bone IK from the shoulder to a wrist target with an elbow pole direction.
* Hands: 21 points (wrist, 4 thumb joints, 4 joints per finger) built from a hand frame (finger
  axis, palm normal) with per-finger curl and finger spread; named shapes (open, fist, point,
  pinch, claw, ...) in :data:`HAND_SHAPES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIGHT, LEFT = 0, 1
SIDES = ("r", "l")
#: Lateral sign per side: the subject's right is on the image left.
LATERAL = {"r": -1.0, "l": 1.0}
#: OpenPose BODY_25 indices per side.
BODY_IDX = {
    "r": {"shoulder": 2, "elbow": 3, "wrist": 4, "eye": 15, "ear": 17, "hip": 9},
    "l": {"shoulder": 5, "elbow": 6, "wrist": 7, "eye": 16, "ear": 18, "hip": 12},
}
HAND_OFFSET = {"l": 95, "r": 116}
FACE_OFFSET = 25


def normalize(v: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Unit vectors along the last axis."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, eps)


def rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation ``R_yaw @ R_pitch @ R_roll`` in the world frame.

    Positive yaw turns the face toward the image right, positive pitch looks down (the nose
    moves down / the torso leans toward the camera), positive roll tilts clockwise in the image.
    """
    yaw, pitch, roll = np.broadcast_arrays(
        np.asarray(yaw, float), np.asarray(pitch, float), np.asarray(roll, float)
    )
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    r_yaw = np.stack(
        [
            np.stack([cy, zero, -sy], -1),
            np.stack([zero, one, zero], -1),
            np.stack([sy, zero, cy], -1),
        ],
        -2,
    )
    r_pitch = np.stack(
        [
            np.stack([one, zero, zero], -1),
            np.stack([zero, cp, -sp], -1),
            np.stack([zero, sp, cp], -1),
        ],
        -2,
    )
    r_roll = np.stack(
        [
            np.stack([cr, -sr, zero], -1),
            np.stack([sr, cr, zero], -1),
            np.stack([zero, zero, one], -1),
        ],
        -2,
    )
    return r_yaw @ r_pitch @ r_roll


def apply(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors: ``rot`` (T, 3, 3), ``v`` (T, 3) or (T, K, 3) or (3,) / (K, 3)."""
    v = np.asarray(v, float)
    if v.ndim == 1:
        return np.einsum("tij,j->ti", rot, v)
    if v.ndim == 2 and v.shape[0] != rot.shape[0]:
        return np.einsum("tij,kj->tki", rot, v)
    if v.ndim == 2:
        return np.einsum("tij,tj->ti", rot, v)
    return np.einsum("tij,tkj->tki", rot, v)


# ----------------------------------------------------------------------------------------
# Face: 68 iBUG landmarks + 2 pupils, face frame in cm (origin at the nasion, x right, y down,
# z into the head), for an average adult face (nasion-chin 11.5 cm, jaw width 14 cm).
# ----------------------------------------------------------------------------------------


def _face_template() -> np.ndarray:
    pts = np.zeros((70, 3))
    # jaw 0..16 from the subject's right ear (image left) down to the chin (8) and up
    a = np.pi * np.arange(17) / 16.0
    c, s = np.cos(a), np.sin(a)
    x = -7.0 * np.sign(c) * np.abs(c) ** 0.7
    y = 1.0 + 10.5 * s**1.3
    pts[0:17, 0], pts[0:17, 1] = x, y
    pts[0:17, 2] = 1.0 + 7.0 * (np.abs(x) / 7.0) ** 1.5
    # brows 17-21 (right brow, outer -> inner), 22-26 (left brow, inner -> outer)
    t = np.linspace(0.0, 1.0, 5)
    bx = -5.2 + 4.2 * t
    by = -1.5 - 0.6 * np.sin(np.pi * (0.25 + 0.75 * t))
    pts[17:22, 0], pts[17:22, 1] = bx, by
    pts[22:27, 0], pts[22:27, 1] = -bx[::-1], by[::-1]
    pts[17:27, 2] = 0.3 + 2.6 * (np.abs(pts[17:27, 0]) / 5.2) ** 2
    # nose bridge 27-30 (top -> tip), nostrils 31-35 (image left -> right)
    pts[27:31] = [[0, 0.2, 0.0], [0, 1.5, -0.6], [0, 2.8, -1.2], [0, 4.1, -2.0]]
    pts[31:36] = [[-1.5, 5.0, -0.3], [-0.75, 5.2, -0.8], [0, 5.3, -1.0], [0.75, 5.2, -0.8],
                  [1.5, 5.0, -0.3]]  # fmt: skip
    # right eye 36-41: outer corner, two upper lid, inner corner, two lower lid
    r_eye = [[-4.6, 1.0, 1.3], [-3.6, 0.55, 0.8], [-2.6, 0.55, 0.7], [-1.6, 1.0, 0.7],
             [-2.6, 1.35, 0.7], [-3.6, 1.35, 0.8]]  # fmt: skip
    pts[36:42] = r_eye
    # left eye 42-47: inner corner, two upper lid, outer corner, two lower lid (mirror order)
    mirror_idx = [3, 2, 1, 0, 5, 4]
    pts[42:48] = [[-r_eye[i][0], r_eye[i][1], r_eye[i][2]] for i in mirror_idx]
    # outer lips 48-59 (right corner, upper lip to left corner, lower lip back), inner 60-67
    pts[48:60] = [[-2.5, 7.3, 0.5], [-1.6, 6.8, -0.2], [-0.6, 6.55, -0.6], [0, 6.65, -0.65],
                  [0.6, 6.55, -0.6], [1.6, 6.8, -0.2], [2.5, 7.3, 0.5], [1.6, 7.9, -0.1],
                  [0.8, 8.15, -0.4], [0, 8.2, -0.5], [-0.8, 8.15, -0.4], [-1.6, 7.9, -0.1]]  # fmt: skip
    pts[60:68] = [[-2.2, 7.3, 0.4], [-0.7, 7.15, -0.3], [0, 7.15, -0.35], [0.7, 7.15, -0.3],
                  [2.2, 7.3, 0.4], [0.7, 7.4, -0.3], [0, 7.45, -0.35], [-0.7, 7.4, -0.3]]  # fmt: skip
    # pupils: 68 right, 69 left
    pts[68] = [-3.1, 0.95, 0.5]
    pts[69] = [3.1, 0.95, 0.5]
    return pts


FACE_TEMPLATE = _face_template()
#: Head rotation pivot (top of the neck) in the face frame.
FACE_PIVOT = np.array([0.0, 10.0, 8.0])
#: BODY_25 ears in the face frame (right, left).
EAR_POINTS = np.array([[-7.1, 2.2, 7.5], [7.1, 2.2, 7.5]])

#: Named points on the head surface (face frame, cm) used as gesture targets.
HEAD_ANCHORS: dict[str, tuple[float, float, float]] = {
    "head_top": (0.0, -9.5, 4.0),
    "hat_brim": (0.0, -6.5, -2.2),
    "forehead": (0.0, -3.4, -0.4),
    "r_temple": (-6.0, -1.8, 2.5),
    "l_temple": (6.0, -1.8, 2.5),
    "r_cheek": (-4.4, 4.0, 0.2),
    "l_cheek": (4.4, 4.0, 0.2),
    "r_jaw": (-5.2, 7.8, 2.2),
    "l_jaw": (5.2, 7.8, 2.2),
    "r_ear": (-7.3, 2.6, 7.0),
    "l_ear": (7.3, 2.6, 7.0),
    "r_head_side": (-7.5, -4.0, 6.5),
    "l_head_side": (7.5, -4.0, 6.5),
    "r_eye": (-3.1, 1.0, -0.2),
    "l_eye": (3.1, 1.0, -0.2),
    "nose": (0.0, 3.6, -2.3),
    "mouth": (0.0, 7.35, -1.1),
    "chin": (0.0, 11.2, -0.2),
    "under_chin": (0.0, 12.2, 2.0),
    "r_neck_side": (-5.0, 13.5, 6.5),
    "l_neck_side": (5.0, 13.5, 6.5),
    "nape": (0.0, 12.0, 12.0),
}


def _face_bases() -> dict[str, np.ndarray]:
    """(70, 3) displacement bases for jaw opening, lip roll-in, smile and blinks."""
    jaw = np.zeros((70, 3))
    for i in range(17):
        jaw[i, 1] = max(0.0, 1.0 - abs(i - 8) / 6.5) ** 0.9
    jaw[[55, 56, 57, 58, 59], 1] = [0.8, 0.85, 0.88, 0.85, 0.8]
    jaw[[65, 66, 67], 1] = 0.92
    jaw[[48, 54, 60, 64], 1] = 0.45
    lip_in = np.zeros((70, 3))
    lip_in[[55, 56, 57, 58, 59], 1] = [-0.3, -0.45, -0.55, -0.45, -0.3]
    lip_in[[55, 56, 57, 58, 59], 2] = 0.35
    lip_in[[65, 66, 67], 1] = -0.15
    lip_in[[48, 60], 0] = 0.22
    lip_in[[54, 64], 0] = -0.22
    lip_in[[49, 50, 51, 52, 53], 1] = 0.08
    lip_in[[8, 7, 9], 1] = -0.1
    smile = np.zeros((70, 3))
    smile[[48, 60]] = [-0.35, -0.3, 0.2]
    smile[[54, 64]] = [0.35, -0.3, 0.2]
    smile[[49, 59]] = [-0.15, -0.1, 0.0]
    smile[[53, 55]] = [0.15, -0.1, 0.0]
    smile[[40, 41, 46, 47], 1] = -0.08
    blink_r = np.zeros((70, 3))
    blink_r[[37, 38], 1] = 0.62
    blink_r[[40, 41], 1] = -0.08
    blink_l = np.zeros((70, 3))
    blink_l[[43, 44], 1] = 0.62
    blink_l[[46, 47], 1] = -0.08
    return {"jaw": jaw, "lip_in": lip_in, "smile": smile, "blink_r": blink_r, "blink_l": blink_l}


FACE_BASES = _face_bases()

# ----------------------------------------------------------------------------------------
# Hand: local frame (u along the fingers, v toward the thumb, w out of the palm), cm.
# ----------------------------------------------------------------------------------------
_FINGER_BASE = np.array([[8.6, 2.3, 0.0], [9.0, 0.5, 0.0], [8.6, -1.3, 0.0], [7.9, -2.9, 0.0]])
_FINGER_LEN = np.array([[4.3, 2.5, 2.0], [4.7, 2.9, 2.2], [4.3, 2.7, 2.1], [3.4, 2.0, 1.8]])
_FINGER_SPREAD = np.radians([9.0, 0.0, -9.0, -19.0])
_FLEX = np.radians([78.0, 95.0, 65.0])
_THUMB_CMC = np.array([1.8, 2.0, 0.8])
_THUMB_LEN = np.array([3.2, 3.0, 2.5])
_THUMB_REST = np.array([0.55, 0.72, 0.42]) / np.linalg.norm([0.55, 0.72, 0.42])
_THUMB_CURL = np.array([0.55, -0.55, 0.63]) / np.linalg.norm([0.55, -0.55, 0.63])

#: Named hand shapes: (curl of thumb, index, middle, ring, pinky in [0, 1], finger spread).
HAND_SHAPES: dict[str, tuple[tuple[float, float, float, float, float], float]] = {
    "relaxed": ((0.3, 0.35, 0.4, 0.45, 0.5), 0.5),
    "flat": ((0.1, 0.12, 0.14, 0.16, 0.2), 0.6),
    "open": ((0.05, 0.04, 0.05, 0.07, 0.1), 1.0),
    "fist": ((0.75, 0.95, 0.97, 0.97, 0.97), 0.2),
    "point": ((0.65, 0.0, 0.9, 0.92, 0.92), 0.3),
    "pinch": ((0.45, 0.55, 0.85, 0.88, 0.9), 0.3),
    "claw": ((0.4, 0.5, 0.52, 0.55, 0.58), 0.7),
    "grip": ((0.6, 0.65, 0.7, 0.72, 0.75), 0.4),
    "interlace": ((0.35, 0.5, 0.52, 0.52, 0.55), 1.3),
    "steeple": ((0.1, 0.08, 0.08, 0.1, 0.12), 0.9),
    "cup": ((0.3, 0.3, 0.3, 0.32, 0.35), 0.3),
}


def shape_arrays(name: str) -> tuple[np.ndarray, float]:
    """(5,) curls and spread of a named hand shape."""
    curl, spread = HAND_SHAPES[name]
    return np.asarray(curl, float), float(spread)


def hand_points(
    wrist: np.ndarray,
    axis: np.ndarray,
    normal: np.ndarray,
    curl: np.ndarray,
    spread: np.ndarray,
    side: str,
    scale: float = 1.0,
) -> np.ndarray:
    """(T, 21, 3) OpenPose hand points.

    Args:
        wrist: (T, 3) wrist position.
        axis: (T, 3) direction from the wrist to the middle knuckle (fingers' direction).
        normal: (T, 3) direction the palm faces (made orthogonal to ``axis``).
        curl: (T, 5) flexion of thumb, index, middle, ring, pinky in [0, 1] (0 straight, 1 fist).
        spread: (T,) finger fan (0 together, 1 normal, >1 wide).
        side: ``"r"`` or ``"l"`` (sets on which side the thumb is).
        scale: hand size (1.0 = a 19 cm hand).
    """
    t = len(wrist)
    e1 = normalize(axis)
    e3 = normal - np.sum(normal * e1, axis=-1, keepdims=True) * e1
    # a degenerate normal (parallel to the axis) falls back to any perpendicular
    bad = np.linalg.norm(e3, axis=-1) < 1e-6
    if bad.any():
        alt = np.cross(e1[bad], np.array([0.0, 0.0, 1.0]))
        alt[np.linalg.norm(alt, axis=-1) < 1e-6] = [1.0, 0.0, 0.0]
        e3[bad] = alt
    e3 = normalize(e3)
    chir = 1.0 if side == "r" else -1.0
    e2 = chir * np.cross(e1, e3)
    local = np.zeros((t, 21, 3))
    p = np.broadcast_to(_THUMB_CMC, (t, 3)).copy()
    local[:, 1] = p
    for k in range(3):
        mix = np.clip(curl[:, 0] * (0.5 + 0.35 * k), 0.0, 1.0)[:, None]
        d = normalize((1.0 - mix) * _THUMB_REST + mix * _THUMB_CURL)
        p = p + _THUMB_LEN[k] * d
        local[:, 2 + k] = p
    w_hat = np.array([0.0, 0.0, 1.0])
    for f in range(4):
        ang = _FINGER_SPREAD[f] * spread
        d0 = np.stack([np.cos(ang), np.sin(ang), np.zeros(t)], -1)
        idx = 5 + 4 * f
        p = np.broadcast_to(_FINGER_BASE[f], (t, 3)).copy()
        local[:, idx] = p
        theta = np.zeros(t)
        for k in range(3):
            theta = theta + _FLEX[k] * curl[:, 1 + f]
            d = np.cos(theta)[:, None] * d0 + np.sin(theta)[:, None] * w_hat
            p = p + _FINGER_LEN[f, k] * d
            local[:, idx + 1 + k] = p
    local *= scale
    return (
        wrist[:, None, :]
        + local[..., 0:1] * e1[:, None, :]
        + local[..., 1:2] * e2[:, None, :]
        + local[..., 2:3] * e3[:, None, :]
    )


def solve_arm(
    shoulder: np.ndarray, target: np.ndarray, pole: np.ndarray, upper: float, fore: float
) -> tuple[np.ndarray, np.ndarray]:
    """Two-bone IK: (elbow, wrist) (T, 3) reaching toward ``target`` with the elbow toward
    ``pole`` (a direction); out-of-reach targets are approached along the same line."""
    d = target - shoulder
    dist = np.linalg.norm(d, axis=-1, keepdims=True)
    u = d / np.maximum(dist, 1e-9)
    dist = np.clip(dist, abs(upper - fore) + 1.0, (upper + fore) * 0.995)
    a = (upper**2 - fore**2 + dist**2) / (2.0 * dist)
    h = np.sqrt(np.maximum(upper**2 - a**2, 0.0))
    p = pole - np.sum(pole * u, axis=-1, keepdims=True) * u
    n = np.linalg.norm(p, axis=-1, keepdims=True)
    fallback = np.cross(u, np.array([0.0, 0.0, 1.0]))
    p = np.where(n > 1e-6, p / np.maximum(n, 1e-9), normalize(fallback))
    elbow = shoulder + a * u + h * p
    wrist = shoulder + dist * u
    return elbow, wrist


# ----------------------------------------------------------------------------------------
# Subject and camera
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Subject:
    """One synthetic player (body proportions, posture and habits), in cm and radians."""

    sid: int
    shoulder_width: float
    upper_arm: float
    forearm: float
    hand_scale: float
    head_scale: float
    neck_len: float
    torso_len: float
    hip_width: float
    table_y: float
    lean: float
    side_lean: float
    shoulder_tilt: float
    head_yaw: float
    head_pitch: float
    head_roll: float
    dominant: str
    expressiveness: float
    breath_period: float
    rest_pref: tuple[float, ...]
    talkativeness: float
    smile_rate: float
    face: np.ndarray  # (70, 3) individual face template (face frame, before head_scale)


#: Rest styles of the arms between gestures.
REST_STYLES = ("table_apart", "table_close", "lap", "one_lap", "table_edge")


def sample_subject(seed: int, sid: int) -> Subject:
    """The subject ``sid`` of a release with master ``seed`` (its own random stream)."""
    rng = np.random.default_rng([seed, 7, sid])
    male = rng.random() < 0.6
    sw = rng.normal(42.0 if male else 37.5, 2.0)
    k = sw / 40.0
    face = FACE_TEMPLATE.copy()
    fw, fh = rng.normal(1.0, 0.05), rng.normal(1.0, 0.05)
    face[:, 0] *= fw
    face[:, 1] *= fh
    eye_spacing = rng.normal(1.0, 0.04)
    face[36:48, 0] *= eye_spacing
    face[68:70, 0] *= eye_spacing
    face[48:68, 0] *= rng.normal(1.0, 0.06)  # mouth width
    face[27:36, 1] += np.array([0, 1, 2, 3, 3, 3, 3, 3, 3]) / 3 * rng.normal(0.0, 0.25)  # nose
    face[0:17, 0] *= rng.normal(1.0, 0.04)  # jaw width
    face += rng.normal(0.0, 0.08, face.shape) * [1, 1, 0.5]
    pref = rng.dirichlet([3.0, 2.0, 0.6, 0.6, 1.0])
    return Subject(
        sid=int(sid),
        shoulder_width=float(sw),
        upper_arm=float(rng.normal(30.0, 1.5) * k**0.5),
        forearm=float(rng.normal(26.0, 1.3) * k**0.5),
        hand_scale=float(rng.normal(0.95, 0.04) * k**0.5),
        head_scale=float(rng.normal(1.0, 0.045)),
        neck_len=float(rng.uniform(9.0, 13.0)),
        torso_len=float(rng.normal(50.0, 2.5) * k**0.5),
        hip_width=float(rng.normal(30.0 if male else 32.0, 1.5)),
        table_y=float(rng.uniform(28.0, 38.0)),
        lean=float(rng.normal(0.08, 0.05)),
        side_lean=float(rng.normal(0.0, 0.025)),
        shoulder_tilt=float(rng.normal(0.0, 0.8)),
        head_yaw=float(rng.normal(0.0, 0.2)),
        head_pitch=float(rng.normal(0.03, 0.06)),
        head_roll=float(rng.normal(0.0, 0.04)),
        dominant="r" if rng.random() < 0.85 else "l",
        expressiveness=float(np.exp(rng.normal(0.0, 0.18))),
        breath_period=float(rng.uniform(3.0, 5.0)),
        rest_pref=tuple(float(p) for p in pref),
        talkativeness=float(rng.uniform(0.3, 0.7)),
        smile_rate=float(rng.uniform(0.0, 1.0)),
        face=face,
    )


@dataclass(frozen=True)
class Camera:
    """Perspective camera of one video, slightly above the subject and looking down by ``tilt``.

    pixels = centre + scale * (x, y') * dist / (dist + z') with y' = y cos(tilt) - z sin(tilt),
    z' = y sin(tilt) + z cos(tilt): leaning toward the camera moves the head down in the image
    and makes it larger.
    """

    scale: float  # px per cm at the neck's depth
    cx: float  # pixel of the rest neck joint
    cy: float
    dist: float  # camera distance (cm)
    tilt: float  # camera looking down (rad)
    width: int
    height: int
    hip_visible: float  # probability that OpenPose finds the hips through the table
    quality: float  # confidence multiplier of this video's detections

    def depth(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (...) camera-space depth ``z'`` (cm, larger = farther)."""
        return pts[..., 1] * np.sin(self.tilt) + pts[..., 2] * np.cos(self.tilt)

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 2) pixels."""
        c, s = np.cos(self.tilt), np.sin(self.tilt)
        y = pts[..., 1] * c - pts[..., 2] * s
        f = self.dist / (self.dist + self.depth(pts))
        return np.stack([self.cx + self.scale * pts[..., 0] * f, self.cy + self.scale * y * f], -1)


def sample_camera(
    rng: np.random.Generator, subject: Subject, frame_size: tuple[int, int]
) -> Camera:
    """A camera framing ``subject`` (seated, upper body visible) in a ``frame_size`` (H, W) frame.

    The subject (head top to hip) fills 25-60 % of the frame height; the neck is placed between
    32 % and 68 % of the width; the table and resting hands are kept inside the frame.
    """
    h, w = frame_size
    head_above_neck = subject.neck_len + 19.5 * subject.head_scale
    body_cm = head_above_neck + subject.torso_len
    frac = rng.uniform(0.25, 0.6)
    scale = frac * h / body_cm
    top = rng.uniform(0.04, 0.2) * h
    cy = top + scale * head_above_neck
    low = cy + scale * (subject.table_y + 3.0)
    if low > 0.96 * h:  # keep the table in view: move up, then shrink
        cy -= min(low - 0.96 * h, top - 0.01 * h)
        low = cy + scale * (subject.table_y + 3.0)
        if low > 0.96 * h:
            shrink = (0.96 * h - 0.01 * h) / (low - 0.01 * h)
            scale *= shrink
            cy = 0.01 * h + scale * head_above_neck
    half = scale * (subject.shoulder_width / 2 + subject.upper_arm + 5.0)
    lo_x, hi_x = max(0.32 * w, half), min(0.68 * w, w - half)
    cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else w / 2
    hip_visible = 0.0 if rng.random() < 0.5 else float(rng.uniform(0.2, 0.8))
    return Camera(
        scale=float(scale),
        cx=float(cx),
        cy=float(cy),
        dist=float(rng.uniform(250.0, 400.0)),
        tilt=float(rng.uniform(0.0, 0.25)),
        width=int(w),
        height=int(h),
        hip_visible=hip_visible,
        quality=float(rng.uniform(0.9, 1.05)),
    )


# ----------------------------------------------------------------------------------------
# Posed body (torso + head) from the control channels
# ----------------------------------------------------------------------------------------


@dataclass
class BodyPose:
    """World positions (cm) of the torso and head over T frames."""

    neck: np.ndarray  # (T, 3)
    shoulders: np.ndarray  # (T, 2, 3) right, left
    hips: np.ndarray  # (T, 3, 3) mid, right, left
    torso_rot: np.ndarray  # (T, 3, 3)
    head_rot: np.ndarray  # (T, 3, 3) total (torso @ head)
    pivot: np.ndarray  # (T, 3)
    face: np.ndarray  # (T, 70, 3)
    nose: np.ndarray  # (T, 3)
    eyes: np.ndarray  # (T, 2, 3)
    ears: np.ndarray  # (T, 2, 3)
    head_scale: float

    def head_point(self, local: np.ndarray | tuple[float, float, float] | str) -> np.ndarray:
        """(T, 3) world position of a face-frame point (or a :data:`HEAD_ANCHORS` name)."""
        if isinstance(local, str):
            local = HEAD_ANCHORS[local]
        local = np.asarray(local, float)
        rel = (local - FACE_PIVOT) * self.head_scale
        return self.pivot + apply(self.head_rot, rel)

    def head_dir(self, vec: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """(T, 3) a face-frame direction rotated with the head."""
        return apply(self.head_rot, np.asarray(vec, float))

    def torso_point(self, local: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """(T, 3) a point given relative to the neck in the torso frame (cm)."""
        return self.neck + apply(self.torso_rot, np.asarray(local, float))

    def torso_dir(self, vec: np.ndarray | tuple[float, float, float]) -> np.ndarray:
        """(T, 3) a torso-frame direction in the world."""
        return apply(self.torso_rot, np.asarray(vec, float))


def pose_body(ctl: dict[str, np.ndarray], subject: Subject) -> BodyPose:
    """Torso and head positions from the control channels (see ``sequence.CHANNELS``)."""
    lean = ctl["lean"]
    t = len(lean)
    rt = rotation(lean[:, 2], lean[:, 0], lean[:, 1])
    length = subject.torso_len
    base = np.array([0.0, length, 0.0]) + ctl["shift"]
    rise = ctl["rise"]
    neck_local = np.zeros((t, 3))
    neck_local[:, 1] = -(length + rise)
    neck = base + apply(rt, neck_local)
    shoulders = np.zeros((t, 2, 3))
    for i, side in enumerate(SIDES):
        loc = np.zeros((t, 3))
        loc[:, 0] = LATERAL[side] * (subject.shoulder_width / 2 + ctl["chest"] / 2)
        tilt = subject.shoulder_tilt / 2 * (1 if side == "l" else -1)
        loc[:, 1] = -(length + rise) + 1.5 - ctl["shrug"][:, i] + tilt
        loc[:, 2] = -ctl["shoulder_fwd"][:, i]
        shoulders[:, i] = base + apply(rt, loc)
    hips = np.zeros((t, 3, 3))
    hips[:, 0] = base
    hips[:, 1] = base + [-subject.hip_width / 2, 0.0, 0.0]
    hips[:, 2] = base + [subject.hip_width / 2, 0.0, 0.0]
    hr = ctl["head_rot"]
    rh = rt @ rotation(hr[:, 0], hr[:, 1], hr[:, 2])
    hp = ctl["head_pos"]
    pivot = neck + apply(rt, np.array([0.0, -subject.neck_len, 0.0]))
    pivot = pivot + np.stack([np.zeros(t), hp[:, 1], -hp[:, 0]], -1)
    # deformed face in the face frame
    face_local = np.broadcast_to(subject.face, (t, 70, 3)).copy()
    face_local += ctl["jaw"][:, None, None] * FACE_BASES["jaw"]
    face_local += ctl["lip_in"][:, None, None] * FACE_BASES["lip_in"]
    face_local += ctl["smile"][:, None, None] * FACE_BASES["smile"]
    face_local += ctl["blink"][:, 0, None, None] * FACE_BASES["blink_r"]
    face_local += ctl["blink"][:, 1, None, None] * FACE_BASES["blink_l"]
    face_local[:, 68:70, 0] += ctl["gaze"][:, None, 0]
    face_local[:, 68:70, 1] += ctl["gaze"][:, None, 1]
    hs = subject.head_scale
    face = pivot[:, None, :] + apply(rh, (face_local - FACE_PIVOT) * hs)
    eye_c = np.stack([subject.face[36:42].mean(0), subject.face[42:48].mean(0)]) + [0.0, 0.0, -0.3]
    eyes = pivot[:, None, :] + apply(rh, (eye_c - FACE_PIVOT) * hs)
    ears = pivot[:, None, :] + apply(rh, (EAR_POINTS - FACE_PIVOT) * hs)
    nose = pivot + apply(rh, (subject.face[30] + [0.0, -0.2, 0.1] - FACE_PIVOT) * hs)
    return BodyPose(
        neck=neck,
        shoulders=shoulders,
        hips=hips,
        torso_rot=rt,
        head_rot=rh,
        pivot=pivot,
        face=face,
        nose=nose,
        eyes=eyes,
        ears=ears,
        head_scale=hs,
    )
