"""Learning-rate range test of a recipe: ``migalab-train experiment=<exp> lr_find=true``.

Instead of training, Lightning's lr finder (``Tuner(trainer).lr_find``) runs on the
experiment's own model, datamodule and trainer settings: starting from the recipe's initial
weights (``load_initial_weights``, as a fresh fit), it trains ``num_training`` optimiser steps
while raising the lr from ``min_lr`` to ``max_lr`` and records the (smoothed) training loss of
each step. The suggestion is the lr of the steepest fall of that loss (:func:`suggest_lr`).

The suggestion is computed here, not by ``_LRFinder.suggestion()``: since Lightning 2.5.3 that
differentiates the loss with respect to the lr itself, also when the lrs are spaced
exponentially, so a tiny wobble of the loss among the smallest lrs outweighs the real fall
(Lightning issue #21141; on the default experiment it suggested 3.6e-5 where the loss only
starts to fall at ~1e-3). :func:`suggest_lr` differentiates with respect to log10(lr) in the
exponential mode, as Lightning's open fix (#21171) does; Lightning's own value is kept in
``lr_find.json`` as ``lightning_suggested_lr``.

Lightning swaps the recipe's lr scheduler (``cosine_warmup``) for its own sweep and sets every
parameter group of the recipe's optimiser to the swept lr directly (no ``lr`` attribute of the
module is needed or changed): ``model.backbone_lr_mult`` and ``model.lr_scaling`` are not applied
during the sweep, so the suggestion compares with the *effective* lr of the recipe's first
parameter group (``model.optimizer.lr``, times the lr-scaling factor when that is on).

Written into the run dir (``paths.output_dir``), atomically: ``lr_find.png`` (loss against lr,
the suggestion in red, the recipe's lr dashed) and ``lr_find.json``. No checkpoint callback,
logger or validation runs; Lightning's own snapshot of the initial weights
(``.lr_find_<uuid>.ckpt`` in the run dir) is removed when the sweep ends.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from migalab.errors import UserError
from migalab.utils.io import atomic_write, atomic_write_json

__all__ = ["DEFAULT_SETTINGS", "LrFindError", "lr_find_settings", "run_lr_find", "suggest_lr"]

log = logging.getLogger(__name__)

#: ``lr_find_settings`` of conf/train.yaml (a key left out takes its value from here)
DEFAULT_SETTINGS: dict[str, Any] = {
    "min_lr": 1e-6,
    "max_lr": 1.0,
    "num_training": 100,
    "mode": "exponential",
    "early_stop_threshold": 4.0,
}
#: the suggestion skips the first SKIP_BEGIN steps (Lightning's smoothed loss reads low there,
#: issue #14167) and the last SKIP_END, as Lightning's does, and needs 2 points
SKIP_BEGIN, SKIP_END = 10, 1
MIN_STEPS = SKIP_BEGIN + SKIP_END + 2
PLOT_FILE = "lr_find.png"
JSON_FILE = "lr_find.json"


class LrFindError(UserError, ValueError):
    """``lr_find=true`` with settings or options it cannot honour, or a sweep without a
    suggestion."""


def lr_find_settings(cfg: DictConfig) -> dict[str, Any]:
    """The sweep's settings: ``cfg.lr_find_settings`` over :data:`DEFAULT_SETTINGS`, checked."""
    given = cfg.get("lr_find_settings") or {}
    given = OmegaConf.to_container(given, resolve=True) if isinstance(given, DictConfig) else given
    if not isinstance(given, Mapping):
        raise LrFindError(f"lr_find_settings must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(DEFAULT_SETTINGS))
    if unknown:
        raise LrFindError(
            f"lr_find_settings: unknown key(s) {', '.join(unknown)} "
            f"(known: {', '.join(DEFAULT_SETTINGS)})"
        )
    s = {**DEFAULT_SETTINGS, **given}
    try:
        s["min_lr"], s["max_lr"] = float(s["min_lr"]), float(s["max_lr"])
        s["num_training"] = int(s["num_training"])
        if s["early_stop_threshold"] is not None:
            s["early_stop_threshold"] = float(s["early_stop_threshold"])
    except (TypeError, ValueError) as err:
        raise LrFindError(f"lr_find_settings: {err}") from None
    if not 0 < s["min_lr"] < s["max_lr"] or not math.isfinite(s["max_lr"]):
        raise LrFindError(
            f"lr_find_settings: need 0 < min_lr < max_lr, got min_lr={s['min_lr']} "
            f"max_lr={s['max_lr']}"
        )
    if s["num_training"] < MIN_STEPS:
        raise LrFindError(
            f"lr_find_settings.num_training must be at least {MIN_STEPS} (the suggestion skips "
            f"the first 10 steps and the last), got {s['num_training']}"
        )
    if s["mode"] not in ("exponential", "linear"):
        raise LrFindError(f"lr_find_settings.mode must be exponential or linear, got {s['mode']!r}")
    threshold = s["early_stop_threshold"]
    if threshold is not None and not threshold > 1:
        raise LrFindError(
            "lr_find_settings.early_stop_threshold (stop when the loss exceeds this multiple of "
            f"the best loss) must be > 1 or null, got {threshold}"
        )
    return s


def _check_options(cfg: DictConfig) -> None:
    """Refuse options that contradict an lr sweep from the recipe's initial weights."""
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "", "auto"):
        raise LrFindError(
            f"lr_find=true sweeps the lr from the recipe's initial weights; it does not resume "
            f"a checkpoint: drop ckpt_path={ckpt} (ckpt_path=auto is ignored)"
        )
    if cfg.trainer.get("fast_dev_run"):
        raise LrFindError(
            "lr_find=true cannot run with trainer.fast_dev_run (Lightning skips the lr finder "
            "then): drop debug=fdr / trainer.fast_dev_run"
        )


