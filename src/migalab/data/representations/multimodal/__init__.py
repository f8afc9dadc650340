"""Multimodal clip samples (System B): skeleton streams and RGB frames of the same instants.

One :class:`MultiModalPipeline` call turns a :class:`ClipRecord` into
``{"x": {"rgb": (3, T_v, S, S), "joint": (3, T, V, M), "bone": ..., "present": {"rgb": bool}}}``:

1. ``ValidateClip -> SelectLayout -> [InterpolateMissing]`` (the skeleton pipelines' head);
2. the upper-body person box of the whole clip (:func:`clip_person_box`, keypoint pixels);
3. ``UniformSample``: T frame indices over the clip, random per segment in training; the
   skeleton keeps them all and the video decodes every k-th (``k = T / T_v``), so RGB frame i
   is skeleton frame ``i * k``: the same instant (``k = 1`` gives frame i = frame i);
4. skeleton: ``NormalizeSkeleton -> [RandomFlip -> RandomAffine] -> [ToBone] -> [ToMotion] ->
   FormatGCNInput`` per stream, from one sampled, augmented record (the streams share frames and
   augmentation);
5. RGB: frames from a :class:`VideoSource` (the prepared person-cropped clip, or the long
   ``<vid>.mp4``: crop the box scaled to the video's size) -> :class:`VideoClipTransform`
   (random-resized crop inside the box + flip exactly when the skeleton was flipped, in
   training; Kinetics normalisation: in the worker with ``video.normalize=loader``; with
   ``device``, the default, ``x["rgb"]`` leaves the loader as uint8 and
   :meth:`MultiModalRepresentation.on_after_batch_transfer` normalises the batch on the
   training device, the same values).
6. face (emotion stream): the clip's prepared face crops (a per-frame face track from the
   skeleton's face keypoints, :mod:`migalab.data.video.faces`, cropped once by
   :meth:`MultiModalRepresentation.prepare`) at every ``k_f``-th sampled frame
   (``k_f = T / T_f``, so face frame i = skeleton frame ``i * k_f``), mirrored when the skeleton
   was flipped: ``x["face"]`` (T_f, 3, S_f, S_f) **uint8** RGB (0-255, not normalised: the face
   encoder normalises, SwinFace ``(x / 255 - 0.5) / 0.5``), ``x["face_visible"]`` (T_f,) bool
   (the skeleton showed a face in that frame; other frames hold the interpolated box's pixels)
   and ``present["face"]`` (any frame visible).

A clip whose video could not be prepared (``video.on_error=skip``) gets an all-zero RGB input
and ``present["rgb"] = False``; fusion blocks mask it (see
:class:`migalab.models.fusion.CrossModalTokenFusion`). Likewise for faces
(``face.on_error=skip``): zero crops, ``face_visible`` all False, ``present["face"] = False``.

One module per theme: :mod:`.options` (``data.video`` / ``data.face`` settings),
:mod:`.pipeline` (one sample), :mod:`.crop_jobs` (what ``prepare_data`` writes),
:mod:`.representation` (what the datamodule uses); the package exports their public names.
"""

from migalab.data.representations.multimodal.crop_jobs import (  # noqa: F401
    build_clip_jobs,
    build_face_jobs,
    clip_face_track,
    clip_person_box,
)
from migalab.data.representations.multimodal.options import (  # noqa: F401
    RGB_NORMALIZE,
    VIDEO_SOURCES,
    FaceOptions,
    VideoOptions,
    video_options,
)
from migalab.data.representations.multimodal.pipeline import (  # noqa: F401
    MODALITIES,
    MultiModalPipeline,
    VideoSource,
)
from migalab.data.representations.multimodal.representation import (  # noqa: F401
    MultiModalRepresentation,
)

__all__ = [
    "FaceOptions",
    "MODALITIES",
    "MultiModalPipeline",
    "MultiModalRepresentation",
    "RGB_NORMALIZE",
    "VIDEO_SOURCES",
    "VideoOptions",
    "VideoSource",
    "build_clip_jobs",
    "build_face_jobs",
    "clip_face_track",
    "clip_person_box",
    "video_options",
]
