"""Preparation: a release -> the skeleton cache (:mod:`migalab.data.cache`), done once.

* :mod:`~migalab.data.prepare.release`: per-video table releases (MiGA 2025, the 35-joint tables);
* :mod:`~migalab.data.prepare.clip_release`: clip-level releases (MiGA 2023 npy, pyskl pickles);
* :mod:`~migalab.data.prepare.result`: the report of a run;
* :mod:`~migalab.data.prepare.pipeline`: everything a datamodule prepares (synthetic release,
  cache, person-cropped video clips);
* :mod:`~migalab.data.prepare.cli`: ``migalab-prepare``.
"""

from migalab.data.prepare.cli import main
from migalab.data.prepare.release import (
    COORD_TOLERANCE,
    DTYPES,
    LABELLED_SPLITS,
    check_coordinates,
    convert_video,
    is_cache_current,
    prepare_release,
    source_fingerprint,
)
from migalab.data.prepare.result import REPORT_FILE, PrepareError, PrepareResult

__all__ = [
    "COORD_TOLERANCE",
    "DTYPES",
    "LABELLED_SPLITS",
    "REPORT_FILE",
    "PrepareError",
    "PrepareResult",
    "check_coordinates",
    "convert_video",
    "is_cache_current",
    "main",
    "prepare_release",
    "source_fingerprint",
]
