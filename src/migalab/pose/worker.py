"""The pose worker: MediaPipe Holistic over one video, run by ``migalab-pose`` as a subprocess
inside the pose environment (``make pose-env``: mediapipe pins protobuf<5, the main environment's
wandb needs >=5, so the two cannot share one environment).

    <pose-env>/bin/python worker.py VIDEO OUT.npy [--model-complexity 1]

Writes OUT.npy, (T, 137, 3) float32 keypoints in the OpenPose layout (:mod:`mapping`), and
OUT.json (frames, fps, width, height, frames with a person, seconds), each atomically; prints
``progress <done> <total>`` lines on stdout for the caller's progress bar. Needs only NumPy,
OpenCV and MediaPipe (0.10.x, whose wheels ship the Holistic models: no download).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

try:
    from migalab.pose.mapping import to_openpose137
except ImportError:  # run as a script in the pose environment: mapping.py sits beside it
    from mapping import to_openpose137  # type: ignore[no-redef]


def _array(landmarks: object, with_visibility: bool = False) -> np.ndarray | None:
    if landmarks is None:
        return None
    rows = [
        (p.x, p.y, p.z, p.visibility) if with_visibility else (p.x, p.y, p.z)
        for p in landmarks.landmark
    ]  # type: ignore[attr-defined]
    return np.asarray(rows, dtype=np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args()
    import cv2
    import mediapipe as mp

    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        print(f"error: cannot open video {args.video}", file=sys.stderr)
        return 2
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    frames: list[np.ndarray] = []
    width = height = 0
    start = time.perf_counter()
    holistic = mp.solutions.holistic.Holistic(
        static_image_mode=False,
        model_complexity=args.model_complexity,
        refine_face_landmarks=True,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    )
    with holistic:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            height, width = bgr.shape[:2]
            res = holistic.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            frames.append(
                to_openpose137(
                    _array(res.pose_landmarks, True),
                    _array(res.face_landmarks),
                    _array(res.left_hand_landmarks),
                    _array(res.right_hand_landmarks),
                    width,
                    height,
                )
            )
            if len(frames) % 25 == 0:
                print(f"progress {len(frames)} {total}", flush=True)
    cap.release()
    seconds = time.perf_counter() - start
    table = np.stack(frames) if frames else np.zeros((0, 137, 3), np.float32)
    with_person = int((table[..., 2] > 0).any(axis=1).sum())
    tmp = f"{args.out}.tmp.npy"
    np.save(tmp, table)
    os.replace(tmp, args.out)
    meta = {
        "video": args.video,
        "frames": len(frames),
        "fps": fps,
        "width": width,
        "height": height,
        "frames_with_person": with_person,
        "seconds": round(seconds, 3),
        "model_complexity": args.model_complexity,
        "mediapipe": getattr(mp, "__version__", "unknown"),
    }
    meta_path = os.path.splitext(args.out)[0] + ".json"
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(meta_path + ".tmp", meta_path)
    print(f"progress {len(frames)} {len(frames)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
