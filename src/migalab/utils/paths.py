"""Where the project lives: the repo root holds ``conf/`` and is the default home of data and logs."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The migalab checkout root (``$MIGALAB_ROOT`` if set, else the folder holding ``conf/``
    above this package, else the current working directory)."""
    env = os.environ.get("MIGALAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "conf" / "train.yaml").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd().resolve()


def config_dir() -> Path:
    """The Hydra config root (``<project_root>/conf``)."""
    return project_root() / "conf"
