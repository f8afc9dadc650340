"""Every config composes and every ``_target_`` in it instantiates."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from lightning import LightningDataModule, LightningModule, Trainer
from omegaconf import OmegaConf

from migalab.models.encoders.output import EncoderOutput
from migalab.utils.checkpoints import check_config_targets
from migalab.utils.hydra import (
    compose_config,
    instantiate_callbacks,
    instantiate_loggers,
    resolved_container,
)
from migalab.utils.paths import config_dir

CONF = config_dir()


def _group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _picks_pretrain_model(experiment: str) -> bool:
    """Whether an experiment selects a ``pretrain_*`` model (what ``migalab-pretrain`` runs)."""
    defaults = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").get("defaults", [])
    return any(
        str(v).startswith("pretrain_")
        for d in defaults
        if isinstance(d, dict) or OmegaConf.is_dict(d)
        for k, v in d.items()
        if k.endswith("/model")
    )


#: supervised experiments (``migalab-train``): conf/experiment/*.yaml
EXPERIMENTS = _group_options("experiment")
#: pretraining experiments (``migalab-pretrain``): conf/experiment/pretrain/*.yaml
PRETRAIN_EXPERIMENTS = [f"pretrain/{e}" for e in _group_options("experiment/pretrain")]


def test_pretraining_experiments_live_in_their_folder() -> None:
    """Every experiment that picks a pretraining model is in experiment/pretrain/, and only
    those are."""
    assert EXPERIMENTS and PRETRAIN_EXPERIMENTS
    assert not [e for e in EXPERIMENTS if _picks_pretrain_model(e)]
    assert all(_picks_pretrain_model(e) for e in PRETRAIN_EXPERIMENTS)


def test_every_group_has_configs() -> None:
    for group in ("data", "model", "trainer", "logger", "callbacks", "experiment", "debug",
                  "model/encoder", "model/neck", "model/head", "model/loss", "model/optimizer",
                  "model/scheduler"):  # fmt: skip
        assert _group_options(group), f"conf/{group} is empty"


#: every encoder config (``model/encoder/**.yaml``), as its option name (``posec3d/slowonly``)
ENCODERS = sorted(
    p.relative_to(CONF / "model" / "encoder").with_suffix("").as_posix()
    for p in (CONF / "model" / "encoder").rglob("*.yaml")
)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_encoder_configs_give_encoder_outputs(encoder: str, tmp_path: Path) -> None:
    """Every encoder config drops into a model (``model/encoder=<name>``) and its encoder
    returns an EncoderOutput: tokens (B, N, C), pooled (B, C), time / space (N,)."""
    overrides = ["data=synthetic_video", f"model/encoder={encoder}"]
    if encoder == "mvit":
        overrides.append("model.encoder.preset=xs")
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    enc = hydra.utils.instantiate(cfg.model.encoder).eval()
    name = type(enc).__name__
    if name == "AGCN":
        x = torch.randn(2, 3, 16, enc.num_nodes, enc.num_persons)
    elif name == "MViTEncoder":
        x = torch.randn(2, 3, enc.temporal_size, *enc.spatial_size)
    elif name == "SkeletonTransformer":
        x = torch.randn(2, 3, enc.num_frames, enc.num_joints, enc.num_persons)
    elif name == "SwinFaceEncoder":  # two face crops per sample
        x = torch.randint(0, 256, (2, 2, 3, enc.image_size, enc.image_size), dtype=torch.uint8)
    else:
        x = torch.randn(2, enc.in_channels, 8, 32, 32)
    with torch.no_grad():
        out = enc(x)
    assert isinstance(out, EncoderOutput) and out.aux == {}
    b, n, c = out.tokens.shape
    assert b == 2 and c == enc.out_channels and out.pooled.shape == (2, c)
    assert out.time.shape == out.space.shape == (n,) and out.space.dtype == torch.long
    assert ((out.time == -1) | ((out.time >= 0) & (out.time < 1))).all()
    assert ((out.time < 0) <= (out.space < 0)).all()  # global tokens have no position


def test_system_b_branches_reuse_the_encoder_configs(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=system_b_mg"], output_dir=tmp_path)
    branches = cfg.model.encoders
    assert list(branches) == ["rgb", "joint", "bone"]
    for name, option in (("rgb", "mvit"), ("joint", "agcn"), ("bone", "agcn")):
        own = OmegaConf.load(CONF / "model" / "encoder" / f"{option}.yaml")
        assert set(branches[name]) == set(own), name
        assert branches[name]._target_ == own._target_
    assert branches.joint.base_channels == 64 and branches.rgb.preset == "s"
    neck = OmegaConf.load(CONF / "model" / "neck" / "token_fusion.yaml")
    assert cfg.model.neck._target_ == neck._target_ and cfg.model.neck._partial_
    assert "encoder" not in cfg.model


@pytest.mark.parametrize("experiment", [None, *EXPERIMENTS])
def test_train_config_instantiates(experiment: str | None, tmp_path: Path) -> None:
    overrides = [f"experiment={experiment}"] if experiment else []
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    OmegaConf.resolve(cfg)  # every interpolation resolves
    assert isinstance(hydra.utils.instantiate(cfg.data), LightningDataModule)
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, LightningModule)
    # emotion models: one win logit (or two) per clip; gesture models: one per class
    outputs = cfg.model.get("num_outputs", cfg.data.num_classes)
    assert model.head.fc.out_features == outputs
    assert instantiate_callbacks(cfg.callbacks)
    assert instantiate_loggers(cfg.logger)
    # what a checkpoint stores is what migalab-eval will agree to instantiate again
    for part in ("data", "model"):
        check_config_targets(resolved_container(cfg)[part], f"experiment {experiment}")


def test_pretrain_experiments_are_found() -> None:
    assert {"pretrain/mamp_skeleton", "pretrain/mamp_skeleton_synth"} <= set(PRETRAIN_EXPERIMENTS)


@pytest.mark.parametrize("experiment", [None, *PRETRAIN_EXPERIMENTS])
def test_pretrain_config_instantiates(experiment: str | None, tmp_path: Path) -> None:
    overrides = [f"experiment={experiment}"] if experiment else []
    cfg = compose_config("pretrain", overrides, output_dir=tmp_path)
    OmegaConf.resolve(cfg)
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, LightningDataModule) and dm.unlabelled["window"] > 0
    model = hydra.utils.instantiate(cfg.model)
    assert isinstance(model, LightningModule) and not hasattr(model, "head")
    assert cfg.callbacks.model_checkpoint.mode == "min" and cfg.optimized_metric == "val/loss"
    assert instantiate_callbacks(cfg.callbacks)
    for part in ("data", "model"):
        check_config_targets(resolved_container(cfg)[part], f"experiment {experiment}")


@pytest.mark.parametrize("trainer", _group_options("trainer"))
def test_trainer_configs_compose(trainer: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={trainer}"], output_dir=tmp_path)
    assert cfg.trainer._target_.endswith("Trainer")
    if trainer in ("cpu", "default", "ddp_sim"):
        assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), Trainer)


@pytest.mark.parametrize("logger", _group_options("logger"))
def test_logger_configs_instantiate(logger: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"logger={logger}"], output_dir=tmp_path)
    loggers = instantiate_loggers(cfg.logger)
    assert loggers and all(lg.save_dir for lg in loggers)


@pytest.mark.parametrize("debug", _group_options("debug"))
def test_debug_configs_compose(debug: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"debug={debug}"], output_dir=tmp_path)
    assert cfg.trainer.accelerator == "cpu"
    assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), Trainer)


@pytest.mark.parametrize("data", _group_options("data"))
def test_data_configs_instantiate(data: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"data={data}"], output_dir=tmp_path)
    dm = hydra.utils.instantiate(cfg.data)
    assert dm.num_classes == 32


def test_eval_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("eval", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    assert cfg.fusion.space == "probs" and cfg.fusion.search is False
    assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), Trainer)


def test_predict_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("predict", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    assert cfg.split == "test" and cfg.submission.label_format == "index"  # the challenge format
    assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), Trainer)


def test_eval_and_predict_share_the_fusion_group(tmp_path: Path) -> None:
    ev = compose_config("eval", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    pr = compose_config("predict", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    shared = OmegaConf.to_container(
        compose_config("eval", ["ckpt_path=x", "fusion=default"]).fusion
    )
    assert OmegaConf.to_container(ev.fusion) == shared
    assert OmegaConf.to_container(pr.fusion) == {**shared, "from": None}  # predict adds fusion.from
    tuned = compose_config(
        "predict", ["ckpt_path=x", "fusion.grid_step=0.25", "fusion.from=f.json"]
    )
    assert tuned.fusion.grid_step == 0.25 and tuned.fusion["from"] == "f.json"


def test_system_a_parts_are_one_override_each(tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=system_a"], output_dir=tmp_path)
    assert cfg.data.layout == "body_face41" and cfg.data.interpolate
    assert cfg.model.label_embedding.weight == 20.0
    assert cfg.model.encoder.in_channels == 41
    off = compose_config(
        "train",
        ["experiment=system_a_limb", "data.layout=imigue22", "data.interpolate=false",
         "model.label_embedding=null"],
        output_dir=tmp_path,
    )  # fmt: skip
    assert off.model.label_embedding is None and not off.data.interpolate
    assert off.model.encoder.in_channels == 21  # the 21 limbs (tree edges) of imigue22


@pytest.mark.parametrize("callbacks", _group_options("callbacks"))
def test_callback_configs_instantiate(callbacks: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"callbacks={callbacks}"], output_dir=tmp_path)
    instantiated = instantiate_callbacks(cfg.callbacks)
    assert len(instantiated) == len([c for c in (cfg.callbacks or {}).values() if c])


@pytest.mark.parametrize("search", _group_options("hparams_search"))
def test_hparams_search_configs_compose(search: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"hparams_search={search}"], output_dir=tmp_path)
    assert cfg.optimized_metric


def test_pseudolabel_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("pseudolabel", ["ckpt_path=x.ckpt"], output_dir=tmp_path)
    assert cfg.threshold == 0.9 and cfg.window == 32 and list(cfg.splits) == ["train"]
    assert isinstance(hydra.utils.instantiate(cfg.trainer, logger=False), Trainer)


# -- synthetic stand-ins: quick for the experiments, full size for the tables in docs/ ----------
#: the full stand-ins' generator config hashes, as written before the quick stand-ins existed:
#: the releases under data/synthetic_imigue_video/ and data/synthetic_imigue_emotion/ stay
#: current (a change here regenerates them and invalidates the tables in docs/)
FULL_STAND_INS = {
    "synthetic_video_full": ("22b1dd5edd67e1a4", "synthetic_imigue_video"),
    "synthetic_emotion_full": ("66fbce0551d4f9c6", "synthetic_imigue_emotion"),
}
#: quick stand-in -> its full-size one
QUICK_STAND_INS = {"synthetic_video": "synthetic_video_full",
                   "synthetic_emotion": "synthetic_emotion_full"}  # fmt: skip


def _synth(data: str, tmp_path: Path) -> tuple[dict, dict]:
    """(resolved data config, its SynthConfig as a dict) of ``data=<data>``."""
    from migalab.synthetic import SynthConfig

    cfg = compose_config("train", [f"data={data}"], output_dir=tmp_path)
    resolved = resolved_container(cfg)["data"]
    return resolved, SynthConfig(**resolved["synthetic"]).to_dict()


@pytest.mark.parametrize("data", sorted(FULL_STAND_INS))
def test_full_stand_ins_keep_their_release(data: str, tmp_path: Path) -> None:
    from migalab.synthetic import SynthConfig
    from migalab.utils.stored_config import SYNTHETIC_LIMITS

    resolved, synth = _synth(data, tmp_path)
    expected_hash, folder = FULL_STAND_INS[data]
    assert SynthConfig(**synth).config_hash() == expected_hash
    assert resolved["release_root"].endswith(f"/{folder}/release")
    assert resolved["cache_dir"].endswith(f"/{folder}/cache")
    # a checkpoint trained on them passes the stored-config caps
    assert sum(synth["num_videos"].values()) <= SYNTHETIC_LIMITS["videos"]
    assert max(synth["clips_per_video"]) <= SYNTHETIC_LIMITS["clips_per_video"]


def test_full_stand_in_sizes(tmp_path: Path) -> None:
    from migalab.synthetic import SynthConfig

    video = SynthConfig(**_synth("synthetic_video_full", tmp_path)[1])
    emotion = SynthConfig(**_synth("synthetic_emotion_full", tmp_path)[1])
    assert video.num_videos == {"train": 40, "validate": 10, "test": 10}
    assert video.clips_per_video == (25, 45) and video.video_scale == 0.25
    assert emotion.num_videos == {"train": 96, "validate": 32, "test": 96}
    assert emotion.clips_per_video == (6, 8) and emotion.video_scale == 0.5
    assert emotion.emotion_effect == 2.0


@pytest.mark.parametrize("quick", sorted(QUICK_STAND_INS))
def test_quick_stand_ins_are_smaller_versions_of_the_full_ones(quick: str, tmp_path: Path) -> None:
    """The same generator, renderer, crops and model inputs, fewer (or shorter) videos, and
    folders of their own (a quick release never overwrites a full one)."""
    q_data, q = _synth(quick, tmp_path)
    f_data, f = _synth(QUICK_STAND_INS[quick], tmp_path)
    sizes = ("num_videos", "clips_per_video")
    assert {k: v for k, v in q.items() if k not in sizes} == {
        k: v for k, v in f.items() if k not in sizes
    }
    assert all(q["num_videos"][s] <= f["num_videos"][s] for s in f["num_videos"])
    assert q["clips_per_video"][1] <= f["clips_per_video"][1]

    def clips(synth: dict) -> float:  # expected clips of the release: frames to render and crop
        return sum(synth["num_videos"].values()) * sum(synth["clips_per_video"]) / 2

    assert clips(q) <= clips(f) / 3
    # every split keeps an even number of videos: win / lose balanced exactly
    assert all(n > 0 and n % 2 == 0 for n in q["num_videos"].values())
    assert q_data["release_root"] != f_data["release_root"]
    assert q_data["cache_dir"] != f_data["cache_dir"]
    assert Path(q_data["release_root"]).parent.name.endswith("_quick")
    for key in ("target", "modalities", "video", "face", "num_frames", "layout"):
        assert q_data[key] == f_data[key], key


def test_synthetic_video_data_workers_follow_the_cores(tmp_path: Path) -> None:
    """Rendering, skeleton conversion and clip cropping use the usable cores (at most 4)."""
    from migalab.utils.hydra import usable_cores

    cores = usable_cores(4)
    assert 1 <= cores <= 4 and usable_cores() >= cores and usable_cores(1) == 1
    for data in ("synthetic_video", "synthetic_emotion", *FULL_STAND_INS):
        resolved, _ = _synth(data, tmp_path)
        assert resolved["synthetic"]["workers"] == cores, data
        assert resolved["prepare_workers"] == cores, data
        assert resolved["video"]["prepare_workers"] == resolved["face"]["prepare_workers"] == cores
