"""The representation options: one dataclass of defaults each, which the base data config
restates (and must agree with), and the registry's errors."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from migalab.data.representations import (
    REPRESENTATIONS,
    ClipOptions,
    FaceOptions,
    HeatmapOptions,
    VideoOptions,
    build_representation,
)
from migalab.data.skeleton.transforms import DEFAULT_AUGMENT
from migalab.utils.hydra import compose_config


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


@pytest.mark.parametrize(
    ("options", "key"),
    [
        (HeatmapOptions, "heatmap"),
        (VideoOptions, "video"),
        (FaceOptions, "face"),
        (ClipOptions, None),
    ],
)
def test_yaml_restates_the_dataclass_defaults(options, key) -> None:
    data = compose_config("train", ["data=imigue"]).data
    section = OmegaConf.to_container(data[key] if key else data, resolve=True)
    for field in dataclasses.fields(options):
        if field.name in ("augment", "prepare_workers"):
            continue  # augment: below; {video,face}.prepare_workers follow data.prepare_workers
        assert _plain(section[field.name]) == _plain(field.default), (key, field.name)
    augment = OmegaConf.to_container(data.augment)
    assert {k: {n: _plain(v) for n, v in d.items()} for k, d in augment.items()} == {
        k: {n: _plain(v) for n, v in d.items()} for k, d in DEFAULT_AUGMENT.items()
    }


def test_registry_and_errors() -> None:
    clip = ClipOptions()
    assert set(REPRESENTATIONS) == {"gcn", "heatmap", "multimodal"}
    assert build_representation("gcn", clip).name == "gcn"
    assert build_representation("gcn", clip, modalities=["joint", "bone"]).name == "multimodal"
    face = build_representation("gcn", clip, modalities=["face"], face={"size": 64})
    assert face.face == FaceOptions(size=64) and face.prepared_face_dir.name == "face_clips_64"
    with pytest.raises(ValueError, match="representation must be one of"):
        build_representation("pointcloud", clip)
    with pytest.raises(ValueError, match="unknown heatmap options"):
        build_representation("heatmap", clip, heatmap={"sigma2": 1})
    with pytest.raises(ValueError, match="heatmap streams"):
        build_representation("heatmap", ClipOptions(stream="bone"))
    with pytest.raises(ValueError, match="render must be"):
        build_representation("heatmap", clip, heatmap={"render": "gpu"})
    with pytest.raises(ValueError, match="representation=gcn with modalities"):
        build_representation("heatmap", clip, modalities=["rgb"])
