"""Optimisation shared by the task modules (gesture, emotion): the optimiser with an encoder lr
multiplier, lr scaling with the global batch, the per-step scheduler, ``torch.compile`` of the
encoder and channels-last memory format, and renamed checkpoint entries.

:class:`OptimizationMixin` goes before ``LightningModule`` in a task's bases; the task calls
:meth:`~OptimizationMixin.init_optimization` in ``__init__`` and
:meth:`~OptimizationMixin.setup_encoder` in ``setup``, has an ``encoder`` attribute and a
``backbone_lr_mult`` hyperparameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from migalab.utils.checkpoints import RENAMED_STATE_KEYS, upgrade_state_dict

LR_SCALING_RULES = ("linear", "sqrt")


def lr_scale_factor(global_batch: int, base_batch_size: int, rule: str = "linear") -> float:
    """Multiplier of the configured lr for a global batch: ``global / base`` (linear, Goyal et
    al. 2017) or ``sqrt(global / base)``."""
    if rule not in LR_SCALING_RULES:
        raise ValueError(f"lr_scaling.rule must be one of {LR_SCALING_RULES}, got {rule!r}")
    if base_batch_size <= 0 or global_batch <= 0:
        raise ValueError(
            f"batch sizes must be positive (global {global_batch}, base {base_batch_size})"
        )
    ratio = global_batch / base_batch_size
    return ratio if rule == "linear" else ratio**0.5


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last memory order: ``channels_last`` for 4-D tensors (2D conv
    weights), ``channels_last_3d`` for 5-D ones (3D conv weights); others as they are."""
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    return t


class OptimizationMixin:
    """Optimisers, lr scaling, schedulers, compile and channels-last for a LightningModule."""

    def init_optimization(
        self,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
        compile: bool | Mapping[str, Any],
        lr_scaling: Mapping[str, Any] | None,
        channels_last: bool,
    ) -> None:
        """Store the optimisation settings (see ``GestureModule``'s arguments)."""
        if optimizer is None:
            raise ValueError(f"{type(self).__name__} needs an optimizer (a partial over params)")
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._compile = dict(compile) if isinstance(compile, Mapping) else bool(compile)
        self._compiled = False
        self.lr_scaling = dict(lr_scaling) if lr_scaling else {}
        if self.lr_scaling.get("rule", "linear") not in LR_SCALING_RULES:
            raise ValueError(
                f"lr_scaling.rule must be one of {LR_SCALING_RULES}, "
                f"got {self.lr_scaling['rule']!r}"
            )
        self.channels_last = channels_last
        #: what configure_optimizers applied: global_batch, factor, lrs (per param group)
        self.lr_info: dict[str, Any] = {}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resuming a checkpoint written before a datamodule rename: Lightning restores the
        datamodule's state (the training loader's position) from the entry named after its
        class, right after this hook, so the old entry is renamed here."""
        for old, new in RENAMED_STATE_KEYS.items():
            if old in checkpoint and new not in checkpoint:
                checkpoint[new] = checkpoint.pop(old)
        # a fusion model saved before its neck was split from its backbones (resumed by name)
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])

    def setup_encoder(self, stage: str) -> None:
        """Channels-last conversion and, when fitting, ``torch.compile`` of the encoder."""
        if self.channels_last:
            # Module.to(memory_format=channels_last) raises on the 5-D weights of 3D convs
            # ("required rank 4 tensor"): 2D conv weights go channels_last, 3D ones
            # channels_last_3d, the rest is unchanged
            self._apply(_channels_last)
        if self._compile is not False and stage == "fit" and not self._compiled:
            kwargs = self._compile if isinstance(self._compile, dict) else {}
            for module in self.compiled_modules():
                module.compile(**kwargs)  # in place: state_dict keys keep their names
            self._compiled = True

    def compiled_modules(self) -> list[torch.nn.Module]:
        """What ``compile`` compiles: each encoder and the neck of an encoders + neck model,
        else the encoder."""
        neck = getattr(self, "neck", None)
        if neck is not None:
            return [*self.encoders.values(), neck]
        return [self.encoder]

    def backbone_prefix(self) -> str:
        """Parameter-name prefix of the backbones ``backbone_lr_mult`` applies to: ``encoders.``
        with a neck (the neck then trains at the full lr), else ``encoder.``."""
        return "encoders." if getattr(self, "neck", None) is not None else "encoder."

    def global_batch_size(self) -> int:
        """Samples per optimiser step: per-device batch x world size x accumulation."""
        trainer = self.trainer
        dm = getattr(trainer, "datamodule", None)
        batch = getattr(dm, "batch_size", None)
        if batch is None:
            raise ValueError(
                "lr_scaling needs the per-device batch size: use a datamodule with a "
                "`batch_size` attribute"
            )
        return int(batch) * int(trainer.world_size) * int(trainer.accumulate_grad_batches)

    def _scale_lr(self, optimizer: torch.optim.Optimizer) -> None:
        base = self.lr_scaling.get("base_batch_size")
        if not base:
            return
        global_batch = self.global_batch_size()
        factor = lr_scale_factor(global_batch, int(base), self.lr_scaling.get("rule", "linear"))
        for group in optimizer.param_groups:
            group["lr"] *= factor
        lrs = [g["lr"] for g in optimizer.param_groups]
        self.lr_info = {
            "global_batch": global_batch,
            "base_batch_size": int(base),
            "factor": factor,
            "lrs": lrs,
        }
        rank_zero_info(
            f"lr scaling ({self.lr_scaling.get('rule', 'linear')}): global batch {global_batch} "
            f"(batch_size x {self.trainer.world_size} process(es) x "
            f"{self.trainer.accumulate_grad_batches} accumulation) / base {base} -> x{factor:.4g}; "
            f"effective lr {', '.join(f'{lr:.4g}' for lr in lrs)}"
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser over the trainable parameters, the backbones' (:meth:`backbone_prefix`)
        at ``backbone_lr_mult`` x the lr in a second group when that is not 1; without the lr
        scaling and the scheduler, which need a trainer."""
        mult = self.hparams.backbone_lr_mult
        prefix = self.backbone_prefix()
        enc = [p for n, p in self.named_parameters() if p.requires_grad and n.startswith(prefix)]
        rest = [
            p for n, p in self.named_parameters() if p.requires_grad and not n.startswith(prefix)
        ]
        if mult == 1.0:
            return self.optimizer_factory(params=enc + rest)
        optimizer = self.optimizer_factory(params=[{"params": rest}])
        base_lr = optimizer.param_groups[0]["lr"]
        optimizer.add_param_group({"params": enc, "lr": base_lr * mult})
        return optimizer

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer()
        self._scale_lr(optimizer)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer, total_steps=self.trainer.estimated_stepping_batches
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
