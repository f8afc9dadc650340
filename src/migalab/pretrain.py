"""Self-supervised pretraining entry point (console script ``migalab-pretrain``).

    migalab-pretrain                                     # MAMP on the synthetic data, CPU
    migalab-pretrain experiment=pretrain/mamp_skeleton data.release_root=/data/miga2025
    migalab-train experiment=stt_joint_synth model.encoder.init=<pretrain checkpoint>

The same machinery as ``migalab-train`` (:func:`migalab.train.train`): run dirs, atomic
checkpoints (best = lowest ``val/loss``, ``last.ckpt``), ``ckpt_path=last`` / ``auto`` resume,
SIGTERM checkpoints, CSV / W&B loggers, DDP and AMP through ``trainer=...``; only the config
(``conf/pretrain.yaml``: ``data.unlabelled`` windows, a pretext model) differs. ``metrics.json``
holds the best checkpoint's ``val.loss`` and its path.
"""

from __future__ import annotations

from omegaconf import DictConfig

from migalab.train import metric_value, train


def _task(cfg: DictConfig) -> float | None:
    payload, _ = train(cfg)
    return metric_value(payload, cfg.get("optimized_metric"))


if __name__ == "__main__":  # python -m migalab.pretrain: the console script's entry
    from migalab.cli import pretrain as console_entry

    console_entry()
