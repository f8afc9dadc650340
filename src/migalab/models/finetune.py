"""Fine-tuning of encoders: their initial weights (:func:`load_initial_weights`: an encoder's
``checkpoint``, MViT's ``pretrained``) and full, frozen or partially unfrozen training.

An encoder lists its ``blocks`` in forward order (stem first, e.g. ``[data_bn, *units]`` for AGCN,
``[stem, *blocks]`` for MViT) and optionally modules that always train in ``"partial"`` mode
(e.g. MViT's final norm). :func:`apply_finetune` sets ``requires_grad`` and returns the frozen
submodules; those must stay in eval mode while the rest trains, so a frozen BatchNorm keeps its
running statistics and dropout / stochastic depth are off in frozen parts. :class:`FinetuneMixin`
(or :func:`keep_frozen_in_eval` from a custom ``train()``) takes care of that.

Modes:

* ``"full"``: every parameter trains (the default; nothing is frozen);
* ``"frozen"``: no parameter trains and the whole module stays in eval mode (a linear probe on
  the pooled features);
* ``"partial"``: only the last ``trainable_blocks`` of ``blocks`` and the ``always_trainable``
  modules train; every other parameter of the module is frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from migalab.utils.checkpoints import load_checkpoint, upgrade_state_dict

log = logging.getLogger(__name__)

__all__ = [
    "ENCODER_PREFIXES",
    "FINETUNE_MODES",
    "FinetuneMixin",
    "WeightsReport",
    "apply_finetune",
    "keep_frozen_in_eval",
    "load_encoder_weights",
    "load_initial_weights",
]

FINETUNE_MODES = ("full", "frozen", "partial")


def _frozen_subtrees(root: nn.Module, trainable_ids: set[int]) -> list[nn.Module]:
    """The largest submodules of ``root`` (``root`` itself included) that contain no trainable
    module, in ``root.modules()`` order."""
    frozen: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        if id(m) in trainable_ids:
            return
        if not any(id(d) in trainable_ids for d in m.modules()):
            frozen.append(m)
            return
        for child in m.children():
            visit(child)

    visit(root)
    return frozen


def apply_finetune(
    module: nn.Module,
    mode: str,
    blocks: Sequence[nn.Module],
    trainable_blocks: int = 0,
    always_trainable: Sequence[nn.Module] = (),
) -> list[nn.Module]:
    """Set ``requires_grad`` of ``module``'s parameters for a fine-tuning ``mode``.

    Args:
        module: the encoder.
        mode: one of :data:`FINETUNE_MODES`.
        blocks: ``module``'s stages in forward order; an element may be a container that is not
            registered in ``module`` (e.g. an ``nn.ModuleList`` grouping the stem modules) as
            long as its parameters belong to ``module``.
        trainable_blocks: ``"partial"`` only: how many of the last ``blocks`` train (0 trains
            only ``always_trainable``); must be 0 for the other modes.
        always_trainable: ``"partial"`` only: modules that train whatever ``trainable_blocks``
            is (e.g. a final norm); ignored by ``"full"`` and ``"frozen"``.

    Returns:
        The frozen submodules to keep in eval mode: ``[]`` for ``"full"``, ``[module]`` for
        ``"frozen"``, and for ``"partial"`` the largest submodules holding no trainable part
        (the early blocks, plus any frozen module outside ``blocks``).

    Raises:
        ValueError: unknown mode, ``trainable_blocks`` out of range or given outside
            ``"partial"``, or a block / always-trainable module whose parameters are not
            ``module``'s.
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f"finetune mode must be one of {FINETUNE_MODES}, got {mode!r}")
    trainable_blocks = int(trainable_blocks)
    if mode != "partial" and trainable_blocks != 0:
        raise ValueError(
            f"trainable_blocks={trainable_blocks} only applies to finetune='partial' "
            f"(got finetune={mode!r}); leave it at 0"
        )
    if not 0 <= trainable_blocks <= len(blocks):
        raise ValueError(
            f"trainable_blocks must be in [0, {len(blocks)}] (the number of blocks), "
            f"got {trainable_blocks}"
        )
    own = {id(p) for p in module.parameters()}
    for kind, group in (("blocks", blocks), ("always_trainable", always_trainable)):
        for i, m in enumerate(group):
            if not isinstance(m, nn.Module):
                raise ValueError(f"{kind}[{i}] is not an nn.Module: {type(m).__name__}")
            if any(id(p) not in own for p in m.parameters()):
                raise ValueError(f"{kind}[{i}] ({type(m).__name__}) is not part of the module")

    if mode == "full":
        module.requires_grad_(True)
        return []
    module.requires_grad_(False)
    if mode == "frozen":
        return [module]
    trainable = list(blocks[len(blocks) - trainable_blocks :]) + list(always_trainable)
    trainable_ids: set[int] = set()
    for m in trainable:
        m.requires_grad_(True)
        trainable_ids.update(id(d) for d in m.modules())
    return _frozen_subtrees(module, trainable_ids)