def suggest_lr(
    lrs: Sequence[float], losses: Sequence[float | None], mode: str = "exponential"
) -> int | None:
    """Index of the suggested lr: the steepest fall of the loss against log10(lr) (``mode``
    exponential) or lr (linear), over the finite losses between the first :data:`SKIP_BEGIN`
    and the last :data:`SKIP_END` steps. None when fewer than 2 such points exist."""
    import torch

    idx = list(range(len(lrs)))[SKIP_BEGIN:-SKIP_END]
    idx = [i for i in idx if losses[i] is not None and math.isfinite(losses[i])]
    if len(idx) < 2:
        return None
    x = torch.tensor([lrs[i] for i in idx], dtype=torch.float64)
    if mode == "exponential":
        x = torch.log10(x)
    y = torch.tensor([losses[i] for i in idx], dtype=torch.float64)
    grad = torch.gradient(y, spacing=[x])[0]
    return idx[int(torch.argmin(grad))]


def _finite_or_none(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _save_plot(result: Any, path: Path, recipe: str, recipe_lr: float, best: int | None) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = result.plot(suggest=False)  # Lightning's own mark would be its suggestion
    ax = fig.axes[0]
    ax.axvline(recipe_lr, color="grey", linestyle="--", label=f"{recipe} {recipe_lr:.3g}")
    if best is not None:
        lr, loss = result.results["lr"][best], result.results["loss"][best]
        ax.plot(
            lr,
            loss,
            marker="o",
            markersize=10,
            color="red",
            linestyle="none",
            label=f"suggested {lr:.3g}",
        )
    ax.set_title("lr range test (smoothed training loss)")
    ax.legend(loc="best")
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def run_lr_find(cfg: DictConfig) -> dict[str, Any]:
    """Run Lightning's lr finder on the recipe of ``cfg`` (a composed ``train`` / ``pretrain``
    config) instead of training; write ``lr_find.png`` and ``lr_find.json`` into
    ``cfg.paths.output_dir`` and print one line with the suggested lr, the recipe's lr, their
    ratio and the plot's path.

    Returns the ``lr_find.json`` payload. Raises :class:`LrFindError` for a resume
    ``ckpt_path``, ``trainer.fast_dev_run``, bad ``lr_find_settings``, or a sweep that gives
    no suggestion (the files are written first).
    """
    from lightning.pytorch.tuner import Tuner

    from migalab.models.finetune import load_initial_weights
    from migalab.train import trainer_plugins

    _check_options(cfg)
    settings = lr_find_settings(cfg)
    start = time.time()
    output_dir = Path(cfg.paths.output_dir)
    recipe_lr = float(cfg.model.optimizer.lr)

    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    loaded = load_initial_weights(model)  # the weights a fresh fit would start from
    if loaded:
        log.info("initial weights: %s", ", ".join(loaded))
    # the recipe's trainer, minus what would write files or spend time besides the sweep: no
    # configured callbacks (checkpoints), loggers or validation; as many epochs as num_training
    # steps take on a small training set
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[],
        logger=False,
        enable_checkpointing=False,
        plugins=trainer_plugins(cfg.trainer),
        max_epochs=-1,
        max_steps=settings["num_training"],  # also the scheduler's length, swapped out anyway
        num_sanity_val_steps=0,
        check_val_every_n_epoch=10**9,
        val_check_interval=1.0,
    )
    result = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=settings["min_lr"],
        max_lr=settings["max_lr"],
        num_training=settings["num_training"],
        mode=settings["mode"],
        early_stop_threshold=settings["early_stop_threshold"],
        update_attr=False,  # nothing trains afterwards: the module keeps the recipe's lr
    )
    if result is None:  # pragma: no cover - Lightning skips it only under fast_dev_run (refused)
        raise RuntimeError("Lightning's lr finder did not run")
    lrs = [float(x) for x in result.results.get("lr", [])]
    losses = [_finite_or_none(x) for x in result.results.get("loss", [])]
    best = suggest_lr(lrs, losses, settings["mode"])
    suggestion = lrs[best] if best is not None else None
    lightning_suggestion = result.suggestion(skip_begin=SKIP_BEGIN, skip_end=SKIP_END)
    lr_info = dict(getattr(model, "lr_info", {}) or {})
    effective_lr = recipe_lr * float(lr_info.get("factor", 1.0))
    payload: dict[str, Any] = {
        "task": cfg.get("task_name"),
        "model": cfg.model.get("_target_"),
        "suggested_lr": suggestion,
        "recipe_lr": recipe_lr,
        "effective_lr": effective_lr,
        "ratio": suggestion / effective_lr if suggestion is not None else None,
        "suggestion": f"steepest fall of the smoothed loss against "
        f"{'log10(lr)' if settings['mode'] == 'exponential' else 'lr'}, without the first "
        f"{SKIP_BEGIN} steps and the last {SKIP_END}",
        "lightning_suggested_lr": lightning_suggestion,
        "lr_scaling": lr_info or None,
        "backbone_lr_mult": cfg.model.get("backbone_lr_mult"),
        "settings": settings,
        "steps": len(lrs),
        "stopped_early": len(lrs) < settings["num_training"],
        "wall_time_s": round(time.time() - start, 1),
        "plot": PLOT_FILE,
        "lrs": lrs,
        "losses": losses,
    }
    if not trainer.is_global_zero:
        return payload
    recipe = "recipe's effective lr" if lr_info else "recipe's lr"
    plot = _save_plot(result, output_dir / PLOT_FILE, recipe, effective_lr, best)
    path = atomic_write_json(output_dir / JSON_FILE, payload)
    if suggestion is None:
        raise LrFindError(
            f"lr_find: no suggestion from {len(lrs)} step(s) (too few finite losses: raise "
            f"lr_find_settings.num_training or lower min_lr); see {plot} and {path}"
        )
    scaled = f" (effective {effective_lr:.4g} after lr_scaling)" if lr_info else ""
    versus = "effective" if lr_info else "recipe"
    mult = payload["backbone_lr_mult"]
    note = (
        f"; the sweep used one lr for all groups (recipe: encoder x{mult})"
        if mult not in (None, 1, 1.0)
        else ""
    )
    print(
        f"lr_find: suggested lr {suggestion:.4g} vs the recipe's model.optimizer.lr "
        f"{recipe_lr:.4g}{scaled}: ratio suggested/{versus} {payload['ratio']:.3g}{note}; "
        f"plot: {plot} (data: {path})",
        flush=True,
    )
    return payload
