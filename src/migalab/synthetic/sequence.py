"""One synthetic interview video: clip plan, idle behaviour, gestures, rendering to 137 points.

Pipeline of :func:`generate_video` (all vectorised over the T frames of the video):

1. plan: number of clips, their classes (class prior of the config, shifted by the video's
   emotion), class-typical durations and idle gaps (padded to ``min_video_frames``);
2. idle controls: breathing (neck and shoulders rise 1-2 px with a 3-5 s period), postural
   sway, weight shifts, head turns toward journalists and head micro-motion, talking (jaw at
   syllable rate in speaking turns, small nods), blinks, gaze, smiles, and the arms' rest
   styles (hands on the table apart / close together, in the lap, one in the lap, on the table
   edge) with slow drift; rest styles only change inside idle gaps;
3. the clips' motions (see :mod:`migalab.synthetic.gestures`): body phase, then the posed
   body, arms phase, two-bone IK, dependent phase, IK again, hands;
4. render: weak-perspective projection, occlusions (hands below the table top or behind the
   body or head, face landmarks under a hand, the far ear of a turned head, points outside the
   frame), confidences (0.3-0.95, lower for hands, lower for fast-moving hands), Gaussian
   jitter (larger for hands / fingers), random short dropouts and long hand / face dropouts.
   Missing keypoints are exactly (0, 0, 0).

Emotion (0 lose, 1 win) shifts behaviour subtly (scaled by ``emotion_effect``): losers slump
(+0.04 rad lean, head pitched down 0.05 rad and lowered 0.5 cm, chest sinks 0.6 cm), move and
talk ~15 % less, smile a quarter as often and touch their face more (class prior x1.3);
above an effect of 1 winners also smile ``effect`` times as often;
winners sit upright (-0.02 rad), head slightly up, smile often, talk more, gesture more (class
prior) and wider (illustrative amplitude x1.15 vs x0.85).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from migalab.synthetic.body import (
    LATERAL,
    REST_STYLES,
    SIDES,
    BodyPose,
    Camera,
    Subject,
    hand_points,
    normalize,
    pose_body,
    sample_camera,
    sample_subject,
    shape_arrays,
    solve_arm,
)
from migalab.synthetic.config import FPS, NUM_CLASSES, SynthConfig
from migalab.synthetic.gestures import DURATION_FACTOR, ClipCtx, apply_phase
from migalab.synthetic.signals import (
    box_smooth,
    burst_mask,
    envelope,
    event_starts,
    random_segments,
    smooth_noise,
)

#: Control channels: name -> trailing shape (each channel is an array (T, *shape)).
CHANNELS: dict[str, tuple[int, ...]] = {
    "lean": (3,),  # forward lean, side lean, twist (rad)
    "shift": (3,),  # whole upper body translation (cm)
    "rise": (),  # neck rise (cm, + up)
    "shrug": (2,),  # right, left shoulder up (cm)
    "shoulder_fwd": (2,),  # right, left shoulder toward the camera (cm)
    "chest": (),  # chest expansion (shoulder width +, cm)
    "head_rot": (3,),  # yaw, pitch (+ down), roll (rad), relative to the torso
    "head_pos": (2,),  # head forward (toward the camera), head down (cm)
    "jaw": (),  # jaw opening (cm)
    "lip_in": (),  # lower lip rolled in (0-1.4)
    "smile": (),  # 0-1
    "blink": (2,),  # right, left eye closure 0-1
    "gaze": (2,),  # pupil offset x, y (cm)
    "face_vis": (),  # face detectability multiplier
}
for _s in SIDES:
    CHANNELS.update(
        {
            f"wrist_{_s}": (3,),  # wrist target (world cm)
            f"axis_{_s}": (3,),  # finger direction
            f"normal_{_s}": (3,),  # palm direction
            f"curl_{_s}": (5,),  # finger curls
            f"spread_{_s}": (),
            f"pole_{_s}": (3,),  # elbow direction
            f"hvis_{_s}": (),  # hand visibility multiplier
            f"avis_{_s}": (),  # wrist / elbow visibility multiplier
        }
    )


@dataclass(frozen=True)
class VideoSpec:
    """What the release planner decides for one video (everything else is drawn from its seed)."""

    vid: str
    split: str
    subject_id: int
    emotion: int  # 0 lose, 1 win


@dataclass
class VideoResult:
    """A generated video: the (T, 411) table and its label rows (0-based class, start, end).

    The optional fields carry the clean geometry behind the table (before occlusion, jitter
    and dropouts) for the RGB renderer (:mod:`migalab.synthetic.video`):

    * ``points``: (T, 137, 3) world positions (cm) of the 137 keypoints;
    * ``xy``: (T, 137, 2) their clean pixel positions in ``frame_size`` (``camera.project``);
    * ``depth``: (T, 137) camera-space depth (cm, larger = farther), for draw order;
    * ``pose``, ``camera``, ``subject``: the posed torso / head, the camera and the subject;
    * ``smile``: (T,) the smile control (0-1), which the renderer shows as parted lips and
      teeth (the table's landmarks keep the lips closed: OpenPose has no teeth).
    """

    spec: VideoSpec
    table: np.ndarray
    clips: list[tuple[int, int, int]]
    points: np.ndarray | None = None
    xy: np.ndarray | None = None
    depth: np.ndarray | None = None
    pose: BodyPose | None = None
    camera: Camera | None = None
    subject: Subject | None = None
    smile: np.ndarray | None = None


def video_streams(seed: int, vid: str) -> list[np.random.Generator]:
    """Independent random streams (plan, idle, gestures, render, camera) of one video."""
    ss = np.random.SeedSequence([int(seed), 11, int(vid)])
    return [np.random.default_rng(s) for s in ss.spawn(5)]


# ---------------------------------------------------------------------------------------
# Plan
# ---------------------------------------------------------------------------------------


def plan_clips(
    rng: np.random.Generator, cfg: SynthConfig, emotion: int
) -> tuple[list[tuple[int, int, int]], int]:
    """Clip classes and intervals of one video: ``([(cls, start, end), ...], num_frames)``."""
    if cfg.clip_classes is not None:
        classes = np.asarray(cfg.clip_classes, dtype=np.int64)
    else:
        lo, hi = cfg.clips_per_video
        n = int(rng.integers(lo, hi + 1))
        classes = rng.choice(NUM_CLASSES, size=n, p=cfg.class_prior(emotion))
    n = len(classes)
    lo, hi = cfg.clip_frames
    mid = np.sqrt(lo * hi)
    dur = mid * DURATION_FACTOR[classes] * np.exp(rng.normal(0.0, 0.3, size=n))
    dur = np.clip(np.round(dur), lo, hi).astype(np.int64)
    glo, ghi = cfg.gap_frames
    gaps = rng.integers(glo, ghi + 1, size=n + 1)
    total = int(dur.sum() + gaps.sum())
    if total < cfg.min_video_frames:
        extra = cfg.min_video_frames - total
        gaps = gaps + rng.multinomial(extra, rng.dirichlet(np.ones(n + 1)))
        total = int(dur.sum() + gaps.sum())
    clips = []
    t = int(gaps[0])
    for k in range(n):
        clips.append((int(classes[k]), t, t + int(dur[k]) - 1))
        t += int(dur[k]) + int(gaps[k + 1])
    return clips, total


# ---------------------------------------------------------------------------------------
# Idle behaviour
# ---------------------------------------------------------------------------------------


def _rest_pose(style: str, side: str, subj: Subject, rng: np.random.Generator) -> dict:
    """Concrete rest parameters (world cm) of one arm in one rest style."""
    lat = LATERAL[side]
    ty = subj.table_y
    if style == "one_lap":
        style = "table_apart" if side == subj.dominant else "lap"
    if style == "table_apart":
        wrist = (lat * rng.uniform(10, 18), ty - 2.5, -rng.uniform(24, 34))
        axis = (-lat * rng.uniform(0.2, 0.5), 0.15, -1.0)
        normal = (lat * rng.uniform(-0.1, 0.4), 1.0, 0.0)
        shape = rng.choice(["flat", "relaxed"])
    elif style == "table_close":
        wrist = (lat * rng.uniform(4, 8), ty - 3.0, -rng.uniform(22, 30))
        axis = (-lat * 0.9, 0.1, -0.5)
        normal = (-lat * 0.2, 1.0, 0.2)
        shape = "relaxed"
    elif style == "lap":
        wrist = (lat * rng.uniform(8, 14), ty + rng.uniform(6, 12), -rng.uniform(4, 10))
        axis = (-lat * 0.3, 0.3, -1.0)
        normal = (-lat * 0.5, 0.2, 0.0)
        shape = "relaxed"
    else:  # table_edge
        wrist = (lat * rng.uniform(14, 22), ty - 1.0, -rng.uniform(14, 20))
        axis = (-lat * 0.2, 0.5, -0.85)
        normal = (0.0, 0.85, -0.5)
        shape = "relaxed"
    curl, spread = shape_arrays(str(shape))
    return {
        "wrist": np.array(wrist, float),
        "axis": normalize(np.array(axis, float)),
        "normal": normalize(np.array(normal, float)),
        "curl": np.clip(curl + rng.normal(0, 0.05, 5), 0, 1),
        "spread": spread,
        "pole": normalize(np.array([lat * 0.35, 0.85, 0.35])),
    }


def idle_controls(
    t: int,
    subj: Subject,
    cam: Camera,
    rng: np.random.Generator,
    cfg: SynthConfig,
    emotion: int,
    clips: list[tuple[int, int, int]],
) -> dict[str, np.ndarray]:
    """All control channels for a video with nothing but idle behaviour."""
    ctl = {name: np.zeros((t,) + shape) for name, shape in CHANNELS.items()}
    k = cfg.idle
    e = cfg.emotion_effect
    lose = emotion == 0
    energy = (0.85 if lose else 1.1) ** e
    sn = lambda dims, sec: smooth_noise(rng, t, dims, period=sec * FPS)  # noqa: E731

    # torso: slump by emotion + slow sway and weight shifts
    slump = 0.04 * e if lose else -0.02 * e
    ctl["lean"][:, 0] = subj.lean + slump + k * energy * 0.02 * sn(1, 6)[:, 0]
    ctl["lean"][:, 1] = subj.side_lean + k * energy * 0.015 * sn(1, 8)[:, 0]
    ctl["lean"][:, 2] = k * energy * 0.02 * sn(1, 7)[:, 0]
    ctl["shift"][:, [0, 2]] = k * 0.8 * sn(2, 10)
    # breathing: 1-2 px at this camera's scale, period 3-5 s drifting slowly
    period = subj.breath_period * FPS * (1.0 + 0.08 * sn(1, 10)[:, 0])
    breath = np.sin(np.cumsum(2 * np.pi / period) + rng.uniform(0, 2 * np.pi))
    b_amp = rng.uniform(1.0, 2.0) / cam.scale
    ctl["rise"] = 0.8 * b_amp * breath + k * 0.3 * sn(1, 8)[:, 0] - (0.6 * e if lose else 0.0)
    ctl["shrug"] = b_amp * breath[:, None] + k * 0.15 * sn(2, 4)
    ctl["chest"] = 0.3 * b_amp * breath

    # head: look-around (piecewise-constant yaw targets), micro-motion, talking nods
    seg = random_segments(rng, t, mean_on=3.5 * FPS, mean_off=3.5 * FPS)
    change = np.flatnonzero(np.diff(seg.astype(np.int8)) != 0) + 1
    yaw = np.full(t, subj.head_yaw)
    bounds = np.concatenate([[0], change, [t]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        yaw[a:b] = subj.head_yaw + rng.normal(0.0, 0.16) * k
    yaw = box_smooth(yaw, int(rng.integers(9, 19)))
    pitch_bias = 0.05 * e if lose else -0.02 * e
    ctl["head_rot"][:, 0] = yaw + k * 0.03 * sn(1, 2)[:, 0]
    ctl["head_rot"][:, 1] = subj.head_pitch + pitch_bias + k * 0.03 * sn(1, 3)[:, 0]
    ctl["head_rot"][:, 2] = subj.head_roll + k * 0.02 * sn(1, 5)[:, 0]
    ctl["head_rot"] += k * 0.006 * sn(3, 0.4)
    ctl["head_pos"] = k * 0.3 * sn(2, 6)
    ctl["head_pos"][:, 1] += 0.5 * e if lose else 0.0
    talk_frac = np.clip(subj.talkativeness * (0.85 if lose else 1.15) ** e, 0.05, 0.95)
    talking = random_segments(
        rng, t, mean_on=talk_frac * 8 * FPS, mean_off=(1 - talk_frac) * 8 * FPS
    )
    talking = box_smooth(talking.astype(float), 7)
    syll = np.abs(sn(1, 0.2)[:, 0])
    ctl["jaw"] = k * talking * (0.12 + 0.45 * syll) * energy
    ctl["head_rot"][:, 1] += k * talking * 0.02 * sn(1, 0.5)[:, 0]
    # blinks
    blink = np.zeros(t)
    for s in event_starts(rng, t, 1.0 / (rng.uniform(2.5, 6.0) * FPS)):
        prof = np.array([0.5, 1.0, 1.0, 0.6, 0.2])[: t - s]
        blink[s : s + len(prof)] = np.maximum(blink[s : s + len(prof)], prof)
    ctl["blink"] = np.stack([blink, blink], -1)
    ctl["gaze"] = 0.2 * sn(2, 1.5) + np.stack([(yaw - subj.head_yaw) * 0.8, np.zeros(t)], -1)
    # smiles: winners often, losers rarely; an effect above 1 also makes winners smile more
    # often (off-time / effect; at effect <= 1 the draws are exactly those of effect 1)
    rate = subj.smile_rate * (0.25 if lose else 1.0) ** e
    if rate > 0.02:
        off = 3 * FPS / rate * 4 / (1.0 if lose else max(1.0, e))
        smiling = random_segments(rng, t, mean_on=3 * FPS, mean_off=off)
        ctl["smile"] = box_smooth(smiling.astype(float), 11) * rng.uniform(0.4, 1.0)
    ctl["face_vis"][:] = 1.0

    # arms: rest styles (switching only inside idle gaps) + slow drift
    pref = np.asarray(subj.rest_pref)
    styles = [int(rng.choice(len(REST_STYLES), p=pref))]
    switch_at = [0]
    for (_, _, end), nxt in zip(clips, [c[1] for c in clips[1:]] + [t], strict=True):
        if nxt - end > 20 and rng.random() < 0.25:
            switch_at.append((end + nxt) // 2)
            styles.append(int(rng.choice(len(REST_STYLES), p=pref)))
    switch_at.append(t)
    for side in SIDES:
        keys = ("wrist", "axis", "normal", "curl", "spread", "pole")
        arrs = {key: np.zeros((t,) + CHANNELS[f"{key}_{side}"]) for key in keys}
        for i, style in enumerate(styles):
            rest = _rest_pose(REST_STYLES[style], side, subj, rng)
            for key in keys:
                arrs[key][switch_at[i] : switch_at[i + 1]] = rest[key]
        width = int(rng.integers(15, 25))
        for key in keys:
            arr = box_smooth(arrs[key], width)
            if key in ("axis", "normal", "pole"):
                arr = normalize(arr)
            ctl[f"{key}_{side}"] = arr
        ctl[f"wrist_{side}"] += k * energy * 0.7 * sn(3, 3)
        ctl[f"curl_{side}"] = np.clip(ctl[f"curl_{side}"] + k * 0.06 * sn(5, 2), 0, 1)
        ctl[f"hvis_{side}"][:] = 1.0
        ctl[f"avis_{side}"][:] = 1.0
    return ctl


# ---------------------------------------------------------------------------------------
# Arms, hands and rendering
# ---------------------------------------------------------------------------------------


def solve_arms(
    ctl: dict[str, np.ndarray], pose: BodyPose, subj: Subject
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(elbow, wrist) per side by IK from the shoulders to the wrist targets."""
    out = {}
    for i, side in enumerate(SIDES):
        out[side] = solve_arm(
            pose.shoulders[:, i],
            ctl[f"wrist_{side}"],
            ctl[f"pole_{side}"],
            subj.upper_arm,
            subj.forearm,
        )
    return out


#: Per-keypoint base confidence and jitter sd (px at 3.5 px/cm) of the 137 OpenPose points.
def _point_tables() -> tuple[np.ndarray, np.ndarray]:
    conf = np.zeros(137)
    sd = np.zeros(137)
    body_conf = {0: 0.88, 1: 0.86, 2: 0.8, 5: 0.8, 3: 0.72, 6: 0.72, 4: 0.66, 7: 0.66,
                 15: 0.84, 16: 0.84, 17: 0.68, 18: 0.68, 8: 0.3, 9: 0.25, 12: 0.25}  # fmt: skip
    body_sd = {0: 0.8, 1: 0.8, 2: 0.9, 5: 0.9, 3: 1.5, 6: 1.5, 4: 1.8, 7: 1.8,
               15: 0.7, 16: 0.7, 17: 1.0, 18: 1.0, 8: 4.0, 9: 4.0, 12: 4.0}  # fmt: skip
    for i, v in body_conf.items():
        conf[i] = v
        sd[i] = body_sd[i]
    conf[25:95] = 0.78
    conf[25:42] = 0.66  # jaw contour
    conf[93:95] = 0.72  # pupils
    sd[25:95] = 0.6
    sd[25:42] = 1.0
    for off in (95, 116):
        conf[off : off + 21] = 0.5
        conf[off] = 0.56
        conf[[off + 4, off + 8, off + 12, off + 16, off + 20]] = 0.4
        sd[off : off + 21] = 2.0
        sd[off] = 1.5
        sd[[off + 4, off + 8, off + 12, off + 16, off + 20]] = 2.5
    return conf, sd


BASE_CONF, JITTER_SD = _point_tables()
HAND_L = np.arange(95, 116)
HAND_R = np.arange(116, 137)
FACE = np.arange(25, 95)
#: z of the table's near edge (cm, the camera is at negative z): things below the table top and
#: behind this edge are under the table.
TABLE_EDGE_Z = -14.0
#: Hand points used to test whether a hand covers face landmarks (palm, knuckles, tips).
_OCCLUDERS = np.array([0, 2, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 19, 20])


def assemble_points(
    pose: BodyPose, arms: dict[str, tuple[np.ndarray, np.ndarray]], hands: dict[str, np.ndarray]
) -> np.ndarray:
    """(T, 137, 3) world positions of the OpenPose keypoints (legs placed below the hips)."""
    t = len(pose.neck)
    p = np.zeros((t, 137, 3))
    p[:, 0] = pose.nose
    p[:, 1] = pose.neck
    p[:, 2], p[:, 5] = pose.shoulders[:, 0], pose.shoulders[:, 1]
    p[:, 3], p[:, 4] = arms["r"]
    p[:, 6], p[:, 7] = arms["l"]
    p[:, 8], p[:, 9], p[:, 12] = pose.hips[:, 0], pose.hips[:, 1], pose.hips[:, 2]
    p[:, 10], p[:, 13] = p[:, 9] + [0, 5, -40], p[:, 12] + [0, 5, -40]
    p[:, 11], p[:, 14] = p[:, 10] + [0, 42, 0], p[:, 13] + [0, 42, 0]
    p[:, 15], p[:, 16] = pose.eyes[:, 0], pose.eyes[:, 1]
    p[:, 17], p[:, 18] = pose.ears[:, 0], pose.ears[:, 1]
    p[:, 25:95] = pose.face
    p[:, 95:116] = hands["l"]
    p[:, 116:137] = hands["r"]
    return p


def render(
    ctl: dict[str, np.ndarray],
    pose: BodyPose,
    pts: np.ndarray,
    subj: Subject,
    cam: Camera,
    rng: np.random.Generator,
    cfg: SynthConfig,
    xy: np.ndarray | None = None,
) -> np.ndarray:
    """(T, 411) OpenPose table (pixels, confidences, dropped points exactly 0). ``xy``: the
    clean projection ``cam.project(pts)`` when the caller already has it."""
    t = len(pts)
    vis = np.ones((t, 137))
    vis[:, [10, 11, 13, 14]] = 0.0
    vis[:, 19:25] = 0.0
    # hips seen through the table only sometimes, with low confidence
    hip_sig = smooth_noise(rng, t, 1, period=3 * FPS)[:, 0]
    hip_on = (
        hip_sig > np.quantile(hip_sig, 1.0 - cam.hip_visible)
        if cam.hip_visible > 0
        else hip_sig < -np.inf
    )
    vis[:, [8, 9, 12]] = hip_on[:, None] * 1.0
    # under the table (below its top, between its near edge and the body): hands hidden,
    # wrists / elbows guessed with low confidence
    below = (pts[..., 1] > subj.table_y + 2.0) & (pts[..., 2] > TABLE_EDGE_Z)
    hands_idx = np.concatenate([HAND_L, HAND_R])
    vis[:, hands_idx] *= ~below[:, hands_idx]
    for j in (3, 4, 6, 7):
        vis[:, j] *= np.where(below[:, j], 0.3, 1.0)
    # behind the body: hands behind the torso (z beyond the back) or behind the head
    behind = pts[..., 2] > pose.neck[:, None, 2] + 5.0
    vis[:, hands_idx] *= ~behind[:, hands_idx]
    for j in (4, 7):
        vis[:, j] *= np.where(behind[:, j], 0.35, 1.0)
    head_c = pose.pivot + np.array([0.0, -8.0, -2.0]) * pose.head_scale
    dxy = np.linalg.norm(pts[..., :2] - head_c[:, None, :2], axis=-1)
    behind_head = (pts[..., 2] > pose.pivot[:, None, 2] + 1.0) & (dxy < 9.5 * pose.head_scale)
    vis[:, hands_idx] *= ~behind_head[:, hands_idx]
    # face landmarks under a hand in front of the face
    face_pts = pts[:, FACE]
    face_c = face_pts.mean(1)
    for hidx in (HAND_L, HAND_R):
        hp = pts[:, hidx[_OCCLUDERS]]
        near = np.flatnonzero(
            (np.linalg.norm(hp.mean(1) - face_c, axis=-1) < 22.0)
            & (hp[..., 2].mean(1) < face_c[:, 2] + 1.0)
        )
        if len(near):
            d = np.linalg.norm(face_pts[near, :, None, :2] - hp[near, None, :, :2], axis=-1)
            occl = d.min(-1) < 1.6 * pose.head_scale
            vis[near[:, None], FACE[None, :]] *= np.where(occl, 0.04, 1.0)
    covered = (vis[:, FACE] < 0.5).mean(1)
    # whole face missed when much of it is covered, or with low face visibility
    face_gone = rng.random(t) < np.clip((covered - 0.25) * 2.0, 0, 1) * 0.5
    face_gone |= rng.random(t) < (1.0 - ctl["face_vis"]) * 0.5
    # far ear of a turned head, far jaw contour lower
    fwd = pose.head_rot[:, :, 2] * -1.0  # world direction of the face's -z
    yaw = np.arctan2(fwd[:, 0], -fwd[:, 2])
    vis[:, 18] *= 1.0 - np.clip((yaw - 0.25) / 0.3, 0, 1)
    vis[:, 17] *= 1.0 - np.clip((-yaw - 0.25) / 0.3, 0, 1)
    vis[:, 25:33] *= 1.0 - 0.5 * np.clip((-yaw - 0.3) / 0.4, 0, 1)[:, None]
    vis[:, 34:42] *= 1.0 - 0.5 * np.clip((yaw - 0.3) / 0.4, 0, 1)[:, None]
    vis[:, FACE] *= ctl["face_vis"][:, None] ** 0.3
    for side, hidx, wj, ej in (("r", HAND_R, 4, 3), ("l", HAND_L, 7, 6)):
        vis[:, hidx] *= ctl[f"hvis_{side}"][:, None]
        vis[:, [wj, ej]] *= np.clip(ctl[f"avis_{side}"], 0.0, 1.0)[:, None]

    xy = cam.project(pts) if xy is None else xy
    # confidences: base x video quality x slow / fast variation x visibility x motion blur
    conf = BASE_CONF * cam.quality * (1.0 + 0.06 * smooth_noise(rng, t, 137, period=12))
    conf = conf + rng.normal(0.0, 0.03, (t, 137))
    speed = np.zeros((t, 137))
    speed[1:] = np.linalg.norm(np.diff(xy, axis=0), axis=-1)
    blur = 1.0 / (1.0 + (speed / (7.0 * cam.scale / 3.5)) ** 2)
    conf[:, hands_idx] *= blur[:, hands_idx]
    conf[:, [4, 7]] *= np.sqrt(blur[:, [4, 7]])
    conf = np.clip(conf * vis, 0.0, 0.98)
    hip_conf = rng.uniform(0.1, 0.35)
    conf[:, [8, 9, 12]] = np.where(hip_on[:, None], hip_conf + rng.normal(0, 0.04, (t, 3)), 0.0)
    # jitter: white + a slow wobble, larger for hands and fingers, scaled with the subject
    sd = JITTER_SD * cfg.noise * cam.scale / 3.5
    xy = xy + rng.normal(0.0, 1.0, (t, 137, 2)) * sd[None, :, None]
    xy = xy + smooth_noise(rng, t, 137 * 2, period=6).reshape(t, 137, 2) * 0.5 * sd[None, :, None]
    if cfg.noise > 0:  # rare hand-detector glitches
        glitch = rng.random((t, 137)) < 0.0015 * cfg.noise
        glitch[:, :95] = False
        xy = xy + glitch[..., None] * rng.normal(0, 12 * cam.scale / 3.5, (t, 137, 2))

    # dropouts: short per-point bursts, long whole-hand and whole-face gaps
    drop = np.zeros((t, 137), dtype=bool)
    if cfg.dropout > 0:
        rate = np.full(137, 0.002)
        rate[hands_idx] = 0.01
        drop |= burst_mask(rng, (t, 137), rate * cfg.dropout, 4)
        for hidx in (HAND_L, HAND_R):
            for s in event_starts(rng, t, cfg.dropout / (20 * FPS)):
                drop[s : s + int(rng.integers(5, 61)), hidx] = True
        for s in event_starts(rng, t, cfg.dropout / (60 * FPS)):
            drop[s : s + int(rng.integers(5, 41)), FACE] = True
    drop[:, FACE] |= face_gone[:, None]
    out = (xy[..., 0] < 1.0) | (xy[..., 1] < 1.0)
    out |= (xy[..., 0] > cam.width - 1.0) | (xy[..., 1] > cam.height - 1.0)
    drop |= out | (conf < 0.05)
    table = np.zeros((t, 137, 3))
    table[..., :2] = xy
    table[..., 2] = np.maximum(conf, 0.05)
    table[drop] = 0.0
    return table.reshape(t, 411)


#: Stream tag of the hand-detector failures (:attr:`SynthConfig.hand_miss`):
#: ``(seed, HAND_MISS_STREAM, vid)``, apart from the video's other streams, so turning them
#: on leaves everything else in the table unchanged.
HAND_MISS_STREAM = 23
#: Length range (frames) of one hand-detector outage burst (0.4-2 s at 25 fps).
_MISS_BURST = (10, 50)
#: Confidence of the hand points that remain is scaled by U(0.3, 1.0), drawn per second.
_MISS_CONF = (0.3, 1.0)


def miss_hands(
    table: np.ndarray, seed: int, vid: str | int, hand_miss: tuple[float, float]
) -> np.ndarray:
    """The (T, 411) OpenPose ``table`` with OpenPose's hand-detector failures applied (a copy;
    ``table`` itself when ``hand_miss`` is (0, 0)).

    ``hand_miss = (video_share, frame_share)``: with probability ``video_share`` the video has
    no hand keypoints at all; otherwise each hand's 21 points are missing (exactly 0) in bursts
    of 10-50 frames whose Poisson rate covers ~``frame_share`` of the frames, and the points
    that remain get their confidence scaled by U(0.3, 1.0) per second (never below 0.05, the
    table's floor for a detected point). Body points (wrists and elbows included) are kept.
    """
    video_share, frame_share = (float(v) for v in hand_miss)
    if video_share == 0.0 and frame_share == 0.0:
        return table
    rng = np.random.default_rng([int(seed), HAND_MISS_STREAM, int(vid)])
    t = len(table)
    tab = table.reshape(t, 137, 3).copy()
    hands_idx = np.concatenate([HAND_L, HAND_R])
    if rng.random() < video_share:
        tab[:, hands_idx] = 0.0
        return tab.reshape(t, 411)
    lo, hi = _MISS_BURST
    mean_len = (lo + hi) / 2.0
    for hidx in (HAND_L, HAND_R):
        gone = np.zeros(t, dtype=bool)
        if frame_share >= 1.0:
            gone[:] = True
        elif frame_share > 0.0:
            # Poisson bursts of mean length L cover 1 - exp(-rate * L) of the frames
            rate = -np.log1p(-frame_share) / mean_len
            for start in event_starts(rng, t, rate):
                gone[start : start + int(rng.integers(lo, hi + 1))] = True
        seconds = int(np.ceil(t / FPS))
        scale = np.repeat(rng.uniform(*_MISS_CONF, size=seconds), int(FPS))[:t]
        block = tab[:, hidx]
        seen = block[..., 2] > 0
        block[..., 2] = np.where(seen, np.maximum(block[..., 2] * scale[:, None], 0.05), 0.0)
        block[gone] = 0.0
        tab[:, hidx] = block
    return tab.reshape(t, 411)


def generate_video(spec: VideoSpec, cfg: SynthConfig) -> VideoResult:
    """Generate one video (deterministic for ``(cfg.seed, spec.vid)``, independent of others)."""
    r_plan, r_idle, r_gest, r_render, r_cam = video_streams(cfg.seed, spec.vid)
    subj = sample_subject(cfg.seed, spec.subject_id)
    cam = sample_camera(r_cam, subj, cfg.frame_size)
    clips, t = plan_clips(r_plan, cfg, spec.emotion)
    ctl = idle_controls(t, subj, cam, r_idle, cfg, spec.emotion, clips)
    e = cfg.emotion_effect
    ctxs = []
    for cls, start, end in clips:
        amp = float(np.exp(r_gest.normal(0.0, 0.25))) * subj.expressiveness * cfg.amplitude
        if cls == 31:
            amp *= (0.85 if spec.emotion == 0 else 1.15) ** e
        side = subj.dominant if r_gest.random() < 0.75 else ("l" if subj.dominant == "r" else "r")
        n = end - start + 1
        ctxs.append(
            ClipCtx(
                cls=cls,
                start=start,
                end=end,
                ctl=ctl,
                subject=subj,
                rng=np.random.default_rng(r_gest.integers(2**63)),
                amp=amp,
                speed=float(r_gest.uniform(0.7, 1.4)),
                side=side,
                level=min(1.0, cfg.amplitude),
                emotion=spec.emotion,
                w=envelope(n, r_gest),
            )
        )
    apply_phase("body", ctxs)
    pose = pose_body(ctl, subj)
    for c in ctxs:
        c.pose = pose
    apply_phase("arms", ctxs)
    arms = solve_arms(ctl, pose, subj)
    if any(c.cls in (17, 21) for c in ctxs):
        for c in ctxs:
            c.arms = arms
        apply_phase("dependent", ctxs)
        arms = solve_arms(ctl, pose, subj)
    hands = {}
    for side in SIDES:
        ctl[f"curl_{side}"] = np.clip(ctl[f"curl_{side}"], 0.0, 1.0)
        hands[side] = hand_points(
            arms[side][1],
            ctl[f"axis_{side}"],
            ctl[f"normal_{side}"],
            ctl[f"curl_{side}"],
            ctl[f"spread_{side}"],
            side,
            subj.hand_scale,
        )
    pts = assemble_points(pose, arms, hands)
    xy = cam.project(pts)  # clean pixels: the table adds jitter to them, the RGB draws them
    table = render(ctl, pose, pts, subj, cam, r_render, cfg, xy=xy)
    table = miss_hands(table, cfg.seed, spec.vid, cfg.hand_miss)
    return VideoResult(
        spec=spec,
        table=table,
        clips=clips,
        points=pts,
        xy=xy,
        depth=cam.depth(pts),
        pose=pose,
        camera=cam,
        subject=subj,
        smile=ctl["smile"],
    )
