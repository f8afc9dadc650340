"""The extension point: a new encoder is one Python file + one yaml in ``model/encoder/``.

The toy encoder and its config live only in a temporary directory (the module on
``PYTHONPATH``, the yaml in a config dir added with ``hydra.searchpath``); nothing else changes,
and it trains through ``migalab-train`` and drops into a System B branch.
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


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(directory holding toy_encoder.py, config dir holding model/encoder/toy.yaml)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "toy_encoder.py").write_text(TOY_ENCODER)
    conf = tmp_path / "conf"
    (conf / "model" / "encoder").mkdir(parents=True)
    (conf / "model" / "encoder" / "toy.yaml").write_text(TOY_YAML)
    monkeypatch.syspath_prepend(str(code))
    yield code, conf
    sys.modules.pop("toy_encoder", None)


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
         "model/encoder@model.encoder.modalities.bone.encoder=toy",
         "model.encoder.modalities.rgb.encoder.preset=xs", "model.encoder.dim=32",
         "model.encoder.heads=4"],
        output_dir=tmp_path,
    )  # fmt: skip
    assert cfg.model.encoder.modalities.bone.encoder._target_ == "toy_encoder.ToyEncoder"
    torch.manual_seed(0)
    model = hydra.utils.instantiate(cfg.model).eval()
    v = model.encoder.encoders["joint"].num_nodes
    x = {"joint": torch.randn(2, 3, 16, v, 1), "bone": torch.randn(2, 3, 16, v, 1)}
    with torch.no_grad():
        out = model.encoder(x)
        logits = model(x)
    assert isinstance(out, EncoderOutput) and set(out.aux) == {"joint", "bone"}
    # fusion cls + joint's T'·V AGCN tokens + bone's 16 toy tokens (one per frame)
    assert out.tokens.shape == (2, 1 + 4 * v + 16, cfg.model.encoder.dim)
    assert logits.shape == (2, cfg.data.num_classes) and torch.isfinite(logits).all()
