"""Pseudo-labels: the unlabelled windows (no overlap with any labelled clip), the confidence
selection, the CSV the datamodule reads (and its errors), and the training set it extends."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch

from migalab.data.cache import SkeletonCache
from migalab.data.datamodule import PSEUDO_SPLIT, read_pseudo_labels
from migalab.pseudolabel import select_confident, unlabelled_windows
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides


def test_unlabelled_windows_overlap_no_labelled_clip(tiny_cache: Path) -> None:
    cache = SkeletonCache(tiny_cache)
    every = cache.windows(16, 8, ["train"])
    free = unlabelled_windows(cache, 16, 8, ["train"])
    assert 0 < len(free) < len(every)
    clips = cache.index
    for vid, start, end in free.index[["video_id", "start", "end"]].itertuples(index=False):
        mine = clips[clips["video_id"] == vid]
        assert not ((mine["start"] <= end) & (start <= mine["end"])).any()
    # only train videos, labels unknown
    train_videos = set(clips.loc[clips["split"] == "train", "video_id"])
    assert set(free.index["video_id"]) <= train_videos
    assert (free.labels < 0).all()


def test_select_confident_keeps_rows_at_or_above_the_threshold() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.05, 0.95], [0.5, 0.5]])
    keep, labels, scores = select_confident(probs, 0.9)
    assert keep.tolist() == [0, 2] and labels.tolist() == [0, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.95]))
    with pytest.raises(ValueError, match="threshold"):
        select_confident(probs, 0.0)


def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_pseudo_label_files_with_problems_are_named(tiny_cache: Path, tmp_path: Path) -> None:
    cache = SkeletonCache(tiny_cache)
    vid = str(cache.index["video_id"].iloc[0])
    total = int(cache.video_array(cache.index["file"].iloc[0]).shape[0])
    good = {"video_id": vid, "start": 0, "end": 15, "label": 3}
    with pytest.raises(FileNotFoundError, match="no file"):
        read_pseudo_labels(tmp_path / "none.csv", 32)
    f = _write(tmp_path / "cols.csv", [{"video_id": vid, "start": 0, "end": 3}])
    with pytest.raises(ValueError, match=r"cols\.csv: missing column\(s\) \['label'\]"):
        read_pseudo_labels(f, 32)
    f = _write(tmp_path / "cls.csv", [good, {**good, "label": 32}])
    with pytest.raises(ValueError, match=r"cls\.csv: row 2: label '32' is not a class id in 0..31"):
        read_pseudo_labels(f, 32)
    f = _write(tmp_path / "frame.csv", [{**good, "start": "x"}])
    with pytest.raises(ValueError, match=r"frame\.csv: row 1: start 'x' is not a frame number"):
        read_pseudo_labels(f, 32)
    table = read_pseudo_labels(_write(tmp_path / "vid.csv", [{**good, "video_id": "nope"}]), 32)
    with pytest.raises(ValueError, match=r"vid\.csv: row 1: video 'nope' is not in"):
        cache.with_windows(table, PSEUDO_SPLIT, source="vid.csv")
    late = read_pseudo_labels(_write(tmp_path / "end.csv", [{**good, "end": total}]), 32)
    with pytest.raises(ValueError, match=r"end\.csv: row 1: frames 0\.\.\d+ are outside"):
        cache.with_windows(late, PSEUDO_SPLIT, source="end.csv")


def test_pseudo_labelled_windows_join_the_training_set(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cache = SkeletonCache(tiny_cache)
    free = unlabelled_windows(cache, 16, 8, ["train"]).index.head(5)
    rows = [{"video_id": v, "start": s, "end": e, "label": k, "score": 0.95}
            for k, (v, s, e) in enumerate(free[["video_id", "start", "end"]].itertuples(index=False))]  # fmt: skip
    path = _write(tmp_path / "pseudo.csv", rows)
    overrides = tiny_data_overrides(tiny_release, tiny_cache)
    plain = hydra.utils.instantiate(compose_config("train", overrides, output_dir=tmp_path).data)
    plain.setup("fit")
    cfg = compose_config("train", [*overrides, f"data.pseudo_labels={path}"], output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == len(plain.datasets["train"]) + 5
    assert np.array_equal(train.labels[-5:], np.arange(5))
    assert train.clip_name(len(train) - 5) == f"{rows[0]['video_id']}_w{rows[0]['start']}"
    sample = train[len(train) - 1]
    assert sample["label"] == 4 and sample["x"].shape == plain.datasets["train"][0]["x"].shape
    assert len(dm.datasets["val"]) == len(plain.datasets["val"])  # evaluation is untouched
    # evaluating a checkpoint trained with pseudo-labels does not need their file
    path.unlink()
    scoring = hydra.utils.instantiate(cfg.data)
    scoring.setup("predict")
    assert len(scoring.datasets["train"]) == len(plain.datasets["train"])
    with pytest.raises(Exception, match="skeleton windows"):  # Hydra wraps the ValueError
        hydra.utils.instantiate(cfg.data, modalities=["rgb"])
