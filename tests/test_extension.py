"""The extension points: a new encoder is one Python file + one yaml in ``model/encoder/``, a new
neck one Python file + one yaml in ``model/neck/``.

The toy encoder, the toy neck and their configs live only in a temporary directory (the modules
on ``PYTHONPATH``, the yamls in a config dir added with ``hydra.searchpath``); nothing else
changes. The encoder trains through ``migalab-train`` and drops into a System B branch; the neck
replaces System B's token fusion and trains through ``migalab-train``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import hydra
import pytest
import torch

from migalab.models.encoders.output import EncoderOutput
from migalab.models.fusion.streams import fuse_streams
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides
from tests.test_console_scripts import _ok, run_script

TOY_ENCODER = '''
"""A toy skeleton encoder: one linear layer per frame."""

import torch
from torch import nn

from migalab.data.skeleton.layouts import get_layout
from migalab.models.encoders.output import EncoderOutput, grid_index


class ToyEncoder(nn.Module):
    """(N, C, T, V, M) -> tokens (N, T, width), one per frame (persons averaged);
    pooled (N, width)."""

    def __init__(self, layout: str, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.out_channels = width
        self.proj = nn.Linear(in_channels * get_layout(layout).num_joints, width)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        n, c, t, v, m = x.shape
        tokens = self.proj(x.permute(0, 4, 2, 3, 1).reshape(n, m, t, v * c)).mean(dim=1)
        time, space = grid_index(t, 1, x.device)
        return EncoderOutput(tokens, tokens.mean(dim=1), time, space)
'''

TOY_YAML = """\
_target_: toy_encoder.ToyEncoder
layout: ${data.layout}
in_channels: 3
width: 8
"""

TOY_NECK = '''
"""A toy neck: the mean of the encoders' projected pooled features."""

import torch
from torch import nn

from migalab.models.encoders.output import EncoderOutput
from migalab.models.fusion.streams import fuse_streams


class MeanNeck(nn.Module):
    """name -> EncoderOutput -> pooled (N, width): the mean over the present streams of
    Linear(C_m -> width)(pooled_m); one token per stream."""

    def __init__(self, channels, spatial_positions=None, width: int = 16) -> None:
        super().__init__()
        self.out_channels = width
        self.proj = nn.ModuleDict({n: nn.Linear(c, width) for n, c in channels.items()})

    def forward(self, outs, present=None, visible=None) -> EncoderOutput:
        tokens = torch.stack([self.proj[n](o.pooled) for n, o in outs.items()], dim=1)
        n = tokens.shape[1]
        time = torch.full((n,), -1.0, device=tokens.device)
        space = torch.full((n,), -1, dtype=torch.long, device=tokens.device)
        return EncoderOutput(tokens, tokens.mean(dim=1), time, space)
