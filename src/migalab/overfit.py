"""The overfit check, a first debugging step: can the recipe fit a handful of fixed clips?

    migalab-train experiment=<exp> debug=overfit            # 16 clips (data.overfit_clips)

``debug=overfit`` (``conf/debug/overfit.yaml``) sets ``data.overfit_clips``: the datamodule
then trains on that many fixed clips of the training split, served with the evaluation
transforms, and validates on the very same clips
(:meth:`~migalab.data.datamodule.ClipDataModule._setup_overfit`). :class:`OverfitCheck` (added by
``migalab.train.train`` whenever ``data.overfit_clips`` is set) reads the validation accuracy
after every epoch (``val/top1``, or ``val/clip_acc`` for ``data.target=emotion``), stops the fit
as soon as it is 100 %, and at the end prints one line::

    overfit: 100 % of 16 training clips after 24 optimizer steps (12 epochs, 9.1 s)

or ``overfit FAILED: best 62.5 % of 16 clips after 400 steps ...`` with hints (then
``migalab-train`` exits with status :data:`OVERFIT_FAILED_EXIT`), and writes
``overfit.json`` (:data:`OVERFIT_FILE`) into the run dir: clips, steps, epochs, seconds,
best accuracy, whether 100 % was reached, and per epoch the mean training loss and the
accuracy. Model regularisation (dropout, drop path, label smoothing...) stays as in the
recipe: the check asks whether the recipe as configured can fit.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer

from migalab.utils.io import atomic_write_json

__all__ = [
    "OVERFIT_FAILED_EXIT",
    "OVERFIT_FILE",
    "OverfitCheck",
    "overfit_metric",
]

#: written into the run dir at the end of an overfit check
OVERFIT_FILE = "overfit.json"
#: exit status of ``migalab-train ... debug=overfit`` when 100 % was not reached (a failed
#: check, not a refused command: user errors exit 2)
OVERFIT_FAILED_EXIT = 1

_HINT = (
    "hint: check the learning rate (the same command with lr_find=true instead of "
    "debug=overfit), augmentation and regularisation (the check serves evaluation transforms), "
    "the labels (are these clips' classes right?), and whether the loss falls at all "
    "(overfit.json in the run dir has it per epoch)"
)


def overfit_metric(target: str) -> str:
    """The accuracy the check reads: ``val/clip_acc`` for ``data.target=emotion`` (clip level:
    the clips are what is fitted), ``val/top1`` otherwise."""
    return "val/clip_acc" if target == "emotion" else "val/top1"


def _percent(value: float) -> str:
    """``1.0`` -> ``100``, ``0.875`` -> ``87.5``, ``0.9375`` -> ``93.75``."""
    return f"{100.0 * value:.4g}"


class OverfitCheck(Callback):
    """Stop the fit once the validation accuracy ``monitor`` reaches ``goal`` (exactly: 1.0 =
    every clip right); report the outcome (one line, and ``overfit.json``).

    Args:
        monitor: the logged metric to read after each validation (``val/top1``,
            ``val/clip_acc``).
        clips: the number of clips fitted, for the report (default: the length of the
            datamodule's training set).
        output_dir: where ``overfit.json`` goes (default: the trainer's ``default_root_dir``).
        goal: the accuracy that ends the check (1.0).

    After the fit :attr:`result` holds the report (see the module docstring).
    """

    def __init__(
        self,
        monitor: str = "val/top1",
        clips: int | None = None,
        output_dir: str | Path | None = None,
        goal: float = 1.0,
    ) -> None:
        self.monitor = monitor
        self.clips = clips
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.goal = float(goal)
        self.best = -math.inf
        self.reached: dict[str, int] | None = None
        self.history: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self._start = time.monotonic()
        self._losses: list[float] = []

    # -- hooks ----------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.monotonic()
        if self.clips is None:
            datasets = getattr(getattr(trainer, "datamodule", None), "datasets", None) or {}
            train = datasets.get("train")
            self.clips = len(train) if train is not None else None

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(float(loss.detach()))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """After the module logged its epoch metrics: record, and stop at the goal."""
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"the overfit check reads {self.monitor}, which this model does not "
                f"log (logged: {sorted(trainer.callback_metrics)})"
            )
        self.update(float(value), trainer.global_step, trainer.current_epoch + 1)
        if self.reached is not None:
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.finish(trainer.global_step, trainer.current_epoch)
        if trainer.is_global_zero:
            self.report(self.output_dir or Path(trainer.default_root_dir))

    # -- the check, apart from Lightning (tests call these directly) ----------------------------
    def update(self, accuracy: float, step: int, epoch: int) -> bool:
        """Record one validation (``epoch`` 1-based, ``step`` optimiser steps so far); True when
        it reaches the goal (the first time is kept)."""
        loss = sum(self._losses) / len(self._losses) if self._losses else None
        self._losses = []
        self.history.append(
            {"epoch": int(epoch), "step": int(step), "accuracy": accuracy, "train_loss": loss}
        )
        self.best = max(self.best, accuracy)
        if accuracy >= self.goal and self.reached is None:
            self.reached = {"step": int(step), "epoch": int(epoch)}
        return accuracy >= self.goal

    def finish(self, step: int, epochs: int) -> dict[str, Any]:
        """:attr:`result` once the fit ended (``step`` / ``epochs`` done when the goal was not
        reached)."""
        done = self.reached or {"step": int(step), "epoch": int(epochs)}
        self.result = {
            "reached": self.reached is not None,
            "metric": self.monitor,
            "clips": self.clips,
            "best_accuracy": self.best if math.isfinite(self.best) else None,
            "steps": done["step"],
            "epochs": done["epoch"],
            "seconds": round(time.monotonic() - self._start, 1),
            "history": self.history,
        }
        return self.result

    def line(self) -> str:
        """The one-line outcome printed at the end."""
        r = self.result
        clips = r["clips"] if r["clips"] is not None else "?"
        if r["reached"]:
            return (
                f"overfit: 100 % of {clips} training clips after {r['steps']} optimizer "
                f"steps ({r['epochs']} epochs, {r['seconds']} s)"
            )
        best = _percent(r["best_accuracy"]) if r["best_accuracy"] is not None else "-"
        return (
            f"overfit FAILED: best {best} % of {clips} clips ({r['metric']}) after "
            f"{r['steps']} steps ({r['epochs']} epochs, {r['seconds']} s) — {_HINT}"
        )

    def report(self, output_dir: Path) -> Path:
        """Print :meth:`line` (stdout when reached, stderr when not) and write
        ``overfit.json`` into ``output_dir``; returns its path."""
        print(self.line(), file=sys.stdout if self.result["reached"] else sys.stderr, flush=True)
        return atomic_write_json(Path(output_dir) / OVERFIT_FILE, self.result)
