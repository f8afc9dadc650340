"""Shared fixtures: a tiny synthetic iMiGUE release and its cache (built once per session), and
Hydra config composition helpers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from migalab.utils.hydra import register_resolvers
from migalab.utils.paths import config_dir

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

#: A release small enough for seconds-long tests, with every split present.
TINY_SYNTH = {
    "seed": 0,
    "num_videos": {"train": 4, "validate": 2, "test": 2},
    "clips_per_video": [6, 8],
    "table_format": "csv",
    "workers": 1,
}


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic MiGA 2025 release (csv tables) shared by the session's tests."""
    from migalab.data.synthetic import SynthConfig, generate_release

    root = tmp_path_factory.mktemp("synth") / "release"
    generate_release(root, SynthConfig(**TINY_SYNTH), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tiny_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared skeleton cache of :func:`tiny_release`."""
    from migalab.data.prepare import prepare_release

    out = tmp_path_factory.mktemp("cache") / "cache"
    prepare_release(tiny_release, out, progress=False)
    return out


def compose_config(
    config_name: str, overrides: Sequence[str] = (), output_dir: Path | None = None
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides as the CLI would (no run dir)."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir / "logs")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def tiny_data_overrides(release: Path, cache: Path) -> list[str]:
    """Overrides pointing the data config at the tiny release/cache, loaders in-process."""
    return [
        f"data.release_root={release}",
        f"data.cache_dir={cache}",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "+data.synthetic.clips_per_video=[6,8]",
        "data.synthetic.num_videos={train:4,validate:2,test:2}",
        "data.synthetic.workers=1",
    ]
