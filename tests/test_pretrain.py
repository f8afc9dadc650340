"""migalab-pretrain: the unlabelled datamodule, the config, a run by name from an empty
directory, and fine-tuning from its checkpoint (model.encoder.init)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
import pytest
import torch

from migalab.data.record import UNKNOWN_LABEL
from migalab.tasks.pretrain import PretrainModule
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides
from tests.test_console_scripts import _ok, run_script

SMALL = ["model.encoder.dim=16", "model.encoder.depth=1", "model.encoder.heads=2",
         "model.pretext.decoder_dim=16", "model.pretext.decoder_depth=1",
         "model.pretext.decoder_heads=2"]  # fmt: skip


def test_pretrain_config_and_unlabelled_batches(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    cfg = compose_config(
        "pretrain", [*tiny_data_overrides(tiny_release, tiny_cache), *SMALL], output_dir=tmp_path
    )
    assert cfg.optimized_metric == "val/loss" and cfg.callbacks.model_checkpoint.mode == "min"
    assert cfg.model.pretext.mask_ratio == 0.9 and cfg.model.pretext.motion_aware_tau == 0.8
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert set(dm.datasets) == {"train", "val"}
    # every sequence of every split, labels never read
    assert train.cache.index["file"].nunique() == dm_files(tiny_cache)
    assert (train.labels == UNKNOWN_LABEL).all()
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 3, 32, 22, 1)
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, PretrainModule)
    loss = model(batch["x"])["loss"]
    assert torch.isfinite(loss) and loss > 0


def dm_files(cache: Path) -> int:
    from migalab.data.cache import SkeletonCache

    return SkeletonCache(cache).index["file"].nunique()


@pytest.mark.slow
def test_migalab_pretrain_by_name_then_fine_tune(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    data = tiny_data_overrides(tiny_release, tiny_cache)
    common = ["logger=csv", f"paths.log_dir={tmp_path / 'logs'}",
              "callbacks.progress_bar.refresh_rate=0", "trainer.max_epochs=2"]  # fmt: skip
    _ok(run_script(["migalab-pretrain", *common, *data, *SMALL], cwd=tmp_path))
    (metrics,) = (tmp_path / "logs").glob("pretrain/runs/*/metrics.json")
    payload = json.loads(metrics.read_text())
    assert payload["val"]["loss"] > 0 and Path(payload["ckpt_path"]).is_file()
    assert "test" not in payload
    # fine-tune the skeleton transformer classifier from it: the encoder weights load strictly
    enc = ["model.encoder.dim=16", "model.encoder.depth=1", "model.encoder.heads=2"]
    out = _ok(run_script(
        ["migalab-train", "experiment=stt_joint_synth", *common, "trainer.max_epochs=1", *data,
         *enc, f"model.encoder.init={payload['ckpt_path']}"], cwd=tmp_path,
    ))  # fmt: skip
    assert "initial weights: encoder <- " in out
    (ft,) = (tmp_path / "logs").glob("train/runs/*/metrics.json")
    assert json.loads(ft.read_text())["test"]["top1"] >= 0


@pytest.mark.slow
def test_simmim_face_pretraining_runs_on_face_crops(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    """experiment=pretrain/simmim_face_synth (fast_dev_run): the prepared face crops of every split."""
    from migalab.train import train
    from tests.conftest import tiny_video_overrides

    overrides = ["experiment=pretrain/simmim_face_synth", "debug=fdr", "trainer.precision=32-true",
                 "logger=csv", *tiny_video_overrides(tiny_video_release, tiny_video_cache),
                 "data.modalities=[face]", "data.face.num_frames=4"]  # fmt: skip
    cfg = compose_config("pretrain", overrides, output_dir=tmp_path)
    assert cfg.data.unlabelled.source == "clips"
    payload, trainer = train(cfg)
    assert trainer.state.finished and payload["val"]["loss"] > 0
    dm = trainer.datamodule
    splits = set(dm.datasets["train"].cache.index["split"])
    assert dm.datasets["train"].split == "+".join(dm.datasets["train"].cache.splits)
    assert len(dm.datasets["train"]) == len(dm.datasets["train"].cache.index)  # every clip
    assert splits == {"train", "validate", "test"}


def test_maskfeat_mvit_pretraining_runs_on_person_crops(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    """experiment=pretrain/maskfeat_mvit_synth (fast_dev_run): the prepared RGB clips of every split,
    no label read; the MViT's checkpointed keys are the classifier encoder's."""
    from migalab.train import train
    from tests.conftest import tiny_video_overrides

    overrides = ["experiment=pretrain/maskfeat_mvit_synth", "debug=fdr", "trainer.precision=32-true",
                 "logger=csv", *tiny_video_overrides(tiny_video_release, tiny_video_cache),
                 "data.modalities=[rgb]"]  # fmt: skip
    cfg = compose_config("pretrain", overrides, output_dir=tmp_path)
    assert cfg.model.pretext.mask_ratio == 0.4 and cfg.model.pretext.mask_patch == 16
    payload, trainer = train(cfg)
    assert trainer.state.finished and payload["val"]["loss"] > 0
    train_set = trainer.datamodule.datasets["train"]
    assert set(train_set.cache.index["split"]) == {"train", "validate", "test"}
    classifier = compose_config(
        "train", ["experiment=mvit_rgb_synth", *tiny_video_overrides(tiny_video_release,
                  tiny_video_cache)], output_dir=tmp_path / "ft",
    )  # fmt: skip
    encoder = hydra.utils.instantiate(classifier.model.encoder)
    pretrained = {k.removeprefix("encoder."): v for k, v in trainer.model.state_dict().items()
                  if k.startswith("encoder.")}  # fmt: skip
    assert encoder.load_state_dict(pretrained, strict=True) is not None