def keep_frozen_in_eval(frozen: Iterable[nn.Module]) -> None:
    """Put the frozen modules (and all their submodules) in eval mode.

    Sets the ``training`` flags directly instead of calling ``.eval()``, so it is safe to call
    from an overridden ``train()`` even when ``frozen`` holds the module itself.
    """
    for m in frozen:
        for sub in m.modules():
            sub.training = False


class FinetuneMixin(nn.Module):
    """``nn.Module`` base for encoders with a fine-tuning mode: call :meth:`configure_finetune`
    at the end of ``__init__``; ``train(True)`` then keeps the frozen parts in eval mode.

    Attributes:
        finetune_mode: the mode passed to :meth:`configure_finetune` ("full" until called).
        trainable_blocks: idem.
        frozen_modules: the frozen submodules (kept in eval mode).
    """

    finetune_mode: str = "full"
    trainable_blocks: int = 0

    def configure_finetune(
        self,
        mode: str,
        blocks: Sequence[nn.Module],
        trainable_blocks: int = 0,
        always_trainable: Sequence[nn.Module] = (),
    ) -> None:
        """:func:`apply_finetune` on ``self``, remembering the frozen submodules."""
        frozen = apply_finetune(self, mode, blocks, trainable_blocks, always_trainable)
        self.finetune_mode, self.trainable_blocks = mode, int(trainable_blocks)
        # a plain list attribute: not registered as submodules (no duplicate state-dict keys)
        self._frozen_modules: list[nn.Module] = frozen
        keep_frozen_in_eval(frozen)

    @property
    def frozen_modules(self) -> tuple[nn.Module, ...]:
        return tuple(getattr(self, "_frozen_modules", ()))

    def train(self, mode: bool = True) -> FinetuneMixin:
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self.frozen_modules)
        return self


#: key prefixes of a checkpoint's encoder weights, after the encoder's own qualified name:
#: a single-encoder migalab model, then the ``backbone`` of pyskl / mmaction2 recognisers
ENCODER_PREFIXES = ("encoder.", "backbone.")
#: prefixes of foreign (not migalab) checkpoints: loaded leniently, with a report
FOREIGN_PREFIXES = ("backbone.",)


@dataclass
class WeightsReport:
    """What :func:`load_encoder_weights` did with a checkpoint's keys."""

    prefix: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def describe(self, limit: int = 8) -> str:
        def few(keys: list[str]) -> str:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        parts = [f"{self.loaded} tensors loaded from keys {self.prefix or '(no prefix)'}*"]
        for what, keys in (
            ("missing (kept as initialised)", self.missing),
            ("unexpected (ignored)", self.unexpected),
            ("shape mismatch (kept as initialised)", self.mismatched),
            ("outside the encoder (e.g. a classifier head; not used)", self.unused),
        ):
            if keys:
                parts.append(f"{len(keys)} {what}: {few(keys)}")
        return "; ".join(parts)


