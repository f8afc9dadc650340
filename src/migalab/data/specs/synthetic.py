"""The synthetic iMiGUE stand-in (:mod:`migalab.synthetic`): generated on first use in the
MiGA 2025 release layout (same classes, folders, readers and label ids), with per-video win/lose
labels in ``emotion_labels.csv``."""

from dataclasses import replace

from migalab.data.specs.miga2025 import SPEC as MIGA2025

SPEC = replace(
    MIGA2025,
    name="synthetic",
    description="synthetic iMiGUE in the MiGA 2025 layout, generated from data.synthetic",
    generated=True,
)
