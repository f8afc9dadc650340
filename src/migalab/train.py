"""Training entry point (console script ``migalab-train``), lightning-hydra-template style.

    migalab-train                                   # default experiment (synthetic, CPU)
    migalab-train experiment=agcn_bone_synth        # another experiment
    migalab-train trainer=gpu data.batch_size=64    # any override
    migalab-train experiment=<exp> debug=overfit    # can it fit 16 clips? (migalab.overfit)
    migalab-train experiment=<exp> lr_find=true     # lr range test instead (migalab.lr_find)

Every run writes, in its Hydra run dir: ``.hydra/`` (composed config), ``config_resolved.yaml``,
``checkpoints/`` (best + last), ``csv/metrics.csv`` (or W&B files; kept across resumes by
``migalab.utils.csv_logger.ResumableCSVLogger``) and ``metrics.json`` with
the best checkpoint's val/test metrics.

Resume a run in its own run dir (its checkpoints live there), with the run's overrides:

    migalab-train <overrides> hydra.run.dir=logs/train/runs/<run> ckpt_path=last

``ckpt_path=last`` takes the newest readable of ``checkpoints/last.ckpt`` (end of the last
epoch), ``checkpoints/interrupted.ckpt`` (written when SIGTERM / Ctrl-C stopped the run
mid-epoch) and SLURM requeue checkpoints; it is an error when there is none. ``ckpt_path=auto``
(the default of ``trainer=slurm`` and ``hydra/launcher=slurm``) does the same but starts fresh
when there is none, so a requeued job continues with the very same command. Resuming from an
epoch-end checkpoint reproduces the uninterrupted run exactly (see ``migalab.data.samplers``).
Encoder weights named in the config (``pretrained=...``, a modality ``checkpoint``) are loaded
only when a fit starts fresh: a resume or an evaluation takes the weights from the checkpoint.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from migalab.models.finetune import load_initial_weights
from migalab.overfit import OVERFIT_FAILED_EXIT, OverfitCheck, overfit_metric
from migalab.reports import report_files
from migalab.utils.callbacks import (
    CollectiveFreeSigterm,
    RNGStateCheckpoint,
    StoreConfigInCheckpoint,
    find_resume_checkpoint,
)
from migalab.utils.checkpoints import AtomicCheckpointIO
from migalab.utils.csv_logger import ResumableCSVLogger
from migalab.utils.hydra import (
    instantiate_callbacks,
    instantiate_loggers,
    resolved_container,
    save_resolved_config,
)
from migalab.utils.summary import print_summary, write_metrics
from migalab.utils.wandb import finish_wandb

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, Any], Any]:
    """Fit, then evaluate the best checkpoint on val (and test when labelled).

    Returns the metrics payload written to ``metrics.json`` and the trainer.
    """
    start = time.time()
    if cfg.get("requires_encoder_init") and not _has_encoder_init(cfg.model):
        raise ValueError(
            "this recipe (recipe=crt) trains a classifier on a frozen trained encoder: give its "
            "weights with model.encoder.init=<checkpoint of the stage-1 run>"
        )
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("lr_find"):  # lr_find=true: the lr range test instead of training
        from migalab.lr_find import run_lr_find

        return run_lr_find(cfg), None
    output_dir = cfg.paths.output_dir
    container = resolved_container(cfg)

    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    callbacks.append(StoreConfigInCheckpoint(container))
    callbacks.append(RNGStateCheckpoint())
    callbacks.append(CollectiveFreeSigterm())
    overfit = None
    if cfg.data.get("overfit_clips") is not None:  # debug=overfit: the overfit check
        overfit = OverfitCheck(overfit_metric(cfg.data.get("target")), output_dir=output_dir)
        callbacks.append(overfit)
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=trainer_plugins(cfg.trainer)
    )
    if trainer.is_global_zero:
        save_resolved_config(cfg, output_dir)

    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), trainer)
    if ckpt_path and cfg.get("train", True) and trainer.is_global_zero:
        for lg in loggers:  # resuming in the run dir: metrics.csv keeps its earlier rows
            if isinstance(lg, ResumableCSVLogger):
                lg.keep_history(ckpt_path)
    for lg in loggers:
        lg.log_hyperparams(container)
    if cfg.get("train", True) and ckpt_path is None:
        # pretrained encoders / encoders' checkpoints: only for a fresh fit (a resume or
        # an evaluation takes every weight from its checkpoint and needs none of these files)
        loaded = load_initial_weights(model)
        if loaded:
            log.info("initial weights: %s", ", ".join(loaded))
    if cfg.get("train", True):
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException as err:  # graceful stop (SLURM preemption): checkpoint saved
            log.warning(
                "stopped by SIGTERM at epoch %d, step %d; resume with: migalab-train "
                "hydra.run.dir=%s ckpt_path=last (plus this run's overrides)",
                trainer.current_epoch,
                trainer.global_step,
                output_dir,
            )
            finish_wandb(loggers, exit_code=143)
            raise SIGTERMException(143) from err  # exit status 128 + SIGTERM
    if overfit is not None:  # no checkpoint and no test split: the check's outcome is the result
        payload = {
            "task": cfg.task_name,
            "run_dir": str(output_dir),
            "ckpt_path": None,
            "epochs": trainer.current_epoch,
            "wall_time_s": round(time.time() - start, 1),
            "val": model.last_summaries.get("val", {}),
            "overfit": overfit.result,
        }
        if trainer.is_global_zero:
            write_metrics(output_dir, payload)
        finish_wandb(loggers)
        return payload, trainer
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt = ckpt or None  # fast_dev_run / no checkpointing: evaluate the weights in memory
    if not cfg.get("train", True) and ckpt_path:
        ckpt = ckpt_path

    results: dict[str, Any] = {}
    trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
    results["val"] = model.last_summaries.get("val", {})
    if cfg.get("test", True) and datamodule.has_labels("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
        results["test"] = model.last_summaries.get("test", {})
    payload = {
        "task": cfg.task_name,
        "run_dir": str(output_dir),
        "ckpt_path": ckpt,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.time() - start, 1),
        **results,
    }
    balance = getattr(datamodule, "emotion_balance", None)
    if balance:  # target=emotion: win / lose counts of every split (majority baselines)
        payload["balance"] = balance
    if trainer.is_global_zero:
        path = write_metrics(output_dir, payload)
        print_summary(
            f"{cfg.task_name}: best checkpoint",
            results,
            footer=f"run dir: {output_dir}\nmetrics: {path}\ncheckpoint: {ckpt}",
        )
        if cfg.get("report", False):
            report_files(
                output_dir, payload, loggers, f"{cfg.task_name} {os.path.basename(output_dir)}"
            )
    finish_wandb(loggers)  # each job of a multirun gets its own W&B run
    return payload, trainer


def _has_encoder_init(node: Any) -> bool:
    """Whether any encoder in a model config names ``init`` weights."""
    if isinstance(node, DictConfig):
        if node.get("init"):
            return True
        return any(_has_encoder_init(node.get(k)) for k in node if k != "init")
    return False


def trainer_plugins(trainer_cfg: DictConfig) -> list[Any]:
    """The trainer config's ``plugins`` plus :class:`AtomicCheckpointIO` (checkpoints written
    atomically) unless a checkpoint IO plugin is configured already."""
    from lightning.pytorch.plugins.io import CheckpointIO

    plugins = [hydra.utils.instantiate(p) for p in trainer_cfg.get("plugins") or []]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins


def resolve_ckpt_path(ckpt_path: str | None, trainer: L.Trainer) -> str | None:
    """The checkpoint ``trainer.fit`` starts from.

    ``last``: the newest readable checkpoint of this run dir, an error when there is none (never
    a silent fresh start). ``auto``: the same, or None (a fresh start) when there is none: the
    same command then serves the first start and every requeue. Anything else is a path (or
    None). Says which it did.
    """
    if ckpt_path not in ("last", "auto"):
        return ckpt_path
    found = find_resume_checkpoint(trainer, required=ckpt_path == "last")
    if found:
        log.info("ckpt_path=%s: resuming from %s", ckpt_path, found)
    else:
        log.info("ckpt_path=auto: no checkpoint in this run dir yet; starting fresh")
    return found


def metric_value(payload: dict[str, Any], name: str | None) -> float | None:
    """Look up e.g. ``val/top1`` in the payload (what sweepers optimise)."""
    if not name:
        return None
    split, _, key = name.partition("/")
    value = payload.get(split, {}).get(key)
    return float(value) if value is not None else None


def _task(cfg: DictConfig) -> float | None:
    payload, _ = train(cfg)
    if not payload.get("overfit", {}).get("reached", True):
        sys.exit(OVERFIT_FAILED_EXIT)  # the check printed its one line
    return metric_value(payload, cfg.get("optimized_metric"))


if __name__ == "__main__":  # python -m migalab.train: the console script's entry
    from migalab.cli import train as console_entry

    console_entry()
