"""Checkpoints from before the neck split still evaluate: a fusion model used to be ``encoder`` =
the fusion holding its backbones; today it is ``encoders`` + ``neck``. The stored config and the
state dict are upgraded (:func:`~migalab.utils.checkpoints.split_neck_config`,
:func:`~migalab.utils.checkpoints.upgrade_state_dict`).

``tests/fixtures/pre_neck_*.ckpt`` were written by the code of that time
(``tests/fixtures/make_pre_neck_checkpoints.py`` at commit bafba73), with a fixed input and the
logits that code gave; today's code must give the same logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from migalab.scoring.ensemble import load_checkpoint_config, model_from_checkpoint
from migalab.utils.checkpoints import (
    load_checkpoint,
    split_neck_config,
    upgrade_state_dict,
    upgrade_targets,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FUSION = "migalab.models.fusion.CrossModalTokenFusion"
AGCN = {"_target_": "migalab.models.encoders.agcn.AGCN", "base_channels": 4}


@pytest.mark.parametrize(
    ("name", "streams", "neck"),
    [("token_fusion", ["joint", "bone"], "CrossModalTokenFusion"),
     ("interfusion", ["face", "context"], "InterFusion")],
)  # fmt: skip
def test_a_checkpoint_from_before_the_split_gives_the_same_logits(
    name: str, streams: list[str], neck: str, tmp_path: Path
) -> None:
    path = FIXTURES / f"pre_neck_{name}.ckpt"
    raw = load_checkpoint(path)
    assert "encoder" in raw["migalab_config"]["model"]  # the old layout
    assert any(k.startswith("encoder.encoders.") for k in raw["state_dict"])
    cfg, state = load_checkpoint_config(path, data_dir=tmp_path)
    assert "encoder" not in cfg.model and list(cfg.model.encoders) == streams
    assert cfg.model.neck._target_.endswith(neck) and cfg.model.neck._partial_
    model = model_from_checkpoint(cfg, state)  # strict: every key has its new name
    assert model.encoder is None and type(model.neck).__name__ == neck
    with torch.no_grad():
        logits = model(raw["fixture_input"])
    torch.testing.assert_close(logits, raw["fixture_logits"], rtol=0, atol=1e-6)


def test_resuming_a_run_from_before_the_split_renames_its_weights(tmp_path: Path) -> None:
    """``ckpt_path=last`` of an old fusion run: Lightning hands the checkpoint to
    ``on_load_checkpoint`` before loading its state dict (strictly)."""
    path = FIXTURES / "pre_neck_token_fusion.ckpt"
    cfg, _ = load_checkpoint_config(path, data_dir=tmp_path)
    model = model_from_checkpoint(cfg, upgrade_state_dict(load_checkpoint(path)["state_dict"]))
    ckpt = load_checkpoint(path)
    model.on_load_checkpoint(ckpt)
    model.load_state_dict(ckpt["state_dict"])  # strict
    assert set(ckpt["state_dict"]) == set(model.state_dict())


def test_the_state_dict_map_and_its_boundaries() -> None:
    old = {"encoder.encoders.joint.w": 1, "encoder.proj.joint.w": 2, "encoder.cls_token": 3,
           "head.fc.weight": 4}  # fmt: skip
    assert upgrade_state_dict(old) == {"encoders.joint.w": 1, "neck.proj.joint.w": 2,
                                       "neck.cls_token": 3, "head.fc.weight": 4}  # fmt: skip
    assert list(upgrade_state_dict(old)) == ["encoders.joint.w", "neck.proj.joint.w",
                                             "neck.cls_token", "head.fc.weight"]  # fmt: skip
    # a single-encoder model (no "encoder.encoders." key) keeps its names, including a module
    # of its own whose name merely starts like the backbones'
    single = {"encoder.encodersx.w": 1, "encoder.units.0.w": 2, "head.fc.weight": 3}
    assert upgrade_state_dict(single) == single
    new = {"encoders.joint.w": 1, "neck.proj.w": 2}
    assert upgrade_state_dict(new) == new and upgrade_state_dict(new) is not new


def test_the_config_map() -> None:
    old = {
        "_target_": "migalab.tasks.gesture.GestureModule",
        "head": {"_partial_": True},
        "encoder": {"_target_": FUSION, "_convert_": "all", "num_classes": 4,
                    "modalities": {"rgb": {"encoder": AGCN, "pool": "space"},
                                   "joint": {"encoder": AGCN, "spatial_positions": 22},
                                   "bone": AGCN},
                    "dim": 16},
        "loss": {"name": "ce"},
    }  # fmt: skip
    new = split_neck_config(old)
    assert list(new) == ["_target_", "head", "encoders", "neck", "loss"]
    assert new["encoders"] == {"rgb": AGCN, "joint": AGCN, "bone": AGCN}
    assert new["neck"] == {"_target_": FUSION, "_convert_": "all", "num_classes": 4, "dim": 16,
                           "pool": {"rgb": "space", "joint": "none", "bone": "none"},
                           "spatial_positions": {"joint": 22}, "_partial_": True}  # fmt: skip
    assert "encoder" in old and "encoders" not in old  # the input is not changed
    inter = {"encoder": {"_target_": "migalab.models.fusion.InterFusion", "dim": 8,
                         "face": {"encoder": AGCN, "pool": "none"},
                         "context": {"encoder": AGCN, "pool": "space"}}}  # fmt: skip
    assert split_neck_config(inter) == {
        "encoders": {"face": AGCN, "context": AGCN},
        "neck": {"_target_": "migalab.models.fusion.InterFusion", "dim": 8,
                 "pool": {"face": "none", "context": "space"}, "_partial_": True},
    }  # fmt: skip
    # what is not an old fusion stays as it is: a single encoder, today's layout, an InterFusion
    # without its streams, a class merely named like a fusion
    for model in (
        {"encoder": AGCN},
        {"encoders": {"joint": AGCN}, "neck": {"_target_": FUSION, "_partial_": True}},
        {"encoder": {"_target_": "migalab.models.fusion.InterFusion", "face": AGCN}},
        {"encoder": {"_target_": "my.TokenFusion", "modalities": {"a": AGCN}}},
        {"encoder": {"_target_": "my.XCrossModalTokenFusion", "modalities": {"a": AGCN}}},
    ):
        assert split_neck_config(model) == model
    # upgrade_targets applies it wherever a model config sits
    assert upgrade_targets({"model": old})["model"] == new
