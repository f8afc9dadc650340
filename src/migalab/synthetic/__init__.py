"""Synthetic iMiGUE: seated interview subjects performing the 32 micro-gestures, written in
exactly the MiGA 2025 release layout (OpenPose-137 tables, label CSVs, emotion labels).

``generate_release(root, SynthConfig(...))`` writes the release; ``release_is_current`` tells
whether ``root`` already holds a finished release of that config; ``migalab-synth`` is the CLI.
See :mod:`.gestures` for what each class does and which keypoints carry its signal, and
:mod:`.sequence` for idle behaviour, occlusions, noise and dropouts.
"""

from migalab.data.classes import CLASS_NAMES
from migalab.synthetic.config import SynthConfig
from migalab.synthetic.release import (
    generate_release,
    plan_release,
    read_meta,
    read_subjects,
    release_is_current,
)
from migalab.synthetic.sequence import VideoSpec, generate_video

__all__ = [
    "CLASS_NAMES",
    "SynthConfig",
    "VideoSpec",
    "generate_release",
    "generate_video",
    "plan_release",
    "read_meta",
    "read_subjects",
    "release_is_current",
]
