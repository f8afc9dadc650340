"""MiGA 2025 per-video release: ``<root>/<split>/<vid>/`` with ``<vid>_openpose.xlsx`` (or .csv), ``<vid>_label.csv`` and ``<vid>.mp4``; per-video emotion in ``<root>/emotion_labels.csv``.

The OpenPose table has no header; row i is frame i (0-based); 411 columns = 137 keypoints x
(x, y, confidence) in pixels. The label CSV has no header; rows ``class,start_frame,end_frame``
with 1-based class ids plus the code 99, 0-based inclusive frames. Clip ``<vid>_<row>``.

One module per file kind: :mod:`.tables` (OpenPose tables), :mod:`.labels` (clip labels),
:mod:`.emotion` (per-video emotion, labels and subjects), :mod:`.release` (the folder layout);
the package exports their public names.
"""

from migalab.data.formats.miga2025.emotion import (  # noqa: F401
    EMOTION_CODES,
    EMOTION_FILE,
    VIDEO_LABEL_CODES,
    read_emotion_labels,
    read_video_labels,
    read_video_subjects,
    write_emotion_labels,
)
from migalab.data.formats.miga2025.labels import (  # noqa: F401
    ILLUSTRATIVE_CODE,
    class_to_raw,
    raw_to_class,
    read_label_csv,
    write_label_csv,
)
from migalab.data.formats.miga2025.release import (  # noqa: F401
    SPLITS,
    ReleaseRoot,
    VideoFiles,
    find_videos,
    read_release,
    read_video_folder,
    release_roots,
    split_dir,
    split_dir_candidates,
    video_files,
)
from migalab.data.formats.miga2025.tables import (  # noqa: F401
    DEFAULT_IMG_SHAPE,
    NUM_COLUMNS,
    NUM_KEYPOINTS,
    column_letter,
    describe_column,
    read_openpose_table,
    write_openpose_table,
)

__all__ = [
    "DEFAULT_IMG_SHAPE",
    "EMOTION_CODES",
    "EMOTION_FILE",
    "ILLUSTRATIVE_CODE",
    "NUM_COLUMNS",
    "NUM_KEYPOINTS",
    "ReleaseRoot",
    "SPLITS",
    "VIDEO_LABEL_CODES",
    "VideoFiles",
    "class_to_raw",
    "column_letter",
    "describe_column",
    "find_videos",
    "raw_to_class",
    "read_emotion_labels",
    "read_label_csv",
    "read_openpose_table",
    "read_release",
    "read_video_folder",
    "read_video_labels",
    "read_video_subjects",
    "release_roots",
    "split_dir",
    "split_dir_candidates",
    "video_files",
    "write_emotion_labels",
    "write_label_csv",
    "write_openpose_table",
]
