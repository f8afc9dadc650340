"""Readers (and writers) for the iMiGUE / MiGA release formats, all producing ``ClipRecord``.

- :mod:`.miga2025`: per-video xlsx/csv tables + label CSVs (+ ``emotion_labels.csv``).
- :mod:`.npy2023`: the 2023/24 ``<split>_data.npy`` + ``<split>_label.pkl``.
- :mod:`.pyskl`: the pyskl / PoseC3D annotation pickle.

Malformed input raises :class:`FormatError` (a ``ValueError``) naming the file and row.
"""

from migalab.data.formats.errors import FormatError

__all__ = ["FormatError"]
