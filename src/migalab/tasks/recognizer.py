"""What the supervised tasks share (:class:`~migalab.tasks.gesture.GestureModule`,
:class:`~migalab.tasks.emotion.EmotionModule`): the recognizer shape of mmaction2 --

    encoder (one backbone)                      -> head
    encoders (stream -> backbone) -> neck       -> head

-- where every encoder returns an :class:`~migalab.models.encoders.output.EncoderOutput`, the
neck (a fusion: :mod:`migalab.models.fusion`) turns the encoders' outputs into one, and its
``pooled`` (N, C) feeds the head; the routing of a batch's input to the encoders; and the
auxiliary per-stream losses a neck's side heads add in training. The module holds
``encoder`` or ``encoders`` + ``neck`` itself, so checkpoints name them at the top level
(``encoder.*``; ``encoders.<stream>.*``, ``neck.*``, ``head.*``).

Routing (:meth:`Recognizer.encoder_input`), for a batch input ``x``:

* a tensor: the encoder gets it as it is;
* a dict of modalities with ``input_key`` (a single-modality encoder on a multimodal
  datamodule): ``x[input_key]``, plus ``visible=x[<input_key>_visible]`` where the batch has it
  (face crops);
* a dict with ``inputs`` (streams named apart from the batch's modalities, stream -> batch
  modality, e.g. ``{face: face, context: rgb}``): ``{stream: x[modality], present: {stream:
  ...}, visible: {stream: ...}}``;
* otherwise the whole dict (encoders keyed by modality, ``present`` flags beside them).

With a neck, each encoder runs on its stream (``visible=`` where the stream has flags) and the
neck gets their outputs with the ``present`` / ``visible`` flags
(:func:`~migalab.models.fusion.streams.fuse_streams`).

The auxiliary loss (:meth:`Recognizer.add_aux_loss`): ``loss + aux_loss_weight x`` the mean over
modalities of the side heads' losses, each over the samples where its modality is present.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from lightning import LightningModule
from torch import nn

from migalab.models.fusion.streams import build_neck, fuse_streams
from migalab.tasks.losses import masked_aux_loss
from migalab.tasks.optimization import OptimizationMixin

if TYPE_CHECKING:
    from migalab.models.encoders.output import EncoderOutput


class Recognizer(OptimizationMixin, LightningModule):
    """Encoder(s) -> [neck] -> head with the tasks' shared routing and auxiliary loss (module
    docstring).

    Subclasses call :meth:`build_model` in ``__init__`` (after ``save_hyperparameters``, which
    must keep ``input_key`` and ``aux_loss_weight`` and ignore the modules) and set ``inputs``
    when they route streams.
    """

    #: stream -> batch modality (None: the encoders are keyed by the batch's modalities)
    inputs: dict[str, str] | None = None

    def build_model(
        self,
        encoder: nn.Module | None,
        head: nn.Module | Callable[..., nn.Module] | None,
        encoders: Mapping[str, nn.Module] | None = None,
        neck: nn.Module | Callable[..., nn.Module] | None = None,
    ) -> None:
        """The model: ``self.encoder`` (one backbone) or ``self.encoders`` (stream -> backbone,
        an ``nn.ModuleDict``) + ``self.neck`` (a module, or a partial given the encoders' sizes:
        :func:`~migalab.models.fusion.streams.build_neck`), then ``self.head`` (a module, or a
        partial given ``in_channels`` = :attr:`feature_channels`). The attribute of the other
        shape is None (``neck`` of a single-encoder model, ``encoder`` of an encoders + neck
        one)."""
        if head is None:
            raise ValueError(f"{type(self).__name__} needs a head")
        if encoders is not None:
            if encoder is not None:
                raise ValueError("give encoder (one backbone) or encoders + neck, not both")
            if neck is None:
                raise ValueError(f"encoders {list(encoders)} need a neck to fuse them")
            if not encoders:
                raise ValueError("encoders is empty: give at least one stream's encoder")
            self.encoder = None
            self.encoders = nn.ModuleDict(dict(encoders))
            self.neck = build_neck(neck, self.encoders)
        elif encoder is None:
            raise ValueError(f"{type(self).__name__} needs an encoder, or encoders + a neck")
        elif neck is not None:
            raise ValueError("a neck fuses several streams: give encoders (stream -> encoder)")
        else:
            self.encoder, self.neck = encoder, None
        self.head = head if isinstance(head, nn.Module) else head(in_channels=self.feature_channels)

    @property
    def feature_channels(self) -> int:
        """C of the pooled features the head takes (the neck's, else the encoder's)."""
        return int((self.neck if self.neck is not None else self.encoder).out_channels)

    def encoder_input(self, x: Any) -> tuple[Any, dict[str, Any]]:
        """The batch input mapped to the encoder's input and keyword arguments."""
        if not isinstance(x, Mapping):
            return x, {}
        key = self.hparams.get("input_key")
        if key is not None:
            if key not in x:
                raise KeyError(f"batch input has modalities {sorted(x)}; input_key {key!r} missing")
            vis = x.get(f"{key}_visible")
            return x[key], ({"visible": vis} if vis is not None else {})
        if self.inputs:
            missing = sorted(m for m in self.inputs.values() if m not in x)
            if missing:
                raise KeyError(f"batch input has modalities {sorted(x)}; inputs need {missing}")
            present = x.get("present") or {}
            out: dict[str, Any] = {s: x[m] for s, m in self.inputs.items()}
            out["present"] = {s: present[m] for s, m in self.inputs.items() if m in present}
            out["visible"] = {
                s: x[f"{m}_visible"] for s, m in self.inputs.items() if f"{m}_visible" in x
            }
            return out, {}
        return x, {}

    def encode(self, x: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Batch input -> pooled features (N, C) and the encoder's auxiliary per-modality logits
        (None when it has none)."""
        inp, kwargs = self.encoder_input(x)
        if self.neck is not None:
            if not isinstance(inp, Mapping):
                raise TypeError(
                    f"a neck over the encoders {list(self.encoders)} needs a dict batch input "
                    f"(stream -> tensor), got {type(inp).__name__}"
                )
            out: EncoderOutput = fuse_streams(self.encoders, self.neck, inp)
            return out.pooled, out.aux or None
        if self.channels_last and isinstance(inp, torch.Tensor) and inp.dim() == 4:
            inp = inp.contiguous(memory_format=torch.channels_last)
        out = self.encoder(inp, **kwargs)
        return out.pooled, out.aux or None

    def present_flags(self, x: Any) -> dict[str, torch.Tensor]:
        """Per modality (per stream with ``inputs``) the (N,) bool presence of a batch input."""
        flags = (x.get("present") or {}) if isinstance(x, Mapping) else {}
        if self.inputs:
            return {s: flags[m] for s, m in self.inputs.items() if m in flags}
        return dict(flags)

    def add_aux_loss(
        self,
        loss: torch.Tensor,
        aux: Mapping[str, torch.Tensor] | None,
        labels: torch.Tensor,
        x: Any,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``loss`` plus ``aux_loss_weight`` x the side heads' masked mean loss (logged as
        ``train/main_loss`` and ``train/aux_loss``); ``loss`` itself when there are none."""
        weight = float(self.hparams.get("aux_loss_weight", 0.0))
        if not aux or weight <= 0:
            return loss
        n = labels.shape[0]
        aux_loss = masked_aux_loss(aux, labels, self.present_flags(x), loss_fn)
        self.log("train/main_loss", loss.detach(), batch_size=n)
        self.log("train/aux_loss", aux_loss.detach(), batch_size=n)
        return loss + weight * aux_loss
