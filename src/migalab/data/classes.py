"""The 32 iMiGUE micro-gesture classes (0-based ids; 31 is the release code 99)."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = (
    "turtle neck",
    "deep breath",
    "touch hat",
    "touch face",
    "touch forehead",
    "cover face",
    "rub eyes",
    "touch other face part",
    "touch ears",
    "bite nails",
    "touch chin",
    "touch neck",
    "play hair",
    "adjust tie",
    "touch chest",
    "scratch back",
    "fold arm",
    "tidy sleeve",
    "put arm back",
    "move torso",
    "sit straight",
    "scratch arm",
    "rub hand",
    "cross finger",
    "minaret hand",
    "play things",
    "withdraw arms",
    "head up",
    "bite lip",
    "arm akimbo",
    "shake shoulder",
    "illustrative",
)

#: Share (%) of each class in the real iMiGUE train split (12,893 clips), from DESIGN.md.
IMIGUE_TRAIN_FREQ_PERCENT: tuple[float, ...] = (
    0.08, 3.05, 0.29, 1.54, 0.62, 0.18, 0.44, 6.39, 0.62, 0.02, 2.20, 1.06, 0.75, 0.32, 0.20, 0.19,
    2.36, 0.64, 0.01, 6.88, 1.22, 2.79, 5.09, 5.35, 0.09, 2.17, 0.65, 0.47, 8.96, 0.05, 16.13, 29.20,
)  # fmt: skip

NUM_CLASSES = len(CLASS_NAMES)
