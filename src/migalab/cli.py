"""The one Hydra entry of every console script (``migalab-train``, ``-pretrain``, ``-eval``,
``-predict``, ``-pseudolabel``).

Each script is :func:`hydra_app`'s ``main`` for its config (``conf/<name>.yaml``) and its task,
named as ``"module:function"`` and imported only when the task runs: composing a config,
``--help``, ``--cfg job`` and a refused override never import torch or Lightning. Every entry
registers the suite's resolvers first, reports a :class:`~migalab.errors.UserError` (or Hydra's
refusal of the command line) as one line with exit status 2, and honours ``--debug``
(:func:`migalab.errors.run_hydra_app`). ``python -m migalab.train`` runs the same entry.

The task functions are module-level (not closures), so launchers that pickle them (submitit's
SLURM launcher) can.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from migalab.errors import report_user_errors, run_hydra_app
from migalab.utils.paths import CONFIG_PATH
from migalab.utils.resolvers import register_resolvers


def run_task(target: str, cfg: DictConfig) -> Any:
    """Import ``module:function`` (``target``) and run it on the composed config."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)(cfg)


@report_user_errors
def _train(cfg: DictConfig) -> Any:
    return run_task("migalab.train:_task", cfg)


@report_user_errors
def _pretrain(cfg: DictConfig) -> Any:
    return run_task("migalab.pretrain:_task", cfg)


@report_user_errors
def _eval(cfg: DictConfig) -> Any:
    return run_task("migalab.eval:_task", cfg)


@report_user_errors
def _predict(cfg: DictConfig) -> Any:
    return run_task("migalab.predict:_task", cfg)


@report_user_errors
def _pseudolabel(cfg: DictConfig) -> Any:
    return run_task("migalab.pseudolabel:_task", cfg)


def hydra_app(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """The console entry point of ``task`` (a :func:`report_user_errors` function) on
    ``conf/<config_name>.yaml``: resolvers, ``--debug``, one-line user errors, exit status 2."""
    app = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)(task)

    def main() -> None:
        register_resolvers()
        run_hydra_app(app, task)

    main.__doc__ = f"Console entry point of conf/{config_name}.yaml."
    return main


train = hydra_app("train", _train)
pretrain = hydra_app("pretrain", _pretrain)
evaluate = hydra_app("eval", _eval)
predict = hydra_app("predict", _predict)
pseudolabel = hydra_app("pseudolabel", _pseudolabel)
