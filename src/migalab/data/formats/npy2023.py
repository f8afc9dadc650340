"""MiGA 2023/24 release: ``<split>_data.npy`` + ``<split>_label.pkl``.

``<split>_data.npy`` is (N, C=3, T=90, V=22, M=1) float32 with channels (x, y, score) and the
joints in the ``imigue22`` layout order; ``<split>_label.pkl`` pickles ``(sample_names, labels)``
with 0-based labels. Every sample becomes one ClipRecord with layout ``imigue22``.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from migalab.data.classes import NUM_CLASSES
from migalab.data.formats.errors import FormatError, class_id, load_pickle
from migalab.data.formats.limits import MAX_PERSONS, MAX_TABLE_ROWS, check_npy_header
from migalab.data.record import ClipRecord
from migalab.data.skeleton.layouts import get_layout
from migalab.utils.io import atomic_write

LAYOUT = "imigue22"
NUM_JOINTS = 22
NUM_CHANNELS = 3
#: Frame size assumed for the older releases (pixels, (height, width)).
DEFAULT_IMG_SHAPE = (1080, 1920)


def split_paths(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """``(<root>/<split>_data.npy, <root>/<split>_label.pkl)``."""
    root = Path(root)
    return root / f"{split}_data.npy", root / f"{split}_label.pkl"


def _video_id(name: str) -> str:
    head, sep, tail = name.rpartition("_")
    return head if sep and tail.isdigit() else name


def read_npy2023(
    data_path: str | os.PathLike,
    label_path: str | os.PathLike,
    img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE,
    split: str | None = None,
    mmap: bool = True,
    num_classes: int = NUM_CLASSES,
) -> list[ClipRecord]:
    """Read one split of the 2023/24 release.

    Args:
        data_path: ``<split>_data.npy`` shaped (N, 3, T, 22, M).
        label_path: ``<split>_label.pkl`` = (sample_names, labels).
        img_shape: (height, width) stored in the records.
        split: stored in ``meta["split"]``.
        mmap: memory-map the array while slicing (records own copies either way).
        num_classes: labels must be 0-based ids below it (or -1, unknown).

    Returns:
        N ClipRecords with keypoint (M, T, 22, 2), keypoint_score (M, T, 22), start 0 and
        end T-1 (the samples are pre-cut), video id = name without a trailing ``_<n>``.

    Raises:
        FormatError: unreadable files, a data array that is not (N, 3, T, 22, M) (checked on the
            ``.npy`` header against the file size before anything is loaded; T at most
            ``MAX_TABLE_ROWS``, M at most ``MAX_PERSONS`` of :mod:`~migalab.data.formats.limits`), a label pickle that is not a
            (names, labels) pair, label count != N, or a label outside -1..num_classes-1 (e.g. a
            raw release id 99), naming the sample.
    """
    data_path, label_path = Path(data_path), Path(label_path)
    shape, _ = check_npy_header(data_path)
    if (
        len(shape) != 5
        or shape[1] != NUM_CHANNELS
        or shape[3] != NUM_JOINTS
        or not 0 < shape[2] <= MAX_TABLE_ROWS
        or not 0 < shape[4] <= MAX_PERSONS
    ):
        raise FormatError(
            data_path,
            f"array shape {shape}, expected (N, 3, T, {NUM_JOINTS}, M) with channels (x, y, "
            f"score), 1 <= T <= {MAX_TABLE_ROWS} frames and 1 <= M <= {MAX_PERSONS} persons",
        )
    try:
        data = np.load(data_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise FormatError(data_path, "no such file") from None
    except Exception as exc:
        raise FormatError(data_path, f"unreadable npy ({type(exc).__name__}: {exc})") from exc
    if data.ndim != 5 or data.shape[1] != NUM_CHANNELS or data.shape[3] != NUM_JOINTS:
        raise FormatError(
            data_path,
            f"array shape {tuple(data.shape)}, expected (N, 3, T, {NUM_JOINTS}, M) "
            "with channels (x, y, score)",
        )
    names, labels = _read_label_pickle(label_path, num_classes)
    n = data.shape[0]
    if len(names) != n:
        raise FormatError(label_path, f"{len(names)} labels for {n} samples in {data_path.name}")
    get_layout(LAYOUT)  # fail early if the registry lost the layout
    records = []
    for i, (name, label) in enumerate(zip(names, labels, strict=True)):
        sample = np.asarray(data[i], dtype=np.float32)  # (C, T, V, M)
        t = sample.shape[1]
        records.append(
            ClipRecord(
                name=str(name),
                video_id=_video_id(str(name)),
                start=0,
                end=t - 1,
                label=label,
                keypoint=np.ascontiguousarray(sample[:2].transpose(3, 1, 2, 0)),
                keypoint_score=np.ascontiguousarray(sample[2].transpose(2, 0, 1)),
                img_shape=(int(img_shape[0]), int(img_shape[1])),
                layout=LAYOUT,
                meta={"split": split, "index": i, "source": str(data_path)},
            )
        )
    return records


def _read_label_pickle(path: Path, num_classes: int) -> tuple[list[str], list[int]]:
    obj = load_pickle(path)
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise FormatError(path, f"expected a (sample_names, labels) pair, got {type(obj).__name__}")
    names, labels = list(obj[0]), list(obj[1])
    if len(names) != len(labels):
        raise FormatError(path, f"{len(names)} sample names but {len(labels)} labels")
    out = [
        class_id(path, f"sample {i} ({names[i]})", lab, num_classes) for i, lab in enumerate(labels)
    ]
    return [str(n) for n in names], out


def read_npy2023_split(
    root: str | os.PathLike, split: str, img_shape: tuple[int, int] = DEFAULT_IMG_SHAPE
) -> list[ClipRecord]:
    """Read ``<root>/<split>_data.npy`` + ``<root>/<split>_label.pkl``."""
    data_path, label_path = split_paths(root, split)
    return read_npy2023(data_path, label_path, img_shape=img_shape, split=split)


def write_npy2023(
    data_path: str | os.PathLike,
    label_path: str | os.PathLike,
    records: Sequence[ClipRecord],
) -> tuple[Path, Path]:
    """Write records (all with layout imigue22 and the same (M, T)) as the 2023/24 pair.

    The array is (N, 3, T, 22, M) float32; the pickle is ``(names, labels)``. Both writes are
    atomic (temp file in the same folder + ``os.replace``).
    """
    data_path, label_path = Path(data_path), Path(label_path)
    if not records:
        raise ValueError("write_npy2023 needs at least one record")
    shape = records[0].keypoint.shape
    for r in records:
        if r.keypoint.shape != shape or r.keypoint.shape[2] != NUM_JOINTS:
            raise ValueError(
                f"clip {r.name}: keypoint {r.keypoint.shape}; all records need the same "
                f"(M, T, {NUM_JOINTS}, 2) shape"
            )
    data = np.stack(
        [np.concatenate([r.keypoint, r.keypoint_score[..., None]], axis=-1) for r in records]
    ).astype(np.float32)  # (N, M, T, V, 3)
    data = np.ascontiguousarray(data.transpose(0, 4, 2, 3, 1))  # (N, 3, T, V, M)
    atomic_write(data_path, lambda f: np.save(f, data, allow_pickle=False))
    labels = ([r.name for r in records], [int(r.label) for r in records])
    atomic_write(label_path, lambda f: pickle.dump(labels, f, protocol=pickle.HIGHEST_PROTOCOL))
    return data_path, label_path
