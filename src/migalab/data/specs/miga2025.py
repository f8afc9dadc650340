"""MiGA 2025 (iMiGUE): per-video OpenPose-137 tables ``<vid>_openpose.xlsx|csv`` with
``<vid>_label.csv`` intervals, in ``train/ validate/ test/`` or the official archive layout
(:func:`migalab.data.formats.miga2025.split_dir_candidates`); labels 1..31 and 99 (illustrative)
-> 0-based classes 0..31."""

from migalab.data.classes import CLASS_NAMES
from migalab.data.formats.miga2025 import DEFAULT_IMG_SHAPE, EMOTION_FILE, class_to_raw
from migalab.data.prepare.release import is_cache_current, prepare_release
from migalab.data.specs.base import DatasetSpec

SPEC = DatasetSpec(
    name="miga2025",
    description="MiGA 2025 iMiGUE release: per-video 137-point OpenPose tables + label csv",
    class_names=CLASS_NAMES,
    prepare=prepare_release,
    is_current=is_cache_current,
    img_shape=DEFAULT_IMG_SHAPE,
    label_to_raw=class_to_raw,
    emotion_file=EMOTION_FILE,
)