def load_encoder_weights(
    encoder: nn.Module, path: str | Path, name: str = "encoder"
) -> WeightsReport:
    """Initialise ``encoder`` from the checkpoint at ``path``.

    ``path`` holds a Lightning checkpoint or an mmcv one (their ``state_dict``) or a bare state
    dict. The weights are taken, in order, from the keys prefixed ``<name>.`` (``name`` = the
    encoder's qualified name in its model, e.g. ``encoders.joint``: a checkpoint of the
    same model, or of one saved before necks were split from their backbones, whose keys
    :func:`~migalab.utils.checkpoints.upgrade_state_dict` renames), ``encoder.`` (a single-encoder model, e.g. ``experiment=mvit_rgb``),
    ``backbone.`` (a released pyskl PoseC3D / SlowOnly checkpoint, whose backbone keys are ours),
    else the whole dict (an encoder's own state dict).

    migalab checkpoints must fit exactly (a wrong file is an error). A foreign checkpoint
    (``backbone.``) loads what fits by name and shape; what does not (e.g. the first conv of a
    17-joint COCO model for 22 joints, the classifier head) is reported and keeps its
    initialisation; nothing fitting at all is an error.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no state dict, or keys / shapes that do not fit (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: checkpoint {path} does not exist")
    ckpt = load_checkpoint(path)  # weights_only: a shared checkpoint runs no code here
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{name}: {path} holds no state dict")
    state = upgrade_state_dict(state)
    prefix, sub = "", dict(state)
    for candidate in dict.fromkeys((f"{name}.", *ENCODER_PREFIXES)):
        picked = {k[len(candidate) :]: v for k, v in state.items() if k.startswith(candidate)}
        if picked:
            prefix, sub = candidate, picked
            break
    own = encoder.state_dict()
    report = WeightsReport(
        prefix=prefix,
        loaded=0,
        missing=sorted(set(own) - set(sub)),
        unexpected=sorted(set(sub) - set(own)),
        mismatched=sorted(
            f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
            for k, v in sub.items()
            if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
        ),
        unused=sorted(k for k in state if prefix and not k.startswith(prefix)),
    )
    fits = {
        k: v
        for k, v in sub.items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) == tuple(own[k].shape)
    }
    report.loaded = len(fits)
    if prefix in FOREIGN_PREFIXES:
        if not fits:
            raise ValueError(f"{name}: nothing in {path} fits this encoder: {report.describe()}")
        encoder.load_state_dict(fits, strict=False)
        log.warning("%s <- %s: %s", name, path, report.describe())
        return report
    if report.missing or report.unexpected or report.mismatched:
        raise ValueError(
            f"{name}: {path} does not fit this encoder (a checkpoint of another model or size?): "
            f"{report.describe()}"
        )
    encoder.load_state_dict(sub, strict=True)
    return report


def load_initial_weights(model: nn.Module) -> list[str]:
    """Load the initial weights every submodule names, descendants before ancestors: first its
    own ``load_initial_weights()`` (MViT ``pretrained``), then its ``init_checkpoint`` (an
    encoder's ``init`` option, see :func:`load_encoder_weights`), which so overrides
    what the module loaded itself.

    ``migalab-train`` calls this only when a fit starts fresh: a resumed fit or an evaluation
    takes every weight from its checkpoint, so the files named in the config need not exist
    then. Returns what was loaded (for the log).
    """
    loaded: list[str] = []
    named = [(n, m) for n, m in model.named_modules() if m is not model]
    for name, module in reversed(named):  # pre-order reversed: descendants first
        fn = getattr(module, "load_initial_weights", None)
        if callable(fn):
            loaded += [str(x) for x in fn() or []]
        path = getattr(module, "init_checkpoint", None)
        if path:
            load_encoder_weights(module, path, name)
            loaded.append(f"{name} <- {path}")
    return loaded