'''

TOY_NECK_YAML = """\
_target_: toy_neck.MeanNeck
_partial_: true
width: 16
"""


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(directory holding toy_encoder.py, config dir holding model/encoder/toy.yaml)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "toy_encoder.py").write_text(TOY_ENCODER)
    (code / "toy_neck.py").write_text(TOY_NECK)
    conf = tmp_path / "conf"
    (conf / "model" / "encoder").mkdir(parents=True)
    (conf / "model" / "encoder" / "toy.yaml").write_text(TOY_YAML)
    (conf / "model" / "neck").mkdir(parents=True)
    (conf / "model" / "neck" / "toy.yaml").write_text(TOY_NECK_YAML)
    monkeypatch.syspath_prepend(str(code))
    yield code, conf
    sys.modules.pop("toy_encoder", None)
    sys.modules.pop("toy_neck", None)


def test_toy_encoder_trains_through_migalab_train(
    toy: tuple[Path, Path], tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    code, conf = toy
    env = {"PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
    proc = run_script(
        ["migalab-train", "experiment=agcn_joint_synth", f"hydra.searchpath=[file://{conf}]",
         "model/encoder=toy", "debug=fdr", "trainer=cpu", "logger=csv",
         f"paths.log_dir={tmp_path / 'logs'}", *tiny_data_overrides(tiny_release, tiny_cache)],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    _ok(proc)
    (metrics,) = (tmp_path / "logs").glob("debug/runs/*/metrics.json")  # debug=fdr: task debug
    assert "toy_encoder.ToyEncoder" in (metrics.parent / ".hydra" / "config.yaml").read_text()
    assert 0.0 <= json.loads(metrics.read_text())["val"]["top1"] <= 1.0


def test_toy_encoder_is_a_system_b_branch(toy: tuple[Path, Path], tmp_path: Path) -> None:
    _, conf = toy
    cfg = compose_config(
        "train",
        ["experiment=system_b_mg", f"hydra.searchpath=[file://{conf}]",
         "model/encoder@model.encoders.bone=toy",
         "model.encoders.rgb.preset=xs", "model.neck.dim=32",
         "model.neck.heads=4"],
        output_dir=tmp_path,
    )  # fmt: skip
    assert cfg.model.encoders.bone._target_ == "toy_encoder.ToyEncoder"
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model).eval()
    v = model.encoders["joint"].num_nodes
    x = {"joint": torch.randn(2, 3, 16, v, 1), "bone": torch.randn(2, 3, 16, v, 1)}
    with torch.no_grad():
        out = fuse_streams(model.encoders, model.neck, x)
        logits = model(x)
    assert isinstance(out, EncoderOutput) and set(out.aux) == {"joint", "bone"}
    # fusion cls + joint's T'·V AGCN tokens + bone's 16 toy tokens (one per frame)
    assert out.tokens.shape == (2, 1 + 4 * v + 16, cfg.model.neck.dim)
    assert logits.shape == (2, cfg.data.num_classes) and torch.isfinite(logits).all()


def test_toy_neck_replaces_the_token_fusion(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """One file + one yaml: ``model/neck=toy`` fuses System B's encoders in place of the token
    fusion; the model, its lr groups and a training step work unchanged."""
    _, conf = toy
    cfg = compose_config(
        "train",
        ["experiment=system_b_mg_synth", f"hydra.searchpath=[file://{conf}]",
         "model/neck=toy", "model.neck.width=12", "model.aux_loss_weight=0",
         "model.encoders.joint.base_channels=8", "model.encoders.bone.base_channels=8"],
        output_dir=tmp_path,
    )  # fmt: skip
    assert cfg.model.neck._target_ == "toy_neck.MeanNeck"
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model)
    assert type(model.neck).__name__ == "MeanNeck" and model.neck.out_channels == 12
    assert model.head.fc.in_features == 12  # the head sized by the neck
    v = model.encoders["joint"].num_nodes
    x = {"joint": torch.randn(2, 3, 16, v, 1), "bone": torch.randn(2, 3, 16, v, 1)}
    model.log = lambda *a, **k: None  # type: ignore[method-assign]
    loss = model.training_step({"x": x, "label": torch.tensor([0, 1])}, 0)
    loss.backward()
    for name in ("joint", "bone"):  # no rgb in this batch: its projection gets no gradient
        assert all(p.grad is not None for p in model.neck.proj[name].parameters())
    assert model.encoders["joint"].units[0].tcn.conv.weight.grad is not None


def test_toy_neck_trains_through_migalab_train(
    toy: tuple[Path, Path], tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    code, conf = toy
    env = {"PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")])}
    proc = run_script(
        ["migalab-train", "experiment=system_b_mg_synth", f"hydra.searchpath=[file://{conf}]",
         "model/neck=toy", "model.aux_loss_weight=0", "data.modalities=[joint,bone]",
         "model.encoders.joint.base_channels=8", "model.encoders.bone.base_channels=8",
         "debug=fdr", "trainer=cpu", "logger=csv", f"paths.log_dir={tmp_path / 'logs'}",
         *tiny_data_overrides(tiny_release, tiny_cache)],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    _ok(proc)
    (metrics,) = (tmp_path / "logs").glob("debug/runs/*/metrics.json")
    assert "toy_neck.MeanNeck" in (metrics.parent / ".hydra" / "config.yaml").read_text()
    assert 0.0 <= json.loads(metrics.read_text())["val"]["top1"] <= 1.0
