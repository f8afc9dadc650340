"""RGB rendering of a synthetic video: ``<vid>.mp4`` next to its OpenPose table.

:class:`VideoRenderer` draws the CLEAN geometry of :func:`~.sequence.generate_video` (the
keypoints before occlusion, jitter and dropouts) as a flat-shaded upper body with PIL, so the
RGB stream and the skeleton describe the same motion, frame for frame (mp4 frame i = table
row i, 25 fps): what the skeleton's noisy detections miss is still in the pixels.

What is drawn (OpenPose indices; face = 25 + iBUG index, hands 95 / 116 + OpenPose hand index):

* a per-video background (wall colour, a sponsor board of logo blocks, static texture, slight
  vignette) and a table across the frame at the subject's table height (its top surface band
  from the body-side edge to the near edge, then its front down to the frame bottom);
* torso (shirt polygon from the shoulders down to the hips, hidden by the table), open collar,
  neck;
* arms as thick lines (sleeve colour, short sleeves show skin forearms), hands as a palm
  polygon (wrist, thumb base, four knuckles) and five finger polylines (thumb -> pinky);
* head: ears, a face shape from the jaw contour (face 0-16) closed over the forehead and skull
  (points of the head model, rotated with the head), hair (cap, long hair behind the head for
  some subjects), brows (17-26), eyes (36-47, they close on blinks since the lids do), irises
  at the pupils (68, 69), nose (27-35), outer lips (48-59) in lip colour and the inner mouth
  (60-67) dark, so talking, mouth opening and lip biting show; a smile (the generator's smile
  control, :attr:`~.sequence.VideoResult.smile`) parts the lips by up to :data:`SMILE_PARTING`
  cm and shows the upper teeth, so it is visible at face sizes where the landmarks' few-mm
  corner lift is not (a 640x360 face is ~25 px wide).

Draw order per frame: arms whose hand is behind the back, torso, arms whose hand is under the
table (lap), table, arms whose hand is behind the head, head, the remaining arms; inside a
group the farther hand first. So a hand in front of the face covers it, a hand behind the head
is covered, and hands in the lap disappear under the table, as in the table's visibility.

Camera realism (from the render stream ``(seed, 17, vid)``, independent of the table's
streams): small brightness flicker and faint sensor noise. The subject's look (skin, hair,
shirt, sleeves, hair style) comes from ``(seed, 19, subject)``, the same in all its videos.

Frames are produced in chunks (:meth:`VideoRenderer.chunks`), so a video is never held whole
in memory; :func:`write_video_mp4` streams them into :class:`~migalab.data.video.writer.VideoWriter`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from migalab.synthetic.body import FACE_PIVOT
from migalab.synthetic.config import FPS, SynthConfig
from migalab.synthetic.sequence import TABLE_EDGE_Z, VideoResult
from migalab.synthetic.signals import smooth_noise

#: Stream tags of the render randomness: ``(seed, RENDER_STREAM, vid)`` per video (scene and
#: camera effects), ``(seed, LOOK_STREAM, subject)`` per subject (appearance).
RENDER_STREAM = 17
LOOK_STREAM = 19
#: Frames rendered per chunk (at most; see :data:`CHUNK_BYTES`).
CHUNK = 250
#: Chunks are also capped at this many bytes (a 1280x720 chunk is 24 frames).
CHUNK_BYTES = 64 * 2**20
#: Depth of the table top from its body-side edge toward the camera (cm).
TABLE_DEPTH = 70.0
#: Lip parting (cm, times the head scale) of a full smile (smile control 1); the upper teeth
#: fill the top 70 % of the opening.
SMILE_PARTING = 0.7
#: Teeth are drawn when the smile control exceeds this.
_TEETH_FROM = 0.1
_TEETH = (238, 236, 226)
#: Number of precomputed sensor-noise patterns cycled over the frames.
_NOISE_PATTERNS = 8

Color = tuple[int, int, int]

_SKIN = np.array([[255, 226, 200], [240, 196, 168], [225, 174, 140], [198, 138, 104],
                  [165, 108, 76], [124, 80, 56], [92, 60, 42]], float)  # fmt: skip
_HAIR = [(28, 24, 22), (58, 40, 28), (98, 68, 44), (186, 154, 104), (150, 146, 142),
         (132, 68, 38)]  # fmt: skip
_HAIR_P = np.array([0.32, 0.26, 0.16, 0.1, 0.1, 0.06])
_SHIRT = [(28, 38, 78), (26, 26, 30), (232, 232, 228), (116, 118, 124), (46, 88, 168),
          (168, 40, 46), (38, 98, 70), (146, 178, 212), (222, 192, 58), (96, 52, 120)]  # fmt: skip
_WALL = [(22, 42, 92), (88, 94, 102), (176, 178, 184), (66, 38, 98), (18, 78, 60),
         (28, 28, 34), (120, 24, 36), (206, 206, 200)]  # fmt: skip
_LOGO = [(240, 240, 236), (232, 196, 40), (200, 40, 44), (40, 120, 200), (30, 30, 34),
         (60, 170, 90)]  # fmt: skip
_TABLE = [((236, 236, 232), (206, 206, 204)), ((40, 62, 120), (28, 44, 92)),
          ((118, 124, 132), (88, 92, 100)), ((44, 44, 48), (30, 30, 34)),
          ((196, 44, 50), (150, 30, 36))]  # fmt: skip


#: Every drawn colour lies in [_LO, _HI], so sensor noise and flicker (at most +-_MARGIN
#: levels together) can be added modulo 256 (fast) without wrapping.
_LO, _HI, _MARGIN = 8, 247, 7


def _shade(c: tuple[float, ...] | np.ndarray, k: float) -> Color:
    """Colour ``c`` times ``k`` (clipped to the drawable range)."""
    return tuple(int(np.clip(round(v * k), _LO, _HI)) for v in c)  # type: ignore[return-value]


@dataclass(frozen=True)
class Look:
    """Appearance of one subject (RGB colours and hair / clothing style)."""

    skin: Color
    skin_shade: Color  # neck, fingers
    skin_dark: Color  # outlines, nostrils
    lip: Color
    hair: Color
    shirt: Color
    shirt_dark: Color
    long_sleeves: bool
    long_hair: bool
    hair_volume: float  # cm the hair stands off the skull
    hairline: float  # cm the hairline recedes (+) or comes down (-)
    iris: Color


def subject_look(seed: int, sid: int) -> Look:
    """The look of subject ``sid`` (its own stream ``(seed, LOOK_STREAM, sid)``)."""
    rng = np.random.default_rng([int(seed), LOOK_STREAM, int(sid)])
    pos = rng.uniform(0, len(_SKIN) - 1)
    i = min(int(pos), len(_SKIN) - 2)
    skin = _SKIN[i] + (pos - i) * (_SKIN[i + 1] - _SKIN[i])
    lip = skin * [0.86, 0.62, 0.62] + [22, 0, 4]
    hair = _HAIR[int(rng.choice(len(_HAIR), p=_HAIR_P))]
    shirt = _SHIRT[int(rng.integers(len(_SHIRT)))]
    iris = [(62, 40, 26), (40, 28, 20), (70, 96, 120), (80, 92, 60)][int(rng.integers(4))]
    return Look(
        skin=_shade(skin, 1.0),
        skin_shade=_shade(skin, 0.86),
        skin_dark=_shade(skin, 0.62),
        lip=_shade(lip, 1.0),
        hair=hair,
        shirt=shirt,
        shirt_dark=_shade(shirt, 0.55) if sum(shirt) > 150 else _shade(np.add(shirt, 45), 1.0),
        long_sleeves=bool(rng.random() < 0.6),
        long_hair=bool(rng.random() < 0.3),
        hair_volume=float(rng.uniform(0.3, 1.4)),
        hairline=float(rng.uniform(-0.8, 1.6)),
        iris=iris,
    )


def _background(
    rng: np.random.Generator, size: tuple[int, int], avoid: tuple[Color, ...]
) -> np.ndarray:
    """(H, W, 3) uint8 static background: wall (a colour unlike those in ``avoid``: shirt,
    hair), sponsor board of logo blocks, texture."""
    h, w = size
    walls = [c for c in _WALL if min(np.abs(np.subtract(c, x)).sum() for x in avoid) > 120]
    wall = walls[int(rng.integers(len(walls)))]
    img = Image.new("RGB", (w, h), wall)
    draw = ImageDraw.Draw(img)
    logos = rng.choice(len(_LOGO), size=2, replace=False)
    cols = [_LOGO[int(k)] for k in logos]
    cell_w = w * rng.uniform(0.14, 0.22)
    cell_h = cell_w * rng.uniform(0.45, 0.7)
    lw, lh = cell_w * rng.uniform(0.5, 0.7), cell_h * rng.uniform(0.3, 0.45)
    x0, y0 = rng.uniform(0, cell_w), rng.uniform(0, cell_h)
    for r in range(int(h / cell_h) + 3):
        off = (r % 2) * cell_w / 2
        for c in range(int(w / cell_w) + 3):
            cx = x0 + off + (c - 1) * cell_w
            cy = y0 + (r - 1) * cell_h
            col = cols[(r + c) % 2]
            draw.rectangle([cx - lw / 2, cy - lh / 2, cx + lw / 2, cy + lh / 2], fill=col)
            if (r + c) % 2 == 0:  # a "word" in the logo
                draw.rectangle(
                    [cx - lw / 3, cy - lh / 8, cx + lw / 3, cy + lh / 8], fill=_shade(wall, 1.0)
                )
    arr = np.asarray(img, dtype=np.float32)
    # soft board texture (blurred noise), fine grain and a slight vignette
    small = rng.normal(0.0, 1.0, (max(2, h // 8), max(2, w // 8))).astype(np.float32)
    tex = Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR)
    arr += 5.0 * np.asarray(tex)[..., None]
    arr += rng.normal(0.0, 1.2, (h, w, 1)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    arr *= (1.0 - 0.1 * r2)[..., None]
    out = Image.fromarray(np.clip(arr, _LO, _HI).astype(np.uint8))
    return np.asarray(out.filter(ImageFilter.SMOOTH))


def _head_points(res: VideoResult, local: np.ndarray) -> np.ndarray:
    """(T, K, 3) world positions of (K, 3) face-frame points (cm) on the posed head."""
    pose = res.pose
    rel = (np.asarray(local, float) - FACE_PIVOT) * pose.head_scale
    return pose.pivot[:, None, :] + np.einsum("tij,kj->tki", pose.head_rot, rel)


def _torso_offsets(res: VideoResult, base: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """(T, K, 3): ``base`` (T, 3) plus (K, 3) torso-frame offsets rotated with the torso."""
    return base[:, None, :] + np.einsum("tij,kj->tki", res.pose.torso_rot, np.asarray(offs, float))


def _skull_arc(radius: float, y_side: float, top: float, n: int) -> np.ndarray:
    """(n, 3) face-frame points over the head from its left side (+x, image right) to its
    right side (-x)."""
    a = np.linspace(0.0, np.pi, n)
    x = radius * np.cos(a)
    y = y_side - (y_side - top) * np.sin(a) ** 0.8
    z = 4.0 + 3.5 * np.cos(a) ** 2
    return np.stack([x, y, z], -1)


class VideoRenderer:
    """Renders the frames of one generated video (needs the clean geometry of ``res``).

    Args:
        res: a :class:`VideoResult` with its optional geometry fields filled (as
            :func:`~.sequence.generate_video` returns it).
        cfg: the release config (``frame_size``, ``video_scale``, ``seed``).
        supersample: draw at this multiple of the video size and downsample (anti-aliasing);
            default 2 for videos up to 640x360, else 1.
    """

    def __init__(self, res: VideoResult, cfg: SynthConfig, supersample: int | None = None) -> None:
        if any(
            v is None for v in (res.points, res.xy, res.depth, res.pose, res.camera, res.subject)
        ):
            raise ValueError("VideoRenderer needs a VideoResult with its clean geometry")
        self.size = cfg.video_size
        if supersample is None:
            supersample = 2 if self.size[0] * self.size[1] <= 640 * 360 else 1
        self.supersample = ss = max(1, int(supersample))
        h, w = self.size[0] * ss, self.size[1] * ss
        fh, fw = cfg.frame_size
        self.num_frames = t = len(res.table)
        cam, subj, pose = res.camera, res.subject, res.pose
        self.look = look = subject_look(cfg.seed, subj.sid)
        rng = np.random.default_rng([int(cfg.seed), RENDER_STREAM, int(res.spec.vid)])
        sxy = np.array([w / fw, h / fh])
        ppc = cam.scale * float(sxy.mean())  # canvas pixels per cm (at the neck's depth)

        def to_px(xy: np.ndarray) -> np.ndarray:
            return (xy + 0.5) * sxy - 0.5

        def px3(p: np.ndarray) -> np.ndarray:
            return to_px(cam.project(p))

        def width(cm: float) -> int:
            return max(1, int(round(cm * ppc)))

        hs = pose.head_scale
        k = subj.shoulder_width / 40.0
        pts = res.points
        xy = to_px(res.xy)

        # --- smile: parted lips and upper teeth (pixels) --------------------------------
        smile = np.zeros(t) if res.smile is None else np.clip(np.asarray(res.smile, float), 0, 1)
        xy = self._part_lips(xy, smile * SMILE_PARTING * hs * ppc)

        # --- extra points (world -> pixels) --------------------------------------------
        neck, sh = pose.neck, pose.shoulders
        extra: dict[str, np.ndarray] = {}
        rs, ls = sh[:, 0], sh[:, 1]
        side_pts = []
        for s, lat in ((rs, -1.0), (ls, 1.0)):
            side_pts.append(
                _torso_offsets(
                    res,
                    s,
                    [[lat * 4.0, 14.0 * k, 1.0], [lat * 4.6, 2.5, 1.0], [lat * 1.5, -2.8, 1.0]],
                )
            )
        hips_out = np.stack([pose.hips[:, 1] + [-3.0, 0, 0], pose.hips[:, 2] + [3.0, 0, 0]], 1)
        neck_sides = _torso_offsets(res, neck, [[-6.0 * hs, -0.8, 1.0], [6.0 * hs, -0.8, 1.0]])
        extra["torso"] = np.concatenate([
            hips_out[:, :1], side_pts[0], neck_sides, side_pts[1][:, ::-1], hips_out[:, 1:]
        ], 1)  # fmt: skip
        extra["collar"] = _torso_offsets(res, neck, [[-4.6 * hs, -1.0, -0.5],
                                                     [0.0, 6.5, -1.5], [4.6 * hs, -1.0, -0.5]])  # fmt: skip
        extra["neck"] = np.stack([neck + pose.torso_dir([0.0, 0.5, 0.0]), pose.pivot], 1)
        face_w = float(subj.face[16, 0] - subj.face[0, 0]) / 2.0
        radius = face_w * 1.03
        extra["skull"] = _head_points(res, _skull_arc(radius, 0.5, -9.5, 11))
        vol, hl = look.hair_volume, look.hairline
        outer = _skull_arc(radius + vol, 1.0 if not look.long_hair else 2.0, -9.5 - vol, 13)
        hx = np.array([-0.99 * radius, -0.93 * radius, -5.6, -3.0, 0.0, 3.0, 5.6, 0.93 * radius,
                       0.99 * radius])  # fmt: skip
        hy = np.array([1.0, -1.8, -4.2 + hl, -5.0 + hl, -5.3 + hl, -5.0 + hl, -4.2 + hl, -1.8, 1.0])
        if look.long_hair:
            hy[[0, -1]] = 2.0
        hz = 0.5 + 6.5 * (np.abs(hx) / radius) ** 2
        extra["hair"] = _head_points(res, np.concatenate([outer, np.stack([hx, hy, hz], -1)]))
        rh = radius + vol
        back = np.concatenate([[[rh, 13.0, 8.0]], outer, [[-rh, 13.0, 8.0], [-0.5 * rh, 13.5, 8.0],
                                                         [0.5 * rh, 13.5, 8.0]]])  # fmt: skip
        extra["hair_back"] = _head_points(res, back)
        ear_c = _head_points(res, [[-7.5 * face_w / 7.0, 2.7, 6.8], [7.5 * face_w / 7.0, 2.7, 6.8]])
        extra_names = list(extra)
        extra_px = {name: px3(v) for name, v in extra.items()}
        extra_names.append("teeth")
        extra_px["teeth"] = self._teeth
        # short sleeves end half way down the upper arm (in pixels)
        extra_names.append("sleeve_end")
        extra_px["sleeve_end"] = np.stack(
            [xy[:, 2] + 0.5 * (xy[:, 3] - xy[:, 2]), xy[:, 5] + 0.5 * (xy[:, 6] - xy[:, 5])], 1
        )
        offsets, allpx, n0 = {}, [xy], 137
        for name in extra_names:
            offsets[name] = n0
            allpx.append(extra_px[name])
            n0 += extra_px[name].shape[1]
        allpx_arr = np.concatenate(allpx, 1)

        def ex(name: str) -> list[int]:
            return list(range(offsets[name], offsets[name] + extra_px[name].shape[1]))

        f = 25  # face offset
        shapes: dict[str, list[int]] = {
            "torso": ex("torso"),
            "collar": ex("collar"),
            "neck": ex("neck"),
            "head": list(range(f, f + 17)) + ex("skull"),
            "hair": ex("hair"),
            "hair_back": ex("hair_back"),
            "brow_r": list(range(f + 17, f + 22)),
            "brow_l": list(range(f + 22, f + 27)),
            "eye_r": list(range(f + 36, f + 42)),
            "eye_l": list(range(f + 42, f + 48)),
            "nose": [f + 27, f + 31, f + 32, f + 33, f + 34, f + 35],
            "nostril": list(range(f + 31, f + 36)),
            "lips": list(range(f + 48, f + 60)),
            "mouth": list(range(f + 60, f + 68)),
            "teeth": ex("teeth"),
        }
        for side, (sj, ej, wj), off, si in (("r", (2, 3, 4), 116, 0), ("l", (5, 6, 7), 95, 1)):
            shapes[f"arm_{side}"] = [sj, ej, wj]
            shapes[f"upper_{side}"] = [sj, ej]
            shapes[f"sleeve_{side}"] = [sj, offsets["sleeve_end"] + si]
            shapes[f"palm_{side}"] = [off + j for j in (0, 1, 5, 9, 13, 17)]
            for fi, start in enumerate((1, 5, 9, 13, 17)):
                shapes[f"f{fi}_{side}"] = [off + start + j for j in range(4)]
        layout, self._sl = [], {}
        for name, idx in shapes.items():
            self._sl[name] = slice(2 * len(layout), 2 * (len(layout) + len(idx)))
            layout.extend(idx)
        self._pts = np.ascontiguousarray(allpx_arr[:, layout].reshape(t, -1), dtype=np.float32)

        # --- boxes: ears, irises, elbows ----------------------------------------------
        ear_px = px3(ear_c)
        head_rot = pose.head_rot
        fwd = -head_rot[:, :, 2]
        yaw = np.arctan2(fwd[:, 0], -fwd[:, 2])
        ear_rx = 1.3 * hs * ppc * np.clip(np.cos(yaw) * 0.6 + 0.4, 0.3, 1.0)
        ear_ry = np.full(t, 2.7 * hs * ppc)
        boxes = []
        for e in range(2):
            boxes.append(
                np.stack(
                    [
                        ear_px[:, e, 0] - ear_rx,
                        ear_px[:, e, 1] - ear_ry,
                        ear_px[:, e, 0] + ear_rx,
                        ear_px[:, e, 1] + ear_ry,
                    ],
                    -1,
                )
            )
        fxy = xy[:, 25:95]
        open_px = []
        for up, lo, pupil in (((37, 38), (40, 41), 68), ((43, 44), (46, 47), 69)):
            opening = fxy[:, list(lo), 1].mean(1) - fxy[:, list(up), 1].mean(1)
            open_px.append(opening)
            r = np.clip(np.minimum(0.6 * hs * ppc, 0.5 * opening), 0.35, None)
            c = fxy[:, pupil]
            boxes.append(np.stack([c[:, 0] - r, c[:, 1] - r, c[:, 0] + r, c[:, 1] + r], -1))
        self._elbow_r = width(10.0 * k) / 2.0
        for j in (3, 6):
            c = xy[:, j]
            boxes.append(np.concatenate([c - self._elbow_r + 0.5, c + self._elbow_r - 0.5], -1))
        # rounded fingertips (right hand 24:44, left hand 44:64)
        for off in (116, 95):
            for tip, cm in ((4, 2.0), (8, 1.7), (12, 1.7), (16, 1.7), (20, 1.7)):
                r = max(0.5, cm * subj.hand_scale * ppc / 2.0) - 0.5
                c = xy[:, off + tip]
                boxes.append(np.concatenate([c - r, c + r], -1))
        self._boxes = np.ascontiguousarray(np.stack(boxes, 1).reshape(t, -1), dtype=np.float32)
        open_full = 0.7 * hs * ppc
        self._flags = np.stack(
            [
                yaw > -0.4,  # right ear shown
                yaw < 0.4,  # left ear shown
                open_px[0] > 0.35 * open_full,  # right iris shown (eye open)
                open_px[1] > 0.35 * open_full,
                smile > _TEETH_FROM,  # teeth shown
            ],
            1,
        ).tolist()

        # --- draw order -------------------------------------------------------------
        face_c = pose.face.mean(1)
        keys = np.zeros((t, 5))  # arm_r, arm_l, torso, table, head
        keys[:, 2], keys[:, 3], keys[:, 4] = 10.0, 30.0, 50.0
        palm_depth = []
        for i, off in enumerate((116, 95)):
            pc = pts[:, off + np.array([0, 5, 9, 13, 17])].mean(1)
            behind_torso = pc[:, 2] > neck[:, 2] + 5.0
            under_table = (pc[:, 1] > subj.table_y + 2.0) & (pc[:, 2] > TABLE_EDGE_Z)
            behind_head = pc[:, 2] > face_c[:, 2] + 4.0 * hs
            keys[:, i] = np.select([behind_torso, under_table, behind_head], [0.0, 20.0, 40.0],
                                   60.0)  # fmt: skip
            palm_depth.append(res.depth[:, off + np.array([0, 5, 9, 13, 17])].mean(1))
        far_r = palm_depth[0] >= palm_depth[1]
        keys[:, 0] += np.where(far_r, 0.25, 0.5)
        keys[:, 1] += np.where(far_r, 0.5, 0.25)
        self._order = np.argsort(keys, axis=1, kind="stable").tolist()

        # --- table rows, widths, colours ------------------------------------------------
        far = px3(np.array([0.0, subj.table_y, TABLE_EDGE_Z]))[1]
        near = px3(np.array([0.0, subj.table_y, TABLE_EDGE_Z - TABLE_DEPTH]))[1]
        self._table_far = float(far)
        self._table_near = float(max(near, far + max(1.0, 0.6 * ppc)))
        self._canvas = (h, w)
        self._w = {
            "upper": width(10.0 * k),
            "fore": width(7.0 * k),
            "neck": width(11.0 * hs),
            "finger": width(1.7 * subj.hand_scale),
            "thumb": width(2.0 * subj.hand_scale),
            "brow": width(0.55 * hs),
            "nostril": width(0.3 * hs),
            "outline": max(1, int(round(0.3 * ppc))),
        }
        tables = [c for c in _TABLE if np.abs(np.subtract(c[0], look.shirt)).sum() > 120]
        top, front = tables[int(rng.integers(len(tables)))]
        self._table_cols = (top, front, _shade(front, 0.8))
        self._bg = Image.fromarray(_background(rng, (h, w), (look.shirt, look.hair)))

        # --- camera effects: brightness flicker (+-2 levels), faint sensor noise ------------
        flicker = 1.2 * smooth_noise(rng, t, 1, period=2 * FPS)[:, 0]
        flicker += 0.4 * rng.standard_normal(t)
        self._offset = np.clip(np.round(flicker), -3, 3).astype(int).tolist()
        self._noise_idx = rng.integers(0, _NOISE_PATTERNS, t).tolist()
        vh, vw = self.size
        lim = _MARGIN - 3
        self._noise = [  # signed noise stored modulo 256 (added with add_modulo)
            Image.fromarray(
                np.mod(
                    np.clip(
                        np.round(1.5 * rng.standard_normal((vh, vw, 3), dtype=np.float32)),
                        -lim,
                        lim,
                    ),
                    256,
                ).astype(np.uint8)
            )
            for _ in range(_NOISE_PATTERNS)
        ]

    def _part_lips(self, xy: np.ndarray, drop: np.ndarray) -> np.ndarray:
        """Canvas points with the lower lip (outer 55-59, inner 65-67) moved ``drop`` (T,)
        pixels down the face (eyes -> mouth); sets ``self._teeth`` (T, 8, 2), the upper
        teeth: the upper inner lip 60-64 and back at 70 % of the parting."""
        f = 25
        down = xy[:, f + 48 : f + 60].mean(1) - xy[:, f + 36 : f + 48].mean(1)
        down /= np.maximum(np.linalg.norm(down, axis=-1, keepdims=True), 1e-6)
        shift = drop[:, None] * down  # (T, 2)
        xy = xy.copy()
        lower = [f + i for i in (55, 56, 57, 58, 59, 65, 66, 67)]
        xy[:, lower] += shift[:, None, :]
        upper = xy[:, f + 60 : f + 65]  # corners and upper inner lip
        back = upper[:, 3:0:-1] + 0.7 * shift[:, None, :]
        self._teeth = np.concatenate([upper, back], 1)
        return xy

    def __len__(self) -> int:
        return self.num_frames

    @property
    def background(self) -> np.ndarray:
        """(H, W, 3) uint8 static background of this video at the video size (no camera
        effects): what a pixel shows where neither the subject nor the table is."""
        bg = self._bg.reduce(self.supersample) if self.supersample > 1 else self._bg
        return np.asarray(bg)

    @property
    def table_row(self) -> float:
        """Video pixel row of the table top's edge nearest the subject: below it the table
        covers whatever is behind it."""
        return (self._table_far + 0.5) / self.supersample - 0.5

    # ------------------------------------------------------------------------------------
    def _arm(self, d: ImageDraw.ImageDraw, p: list[float], b: list[float], side: str) -> None:
        lk, sl, w = self.look, self._sl, self._w
        o2 = 2 * w["outline"]
        arm, upper = p[sl[f"arm_{side}"]], p[sl[f"upper_{side}"]]
        if lk.long_sleeves:  # outlined, so the sleeve shows over the shirt
            e = b[16:20] if side == "r" else b[20:24]
            ring = [
                e[0] - w["outline"],
                e[1] - w["outline"],
                e[2] + w["outline"],
                e[3] + w["outline"],
            ]
            d.line(arm, fill=lk.shirt_dark, width=w["fore"] + o2, joint="curve")
            d.ellipse(ring, fill=lk.shirt_dark)
            d.line(upper, fill=lk.shirt_dark, width=w["upper"] + o2)
            d.line(arm, fill=lk.shirt, width=w["fore"], joint="curve")
            d.ellipse(e, fill=lk.shirt)
            d.line(upper, fill=lk.shirt, width=w["upper"])
        else:
            sleeve = p[sl[f"sleeve_{side}"]]
            d.line(arm, fill=lk.skin_dark, width=w["fore"] + o2, joint="curve")
            d.line(sleeve, fill=lk.shirt_dark, width=w["upper"] + o2)
            d.line(arm, fill=lk.skin, width=w["fore"], joint="curve")
            d.line(sleeve, fill=lk.shirt, width=w["upper"])
        d.polygon(p[sl[f"palm_{side}"]], fill=lk.skin, outline=lk.skin_dark)
        tips = 24 if side == "r" else 44
        d.line(p[sl[f"f0_{side}"]], fill=lk.skin_shade, width=w["thumb"], joint="curve")
        d.ellipse(b[tips : tips + 4], fill=lk.skin_shade)
        for fi in (1, 2, 3, 4):
            d.line(p[sl[f"f{fi}_{side}"]], fill=lk.skin_shade, width=w["finger"], joint="curve")
            d.ellipse(b[tips + 4 * fi : tips + 4 * fi + 4], fill=lk.skin_shade)

    def _torso(self, d: ImageDraw.ImageDraw, p: list[float]) -> None:
        lk, sl = self.look, self._sl
        d.polygon(p[sl["torso"]], fill=lk.shirt, outline=lk.shirt_dark)
        d.polygon(p[sl["collar"]], fill=lk.skin_shade)
        d.line(p[sl["neck"]], fill=lk.skin_shade, width=self._w["neck"])

    def _table(self, d: ImageDraw.ImageDraw) -> None:
        h, w = self._canvas
        top, front, edge = self._table_cols
        d.rectangle([0, self._table_far, w, self._table_near], fill=top)
        d.rectangle([0, self._table_near, w, h], fill=front)
        d.line([0, self._table_near, w, self._table_near], fill=edge, width=self._w["outline"])

    def _head(
        self, d: ImageDraw.ImageDraw, p: list[float], b: list[float], flags: list[bool]
    ) -> None:
        lk, sl, w = self.look, self._sl, self._w
        if lk.long_hair:
            d.polygon(p[sl["hair_back"]], fill=lk.hair)
        if flags[0]:
            d.ellipse(b[0:4], fill=lk.skin, outline=lk.skin_dark)
        if flags[1]:
            d.ellipse(b[4:8], fill=lk.skin, outline=lk.skin_dark)
        d.polygon(p[sl["head"]], fill=lk.skin, outline=lk.skin_dark)
        d.polygon(p[sl["hair"]], fill=lk.hair)
        d.line(p[sl["brow_r"]], fill=lk.hair, width=w["brow"])
        d.line(p[sl["brow_l"]], fill=lk.hair, width=w["brow"])
        d.polygon(p[sl["eye_r"]], fill=(236, 234, 228), outline=lk.skin_dark)
        d.polygon(p[sl["eye_l"]], fill=(236, 234, 228), outline=lk.skin_dark)
        if flags[2]:
            d.ellipse(b[8:12], fill=lk.iris)
        if flags[3]:
            d.ellipse(b[12:16], fill=lk.iris)
        d.polygon(p[sl["nose"]], fill=lk.skin_shade)
        d.line(p[sl["nostril"]], fill=lk.skin_dark, width=w["nostril"])
        d.polygon(p[sl["lips"]], fill=lk.lip)
        d.polygon(p[sl["mouth"]], fill=(58, 22, 26), outline=_shade(lk.lip, 0.7))
        if flags[4]:
            d.polygon(p[sl["teeth"]], fill=_TEETH)

    def draw(self, t: int) -> Image.Image:
        """Frame ``t`` as a clean PIL image at the video size (no camera effects)."""
        img = self._bg.copy()
        d = ImageDraw.Draw(img)
        p = self._pts[t].tolist()
        b = self._boxes[t].tolist()
        for item in self._order[t]:
            if item == 0:
                self._arm(d, p, b, "r")
            elif item == 1:
                self._arm(d, p, b, "l")
            elif item == 2:
                self._torso(d, p)
            elif item == 3:
                self._table(d)
            else:
                self._head(d, p, b, self._flags[t])
        if self.supersample > 1:
            img = img.reduce(self.supersample)
        return img

    def _render_into(self, t: int, out: np.ndarray) -> None:
        """Frame ``t`` with sensor noise and flicker into ``out`` (H, W, 3) uint8."""
        img = ImageChops.add_modulo(self.draw(t), self._noise[self._noise_idx[t]])
        out[...] = np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(out.shape)
        off = self._offset[t]
        if off > 0:
            out += np.uint8(off)
        elif off < 0:
            out -= np.uint8(-off)

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t`` as (H, W, 3) uint8 RGB, with sensor noise and brightness flicker."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} outside 0..{self.num_frames - 1}")
        out = np.empty((*self.size, 3), dtype=np.uint8)
        self._render_into(t, out)
        return out

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start..stop-1`` as (n, H, W, 3) uint8."""
        start, stop = max(0, start), min(stop, self.num_frames)
        out = np.empty((max(0, stop - start), *self.size, 3), dtype=np.uint8)
        for i, t in enumerate(range(start, stop)):
            self._render_into(t, out[i])
        return out

    def chunks(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        """All frames in order, as (n <= size, H, W, 3) uint8 chunks of at most
        :data:`CHUNK_BYTES` (so a long full-size video is never held in memory)."""
        size = max(1, min(size, CHUNK_BYTES // (self.size[0] * self.size[1] * 3)))
        for start in range(0, self.num_frames, size):
            yield self.frames(start, start + size)


def write_video_mp4(path: str | os.PathLike, res: VideoResult, cfg: SynthConfig) -> int:
    """Render ``res`` and write it to ``path`` (H.264, 25 fps, ``cfg.video_gop`` /
    ``cfg.video_crf``), streaming chunks (:meth:`VideoRenderer.chunks`); returns the frame
    count."""
    from migalab.data.video.writer import VideoWriter

    renderer = VideoRenderer(res, cfg)
    with VideoWriter(path, cfg.video_size, fps=FPS, gop=cfg.video_gop, crf=cfg.video_crf) as w:
        for chunk in renderer.chunks():
            w.write(chunk)
    if w.frames_written != len(res.table):
        raise RuntimeError(f"{path}: wrote {w.frames_written} frames for {len(res.table)} rows")
    return w.frames_written
