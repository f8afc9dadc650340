"""MediaPipe Holistic landmarks -> the suite's 137-point OpenPose layout (BODY_25 + 70 face +
21 left hand + 21 right hand; x, y in pixels, confidence; missing = (0, 0, 0)).

Imports NumPy only: the pose worker runs it inside its own environment (``make pose-env``),
where migalab's other dependencies are not installed.

What is exact and what is approximated:

* **Body**: 21 of the 25 BODY_25 points are MediaPipe Pose points of the same body part (nose,
  shoulders, elbows, wrists, hips, knees, ankles, eyes, ears, heels, big toes = foot index);
  confidence = MediaPipe's ``visibility``. ``Neck`` and ``MidHip`` (no MediaPipe point) are the
  midpoints of the shoulders / hips, with the smaller visibility of the two. The small toes have
  no counterpart: missing. MediaPipe's eye points are eye centres; OpenPose's too.
* **Face**: OpenPose's 68 face points follow the iBUG-68 scheme (jaw, brows, nose, eyes, lips);
  MediaPipe's face mesh (468 points + 10 iris points) is a different, denser model. Each of the
  68 is taken from the mesh vertex at the corresponding place (:data:`FACE68_FROM_MESH`, the
  common correspondence); jaw points are approximate (the mesh's outline follows the face's
  silhouette, iBUG's the jaw bone), the rest are close. Pupils (68, 69) = the iris centres
  (mesh 468, 473). Confidence 1 for a detected face (the mesh has no per-point scores).
* **Hands**: MediaPipe's 21 hand points are OpenPose's 21 in the same order (wrist, then thumb,
  index, middle, ring, little finger from base to tip); confidence 1 for a detected hand.

Sides are the person's: OpenPose "R" and MediaPipe "right" are both the subject's right.
"""

from __future__ import annotations

import numpy as np

NUM_POINTS = 137
FACE_OFFSET, LHAND_OFFSET, RHAND_OFFSET = 25, 95, 116

#: BODY_25 index -> MediaPipe Pose index, a pair (midpoint) or None (missing)
BODY_FROM_POSE: tuple[int | tuple[int, int] | None, ...] = (
    0,  # 0 nose
    (11, 12),  # 1 neck = mid-shoulders
    12,
    14,
    16,  # 2-4 right shoulder, elbow, wrist
    11,
    13,
    15,  # 5-7 left shoulder, elbow, wrist
    (23, 24),  # 8 mid-hip
    24,
    26,
    28,  # 9-11 right hip, knee, ankle
    23,
    25,
    27,  # 12-14 left hip, knee, ankle
    5,
    2,  # 15 right eye, 16 left eye
    8,
    7,  # 17 right ear, 18 left ear
    31,
    None,
    29,  # 19 left big toe, 20 left small toe, 21 left heel
    32,
    None,
    30,  # 22 right big toe, 23 right small toe, 24 right heel
)

#: iBUG-68 face point -> MediaPipe face-mesh vertex
FACE68_FROM_MESH: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,  # jaw
    71, 63, 105, 66, 107,  # right brow (outer to inner)
    336, 296, 334, 293, 301,  # left brow (inner to outer)
    168, 197, 5, 4,  # nose bridge
    75, 97, 2, 326, 305,  # nostrils
    33, 160, 158, 133, 153, 144,  # right eye
    362, 385, 387, 263, 373, 380,  # left eye
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips
)  # fmt: skip
#: iris centres (MediaPipe's refined face mesh): right pupil, left pupil
PUPILS_FROM_MESH = (468, 473)


def _xy(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    return landmarks[..., :2] * np.array([width, height], dtype=np.float64)


def to_openpose137(
    pose: np.ndarray | None,
    face: np.ndarray | None,
    left_hand: np.ndarray | None,
    right_hand: np.ndarray | None,
    width: int,
    height: int,
) -> np.ndarray:
    """One frame's (137, 3) OpenPose keypoints from MediaPipe Holistic's normalised landmarks.

    Args:
        pose: (33, 4) x, y, z, visibility (None: no body found).
        face: (468 or 478, 3) x, y, z of the face mesh (None: no face); the pupils need the 478
            of ``refine_face_landmarks``.
        left_hand, right_hand: (21, 3) x, y, z (None: not found); the person's left / right.
        width, height: the frame size in pixels.
    """
    out = np.zeros((NUM_POINTS, 3), dtype=np.float32)
    if pose is not None:
        xy = _xy(pose, width, height)
        vis = np.clip(pose[:, 3], 0.0, 1.0)
        for j, src in enumerate(BODY_FROM_POSE):
            if src is None:
                continue
            if isinstance(src, tuple):
                out[j, :2] = xy[list(src)].mean(0)
                out[j, 2] = vis[list(src)].min()
            else:
                out[j, :2], out[j, 2] = xy[src], vis[src]
    if face is not None:
        xy = _xy(face, width, height)
        out[FACE_OFFSET : FACE_OFFSET + 68, :2] = xy[list(FACE68_FROM_MESH)]
        out[FACE_OFFSET : FACE_OFFSET + 68, 2] = 1.0
        if len(face) > max(PUPILS_FROM_MESH):
            out[FACE_OFFSET + 68 : FACE_OFFSET + 70, :2] = xy[list(PUPILS_FROM_MESH)]
            out[FACE_OFFSET + 68 : FACE_OFFSET + 70, 2] = 1.0
    for offset, hand in ((LHAND_OFFSET, left_hand), (RHAND_OFFSET, right_hand)):
        if hand is not None:
            out[offset : offset + 21, :2] = _xy(hand, width, height)
            out[offset : offset + 21, 2] = 1.0
    # a point outside the frame is not a detection OpenPose would report
    outside = (out[:, 0] < 0) | (out[:, 1] < 0) | (out[:, 0] >= width) | (out[:, 1] >= height)
    out[outside] = 0.0
    return out
