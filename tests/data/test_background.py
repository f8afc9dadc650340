"""Background windows (the stretches no labelled clip covers) and the actionness target that
trains on them beside the labelled clips."""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import pytest

from migalab.data.background import (
    BACKGROUND_DEFAULTS,
    background_options,
    background_table,
    with_background,
)
from migalab.data.cache import SkeletonCache
from migalab.data.datasets import SkeletonClipDataset
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides


def test_options_defaults_and_boundaries() -> None:
    assert background_options(None) == BACKGROUND_DEFAULTS
    assert background_options({"window": 1, "stride": 1, "ratio": 1e-6})["window"] == 1
    for bad in ({"window": 0}, {"stride": 0}, {"window": 2.5}, {"window": True},
                {"ratio": 0}, {"ratio": -1.0}, {"ratio": True}, {"ratio": "1"}):  # fmt: skip
        with pytest.raises(ValueError, match="data.background"):
            background_options(bad)
    with pytest.raises(ValueError, match="unknown key"):
        background_options({"windows": 32})


def test_background_windows_are_free_of_clips_and_capped(tiny_cache: Path) -> None:
    cache = SkeletonCache(tiny_cache)
    index = cache.index
    clips = int(((index["row"] >= 0) & (index["split"] == "train")).sum())
    table = background_table(cache, ["train"], 16, 4, 100.0)  # no cap
    assert len(table) > 0 and (table["label"] == 0).all()
    for vid, start, end in table[["video_id", "start", "end"]].itertuples(index=False):
        mine = index[index["video_id"] == vid]
        assert not ((mine["start"] <= end) & (start <= mine["end"])).any()
        assert (mine["split"] == "train").all()
    capped = background_table(cache, ["train"], 16, 4, 0.5)
    assert len(capped) == min(len(table), int(0.5 * clips))
    assert set(capped["video_id"]) <= set(table["video_id"])
    # the cap is at least one window
    assert len(background_table(cache, ["train"], 16, 4, 1e-9)) == 1


def test_actionness_labels_clips_one_and_background_zero(tiny_cache: Path) -> None:
    cache, splits, added = with_background(SkeletonCache(tiny_cache), "train", BACKGROUND_DEFAULTS)
    assert splits == ["train", "background:train"] and added > 0
    ds = SkeletonClipDataset(cache, splits, lambda r: np.zeros((3, 4, 17, 1), np.float32),
                             target="actionness")  # fmt: skip
    clips = int(((cache.index["row"] >= 0) & (cache.index["split"] == "train")).sum())
    assert len(ds) == clips + added
    assert int(ds.labels.sum()) == clips and int((ds.labels == 0).sum()) == added


def test_actionness_datamodule_splits_and_refusals(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cfg = compose_config("train", ["experiment=actionness_joint_synth",
                                   *tiny_data_overrides(tiny_release, tiny_cache)],
                         output_dir=tmp_path)  # fmt: skip
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    assert dm.num_classes == 2
    for key in ("train", "val"):
        labels = dm.datasets[key].labels
        assert set(np.unique(labels)) == {0, 1}, key
    np.testing.assert_array_equal(dm.class_counts, np.bincount(dm.datasets["train"].labels))
    data = {k: v for k, v in cfg.data.items() if k != "_target_"}
    for extra in ({"modalities": ["rgb"]}, {"pseudo_labels": "p.csv"}):
        with pytest.raises(ValueError, match="target=actionness"):
            hydra.utils.get_class(cfg.data._target_)(**{**data, **extra})
