"""Where the configs and the project live.

The Hydra configs are the top-level ``conf/`` of the repository, installed as the package
``migalab.conf`` (see ``setup.py``): entry points name them by module (:data:`CONFIG_PATH`), so
console scripts find them from any directory, in an editable install and in a wheel alike.
Data and logs default to the project root: the checkout holding ``conf/`` in an editable
install, else the current directory (``$MIGALAB_ROOT`` overrides both).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: the package holding the Hydra configs
CONFIG_MODULE = "migalab.conf"
#: ``config_path`` of every ``@hydra.main`` entry point
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def project_root() -> Path:
    """The migalab checkout root (``$MIGALAB_ROOT`` if set, else the folder holding ``conf/``
    and ``pyproject.toml`` above this package — an editable install — else the current working
    directory, for an installed wheel)."""
    env = os.environ.get("MIGALAB_ROOT")
    if env:
        return Path(env).resolve()
    return checkout_root() or Path.cwd().resolve()


def checkout_root() -> Path | None:
    """The migalab checkout this package is installed from (an editable install: the folder
    above it holding ``conf/train.yaml`` and ``pyproject.toml``), None for an installed wheel.
    Independent of the current directory and of ``$MIGALAB_ROOT``."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "conf" / "train.yaml").is_file() and (parent / "pyproject.toml").is_file():
            return parent
    return None


def config_dir() -> Path:
    """The folder of the installed configs (``conf/`` of the checkout in an editable install)."""
    return Path(str(resources.files(CONFIG_MODULE)))
