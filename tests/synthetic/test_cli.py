"""``migalab-synth`` (cli.main) writes a release; every SynthConfig field has an option."""

from __future__ import annotations

import dataclasses
import json

from migalab.synthetic import SynthConfig, release_is_current
from migalab.synthetic.cli import build_parser, config_from_args, main

ARGS = ["--format", "csv", "--videos-train", "2", "--videos-val", "1", "--videos-test", "1",
        "--clips-per-video", "2", "3", "--clip-frames", "16", "24", "--gap-frames", "4", "8",
        "--seed", "9", "--no-progress"]  # fmt: skip


def test_main_writes_release(tmp_path, capsys):
    root = tmp_path / "rel"
    assert main([str(root), *ARGS]) == 0
    meta = json.loads((root / "synth_meta.json").read_text())
    assert meta["config"]["seed"] == 9
    assert meta["counts"]["videos"] == {"train": 2, "validate": 1, "test": 1}
    cfg = SynthConfig.from_dict(meta["config"])
    assert release_is_current(root, cfg)
    assert len(list(root.glob("*/*/*_openpose.csv"))) == 4
    assert len(list(root.glob("*/*/*_label.csv"))) == 4
    assert (root / "emotion_labels.csv").is_file()
    capsys.readouterr()
    assert main([str(root), *ARGS]) == 0  # current: kept
    assert "current" in capsys.readouterr().out


def test_every_field_has_an_option(tmp_path):
    args = build_parser().parse_args([str(tmp_path), "--min-frames", "100", "--clip-classes", "all",
                                      "--tail-mix", "0.5", "--workers", "3", "--noise", "0.5"])  # fmt: skip
    cfg = config_from_args(args)
    assert cfg.min_video_frames == 100 and cfg.tail_mix == 0.5 and cfg.workers == 3
    assert cfg.clip_classes == tuple(range(32)) and cfg.noise == 0.5
    defaults = config_from_args(build_parser().parse_args([str(tmp_path)]))
    assert defaults == SynthConfig()
    assert {f.name for f in dataclasses.fields(SynthConfig)} <= set(dataclasses.asdict(defaults))


def test_bad_config_exits_2(tmp_path, capsys):
    assert main([str(tmp_path), "--clip-frames", "50", "20", "--no-progress"]) == 2
    assert "clip_frames" in capsys.readouterr().err
