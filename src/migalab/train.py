"""Training entry point (console script ``migalab-train``), lightning-hydra-template style.

    migalab-train                                   # default experiment (synthetic, CPU)
    migalab-train experiment=agcn_bone_synth        # another experiment
    migalab-train trainer=gpu data.batch_size=64    # any override

Every run writes, in its Hydra run dir: ``.hydra/`` (composed config), ``config_resolved.yaml``,
``checkpoints/`` (best + last), ``csv/metrics.csv`` (or W&B files) and ``metrics.json`` with
the best checkpoint's val/test metrics.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from migalab.utils.callbacks import StoreConfigInCheckpoint
from migalab.utils.hydra import (
    instantiate_callbacks,
    instantiate_loggers,
    register_resolvers,
    resolved_container,
    save_resolved_config,
)
from migalab.utils.summary import print_summary, write_metrics

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, Any], Any]:
    """Fit, then evaluate the best checkpoint on val (and test when labelled).

    Returns the metrics payload written to ``metrics.json`` and the trainer.
    """
    start = time.time()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = cfg.paths.output_dir
    container = resolved_container(cfg)

    datamodule = hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    callbacks.append(StoreConfigInCheckpoint(container))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if trainer.is_global_zero:
        save_resolved_config(cfg, output_dir)
    for lg in loggers:
        lg.log_hyperparams(container)

    if cfg.get("train", True):
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    ckpt = ckpt or None  # fast_dev_run / no checkpointing: evaluate the weights in memory
    if not cfg.get("train", True) and cfg.get("ckpt_path"):
        ckpt = cfg.ckpt_path

    results: dict[str, Any] = {}
    trainer.validate(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    results["val"] = model.last_summaries.get("val", {})
    if cfg.get("test", True) and datamodule.has_labels("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        results["test"] = model.last_summaries.get("test", {})
    payload = {
        "task": cfg.task_name,
        "run_dir": str(output_dir),
        "ckpt_path": ckpt,
        "epochs": trainer.current_epoch,
        "wall_time_s": round(time.time() - start, 1),
        **results,
    }
    if trainer.is_global_zero:
        path = write_metrics(output_dir, payload)
        print_summary(
            f"{cfg.task_name}: best checkpoint",
            results,
            footer=f"run dir: {output_dir}\nmetrics: {path}\ncheckpoint: {ckpt}",
        )
    return payload, trainer


def _metric_value(payload: dict[str, Any], name: str | None) -> float | None:
    """Look up e.g. ``val/top1`` in the payload (what sweepers optimise)."""
    if not name:
        return None
    split, _, key = name.partition("/")
    value = payload.get(split, {}).get(key)
    return float(value) if value is not None else None


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    payload, _ = train(cfg)
    return _metric_value(payload, cfg.get("optimized_metric"))


def main() -> None:
    """Console entry point: register resolvers, then hand over to Hydra."""
    register_resolvers()
    _main()


if __name__ == "__main__":
    main()
