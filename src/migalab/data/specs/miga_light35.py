"""MiGA 2024-2026 releases: per-video 35-joint tables ``<vid>_light_hand.csv`` (or
``_light.csv``) with the 2025 label files and folders. Prepare reads them into the 137-point
cache (joints at their OpenPose positions, :mod:`migalab.data.formats.light35`); use
``data.layout=light35`` to train on exactly the released joints."""

from dataclasses import replace

from migalab.data.specs.miga2025 import SPEC as MIGA2025

SPEC = replace(
    MIGA2025,
    name="miga_light35",
    description="MiGA 2024-26 iMiGUE release: per-video 35-joint _light_hand.csv tables",
)
