"""Configuration of the synthetic iMiGUE release: :class:`SynthConfig`, class names and prior."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from migalab.data.classes import IMIGUE_TRAIN_FREQ_PERCENT, NUM_CLASSES

#: Bump when a code change alters the generated data; it is part of the config hash, so
#: ``release_is_current`` reports releases written by an older generator as stale.
GENERATOR_VERSION = 1

#: Bump when a change alters the rendered videos only (hashed when ``video`` is on, so
#: video-less releases stay current). 2: smiles part the lips and show teeth.
RENDER_VERSION = 2

#: Frames per second of the synthetic videos (iMiGUE interviews are 25 fps).
FPS = 25.0

SPLITS = ("train", "validate", "test")

#: Class frequencies (%) of the real iMiGUE train split (12,893 clips), 0-based classes.
IMIGUE_TRAIN_FREQ = np.array(IMIGUE_TRAIN_FREQ_PERCENT)

#: Classes a losing player does more often (face touching, self-soothing, withdrawing the head).
LOSER_CLASSES = (0, 3, 4, 5, 6, 7, 9, 10, 28)
#: Classes a winning player does more often (open talking gestures, lively shoulders, head up).
WINNER_CLASSES = (27, 30, 31)

#: Fields that do not change the generated files (left out of the config hash).
_NOT_HASHED = ("workers",)
#: Video fields: hashed only when ``video`` is on, so releases written without video before
#: these fields existed keep their hash (and stay current).
_VIDEO_FIELDS = ("video", "video_scale", "video_gop", "video_crf")
#: Fields hashed only when they differ from their default, so releases written before they
#: existed keep their hash (and stay current).
_HASHED_WHEN_SET = {"hand_miss": (0.0, 0.0)}


def _pair(value: Any, name: str, cast: type = int) -> tuple:
    try:
        lo, hi = (cast(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}") from None
    if lo > hi:
        raise ValueError(f"{name}: min {lo} > max {hi}")
    return lo, hi


@dataclass
class SynthConfig:
    """Everything that defines a synthetic iMiGUE release (same config -> same bytes).

    Sizes:
        seed: master seed; each subject and each video draws from its own stream derived from
            ``(seed, id)``, so videos are independent and can be generated in parallel.
        num_videos: videos per split (``train`` / ``validate`` / ``test``); 0 is allowed.
        clips_per_video: (min, max) labelled clips per video (uniform).
        clip_frames: (min, max) frames of one gesture clip; each class has its own typical length
            inside this range (deep breath long, shake shoulder short).
        gap_frames: (min, max) idle frames between clips (and before the first / after the last).
        min_video_frames: pad each video with idle frames (spread over its gaps) up to at least
            this many frames; iMiGUE interviews are several thousand frames (use 9000 for the
            reading benchmark).
        table_format: ``"xlsx"`` (the release format) or ``"csv"`` (same table, 10x faster), or
            ``"light"``: the MiGA 2024-26 35-joint ``<vid>_light_hand.csv`` tables.
        frame_size: (height, width) of the frames in pixels.

    Labels:
        tail_mix: class prior = ``(1 - tail_mix) * iMiGUE train frequencies + tail_mix * uniform``.
            iMiGUE's long tail is kept (illustrative, shake shoulder and bite lip dominate) while the
            rarest classes (put arm back 0.01 %, bite nails 0.02 %) are still present: with the
            default 0.3 every class has a prior of at least ~0.94 %.
        clip_classes: when given, every video holds exactly these clips, in this order (overrides
            ``clips_per_video`` and the prior); for tests and demos.
        emotion_effect: strength of the win/lose behaviour shift (0 = emotion leaves no trace).
            Losers slump (torso lean +0.04 rad, head pitched down and lowered), smile and talk
            less and do more face touching / turtle neck / bite lip (those classes' prior
            x ``1 + 0.3 * effect``, x ``1 - 0.3 * effect`` for winners); winners sit more
            upright, smile, gesture more and wider (illustrative, head up and shake shoulder
            take the opposite share). The shifts are symmetric, so averaged over a balanced split the
            class prior is the one above.

    Difficulty:
        amplitude: scale of every gesture's displacement (1.0 = the documented magnitudes, e.g.
            a hand reaching the chin, a 2-4 cm shrug, a 0.2-0.4 rad head raise); below 1 hands
            also stop short of their targets (they go ``amplitude`` of the way). Each clip draws
            its own amplitude (log-normal, sd 0.25, times the subject's expressiveness) and speed
            (0.7-1.4x).
        noise: per-keypoint Gaussian jitter scale. 1.0 = sd 0.8 px for body points, 0.6 px face,
            1.5-2.5 px for hand points (wrist -> fingertips), for a subject at 3.5 px/cm; it
            scales with the subject's size in the frame.
        dropout: scale of the random keypoint dropouts (1.0 = per-point short dropouts at
            0.2 %/frame for body and face and 1 %/frame for hand points, lasting 1-4 frames,
            whole-hand dropouts ~ every 20 s per hand lasting 0.2-2.4 s, whole-face dropouts
            ~ every 60 s lasting 0.2-1.6 s). Geometric occlusions (hands under the table or
            behind the back, hands over the face, the far ear of a turned head) and out-of-frame
            points are always applied.
        idle: scale of the idle motion (postural sway, head turns and micro-motion, talking,
            hand drift); breathing (1-2 px) is always there.
        videos_per_subject: mean videos per subject (players); subjects never cross splits.
        hand_miss: ``(video_share, frame_share)`` of OpenPose's hand detector failing, on top of
            ``dropout``: in ``video_share`` of the videos no hand keypoint is found at all (small,
            blurred hands of a wide interview shot), in the others each hand's keypoints are
            missing in bursts (0.4-2 s) covering ~``frame_share`` of the frames, and the hand
            points that remain have their confidence scaled by 0.3-1.0 per burst. The body's
            wrists and elbows stay, and the RGB video still shows the hands and fingers, so part
            of the evidence is only in the video. (0, 0), the default, changes nothing (the
            tables are byte-identical to a release written before this field existed).

    Video (``migalab-synth --video``):
        video: also render every video as ``<vid>.mp4`` (H.264, 25 fps) next to its table: an
            upper-body drawing (torso, arms, hands with fingers, face with eyes, brows, nose,
            lips and jaw, hair, table) of the same clean skeleton sequence, frame i = table
            row i (see :mod:`migalab.synthetic.video`). Off by default; the ``video*``
            fields enter the config hash only when it is on.
        video_scale: mp4 size = ``frame_size`` x this, each side rounded to an even number
            (0.25 of 1280x720 = 320x180, the fast default; 1.0 = full size).
        video_gop: keyframe interval in frames (250 = 10 s, like a broadcast interview).
        video_crf: x264 constant rate factor (0-51; 18 visually lossless, 23 default).

    Runtime:
        workers: processes generating videos in parallel (not part of the config hash).
    """

    seed: int = 0
    num_videos: dict[str, int] = field(
        default_factory=lambda: {"train": 40, "validate": 10, "test": 10}
    )
    clips_per_video: tuple[int, int] = (25, 45)
    clip_frames: tuple[int, int] = (16, 100)
    gap_frames: tuple[int, int] = (8, 50)
    min_video_frames: int = 0
    table_format: str = "xlsx"
    frame_size: tuple[int, int] = (720, 1280)
    tail_mix: float = 0.3
    clip_classes: tuple[int, ...] | None = None
    emotion_effect: float = 1.0
    amplitude: float = 1.0
    noise: float = 1.0
    dropout: float = 1.0
    idle: float = 1.0
    videos_per_subject: float = 1.5
    hand_miss: tuple[float, float] = (0.0, 0.0)
    video: bool = False
    video_scale: float = 0.25
    video_gop: int = 250
    video_crf: int = 23
    workers: int = 1

    def __post_init__(self) -> None:
        self.seed = int(self.seed)
        nv = dict(self.num_videos)
        unknown = set(nv) - set(SPLITS)
        if unknown:
            raise ValueError(f"num_videos: unknown splits {sorted(unknown)} (use {SPLITS})")
        self.num_videos = {s: int(nv.get(s, 0)) for s in SPLITS}
        if any(n < 0 for n in self.num_videos.values()):
            raise ValueError(f"num_videos must be >= 0, got {self.num_videos}")
        if sum(self.num_videos.values()) > 9999:
            raise ValueError("at most 9999 videos (4-digit ids)")
        self.clips_per_video = _pair(self.clips_per_video, "clips_per_video")
        self.clip_frames = _pair(self.clip_frames, "clip_frames")
        self.gap_frames = _pair(self.gap_frames, "gap_frames")
        self.frame_size = _pair(self.frame_size, "frame_size")
        self.frame_size = (int(self.frame_size[0]), int(self.frame_size[1]))
        if self.clips_per_video[0] < 1 and self.clip_classes is None:
            raise ValueError("clips_per_video must be >= 1")
        if self.clip_frames[0] < 4:
            raise ValueError("clip_frames min must be >= 4")
        if self.gap_frames[0] < 0:
            raise ValueError("gap_frames must be >= 0")
        if min(self.frame_size) < 64:
            raise ValueError(f"frame_size too small: {self.frame_size}")
        self.min_video_frames = int(self.min_video_frames)
        if self.table_format not in ("xlsx", "csv", "light"):
            raise ValueError(
                f"table_format must be 'xlsx', 'csv' or 'light', got {self.table_format!r}"
            )
        if not 0.0 <= self.tail_mix <= 1.0:
            raise ValueError(f"tail_mix must be in [0, 1], got {self.tail_mix}")
        if self.clip_classes is not None:
            self.clip_classes = tuple(int(c) for c in self.clip_classes)
            if not self.clip_classes:
                raise ValueError("clip_classes must not be empty")
            bad = [c for c in self.clip_classes if not 0 <= c < NUM_CLASSES]
            if bad:
                raise ValueError(f"clip_classes outside 0..{NUM_CLASSES - 1}: {bad}")
        for name in ("emotion_effect", "amplitude", "noise", "dropout", "idle"):
            value = float(getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, value)
        if self.videos_per_subject < 1:
            raise ValueError("videos_per_subject must be >= 1")
        self.videos_per_subject = float(self.videos_per_subject)
        try:
            self.hand_miss = tuple(float(v) for v in self.hand_miss)
        except (TypeError, ValueError):
            raise ValueError(
                f"hand_miss must be (video_share, frame_share), got {self.hand_miss!r}"
            ) from None
        if len(self.hand_miss) != 2 or not all(0.0 <= v <= 1.0 for v in self.hand_miss):
            raise ValueError(f"hand_miss shares must be in [0, 1], got {self.hand_miss}")
        self.tail_mix = float(self.tail_mix)
        self.video = bool(self.video)
        self.video_scale = float(self.video_scale)
        if not 0.0 < self.video_scale <= 4.0:
            raise ValueError(f"video_scale must be in (0, 4], got {self.video_scale}")
        if min(self.video_size) < 16:
            raise ValueError(
                f"video_scale {self.video_scale} makes the video too small: {self.video_size}"
            )
        self.video_gop = int(self.video_gop)
        if self.video_gop < 1:
            raise ValueError(f"video_gop must be >= 1, got {self.video_gop}")
        self.video_crf = int(self.video_crf)
        if not 0 <= self.video_crf <= 51:
            raise ValueError(f"video_crf must be in [0, 51], got {self.video_crf}")
        self.workers = max(1, int(self.workers))

    @property
    def video_size(self) -> tuple[int, int]:
        """(height, width) of the mp4 frames: ``frame_size * video_scale``, rounded to even."""
        h, w = self.frame_size
        return (
            max(2, 2 * int(round(h * self.video_scale / 2.0))),
            max(2, 2 * int(round(w * self.video_scale / 2.0))),
        )

    # ------------------------------------------------------------------------------------
    def class_prior(self, emotion: int | None = None) -> np.ndarray:
        """(32,) class probabilities for one clip draw.

        ``emotion=None`` gives the base prior ``(1 - tail_mix) * freq + tail_mix / 32``;
        ``0`` (lose) / ``1`` (win) give the emotion-shifted priors, whose average is the base.
        """
        freq = IMIGUE_TRAIN_FREQ / IMIGUE_TRAIN_FREQ.sum()
        prior = (1.0 - self.tail_mix) * freq + self.tail_mix / NUM_CLASSES
        if emotion is None or self.emotion_effect == 0:
            return prior
        delta = np.zeros(NUM_CLASSES)
        lose = list(LOSER_CLASSES)
        win = list(WINNER_CLASSES)
        delta[lose] = 0.3
        # winners' classes go down for losers by the same probability mass (zero-sum shift)
        delta[win] = -0.3 * prior[lose].sum() / prior[win].sum()
        delta *= min(self.emotion_effect, 1.0 / np.abs(delta).max() * 0.95)
        sign = 1.0 if emotion == 0 else -1.0
        p = prior * (1.0 + sign * delta)
        return p / p.sum()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields."""
        d = dataclasses.asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    def config_hash(self) -> str:
        """SHA-256 (16 hex) of the fields that affect the output, plus the generator version.

        The ``video*`` fields are left out when ``video`` is off (the tables do not depend on
        them), so a release written before they existed keeps its hash.
        """
        skip = set(_NOT_HASHED) | (set() if self.video else set(_VIDEO_FIELDS))
        skip |= {k for k, default in _HASHED_WHEN_SET.items() if getattr(self, k) == default}
        d = {k: v for k, v in self.to_dict().items() if k not in skip}
        d["generator_version"] = GENERATOR_VERSION
        if self.video:
            d["render_version"] = RENDER_VERSION
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown SynthConfig fields {sorted(unknown)}")
        return cls(**d)
