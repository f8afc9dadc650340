"""Micro-gesture classification task: an encoder (or encoders + a fusion neck) + a
classification head.

The module owns loss, metrics and optimisation only. The encoder is a plain ``nn.Module`` built
by Hydra and injected; it maps a batch input to an
:class:`~migalab.models.encoders.output.EncoderOutput` whose ``pooled`` (N, C) the head takes.
With several streams, ``encoders`` (stream -> encoder) and a ``neck`` (a fusion, built from the
encoders' sizes) take its place (:mod:`migalab.tasks.recognizer`). The head is injected as a
partial that receives ``in_channels`` (the encoder's or the neck's ``out_channels``); so is the
optional label-embedding head (System A's auxiliary semantic supervision).

Multi-view evaluation (PoseC3D's 10 clips x flip): an evaluation batch that carries ``views``
has ``x`` shaped (N, K, ...): the K views of each clip go through the encoder as N*K samples and
their softmax probabilities are averaged (pyskl's ``average_clips="prob"``); the step's
"logits" are then the log of the averaged probabilities (same argmax / top-k / softmax).

Multimodal input (System B): ``x`` may be a dict of modality tensors (``{"rgb": (N, 3, T, H, W),
"joint": (N, 3, T, V, M), ...}``). Encoders keyed by modality take their tensors and the neck
fuses them; a single-modality encoder takes ``x[input_key]``. The neck's ``aux`` maps modality
-> (N, K) logits of auxiliary per-modality heads; their loss, times ``aux_loss_weight``, is added in training
(evaluation uses the main head only).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics.aggregation import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from migalab.tasks.losses import ClassificationLoss
from migalab.tasks.metrics import build_metrics, stream_hits, summarize
from migalab.tasks.optimization import (  # noqa: F401  (lr_scale_factor: re-exported)
    LR_SCALING_RULES,
    lr_scale_factor,
)
from migalab.tasks.recognizer import Recognizer


def _stream_accuracies(streams: Sequence[str]) -> nn.ModuleDict:
    """stream -> mean of per-sample correctness (top-1 accuracy; NaN without samples: a stream
    the data never had), empty without streams."""
    return nn.ModuleDict({s: MeanMetric() for s in streams})


class GestureModule(Recognizer):
    """Clip-level micro-gesture classifier.

    Batches are dicts with ``x`` (encoder input, e.g. (N, C, T, V, M) skeletons), ``label`` (N,)
    and ``index`` (N,) dataset positions.

    Args:
        encoder: module with ``out_channels`` whose forward returns an ``EncoderOutput``
            (pooled (N, C)); None with ``encoders`` + ``neck``.
        head: a module, or a callable ``head(in_channels=C) -> nn.Module`` giving logits (N, K).
        optimizer: partial ``optimizer(params=...)``.
        scheduler: optional partial ``scheduler(optimizer, total_steps=...)`` stepped per step.
        loss: a :class:`ClassificationLoss` (class weights filled from the datamodule's counts).
        num_classes: K (default: the number of class_names; configs take the dataset spec's).
        class_names: names for per-class reports.
        backbone_lr_mult: lr multiplier for encoder parameters (1.0 = same as the head).
        compile: compile the encoder with ``torch.compile`` when fitting (in place: parameter
            names and checkpoints are unchanged): True, or a mapping of ``torch.compile``
            keyword arguments (e.g. ``{mode: max-autotune}``, ``{backend: aot_eager}``). The
            default inductor backend needs a C++ compiler on CPU and compiles for minutes.
        lr_scaling: ``{base_batch_size: int | None, rule: linear | sqrt}``. When
            ``base_batch_size`` is set, every param group's lr is multiplied by
            ``global_batch / base_batch_size`` (``sqrt`` of it for ``rule: sqrt``), with
            ``global_batch = datamodule.batch_size x world_size x accumulate_grad_batches``: the
            configured lr is the lr of a ``base_batch_size`` batch. None / null = off.
        channels_last: convert the module's 4-D parameters/buffers (conv weights) and 4-D inputs
            to ``torch.channels_last``. Helps 2-D CNNs on GPUs with tensor cores (AMP); the
            skeleton GCNs take 5-D input and mostly 1xk convs, where it rarely helps.
        label_embedding: optional auxiliary head regressing the text embedding of the true class
            from the pooled features (a module, or a partial receiving ``in_channels``; see
            :class:`migalab.models.label_embeddings.LabelEmbeddingHead`). Training loss =
            classification loss + ``label_embedding.loss(pred, labels)`` (+ its classifier
            regulariser on ``head.fc.weight`` when enabled). Evaluation is unchanged.
        input_key: with dict batch inputs, feed ``x[input_key]`` to the encoder (a single-modality
            encoder on a multimodal datamodule); None feeds ``x`` as it is.
        aux_loss_weight: weight of the mean loss of the neck's auxiliary per-modality heads
            (``EncoderOutput.aux``); 0 = off.
        encoders: modality -> encoder, fused by ``neck`` (instead of one ``encoder``).
        neck: a fusion module, or a partial given the encoders' sizes
            (:func:`~migalab.models.fusion.streams.build_neck`), e.g. the token fusion.

    ``backbone_lr_mult`` applies to the encoder's parameters, or, with a neck, to the encoders'
    (the neck then trains at the full lr).
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        head: nn.Module | Callable[..., nn.Module] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        loss: ClassificationLoss | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        backbone_lr_mult: float = 1.0,
        compile: bool | Mapping[str, Any] = False,
        lr_scaling: Mapping[str, Any] | None = None,
        channels_last: bool = False,
        label_embedding: nn.Module | Callable[..., nn.Module] | None = None,
        input_key: str | None = None,
        aux_loss_weight: float = 0.0,
        encoders: Mapping[str, nn.Module] | None = None,
        neck: nn.Module | Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if num_classes is None:
            if not class_names:
                raise ValueError("GestureModule needs num_classes or class_names (the dataset's)")
            num_classes = len(class_names)
        # init args that are modules, partials or OmegaConf containers stay out of the checkpoint
        # (it must load with torch.load(weights_only=True)); the run config is stored instead
        self.save_hyperparameters(
            ignore=[
                "encoder",
                "encoders",
                "neck",
                "head",
                "loss",
                "optimizer",
                "scheduler",
                "class_names",
                "lr_scaling",
                "compile",
                "label_embedding",
            ]
        )
        self.build_model(encoder, head, encoders, neck)
        if label_embedding is not None and not isinstance(label_embedding, nn.Module):
            label_embedding = label_embedding(in_channels=self.feature_channels)
        self.label_embedding = label_embedding
        self.loss_fn = loss if loss is not None else ClassificationLoss()
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else None
        self.train_top1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_metrics = build_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = build_metrics(num_classes).clone(prefix="test/")
        # per-stream top-1 of a neck's auxiliary heads (each encoder's own pooled feature, on the
        # samples where its stream is present): how well every encoder learns inside the fusion
        streams = list(getattr(self.neck, "aux_heads", None) or {}) if self.neck is not None else []
        self.val_stream_top1 = _stream_accuracies(streams)
        self.test_stream_top1 = _stream_accuracies(streams)
        self.last_summaries: dict[str, dict[str, object]] = {}
        self.init_optimization(optimizer, scheduler, compile, lr_scaling, channels_last)

    # -- model ----------------------------------------------------------------------------------
    def features(self, x: Any) -> torch.Tensor:
        """Encoder input → pooled features (N, C)."""
        return self.encode(x)[0]

    def forward(self, x: Any) -> torch.Tensor:
        """Encoder input → logits (N, K)."""
        return self.head(self.features(x))

    def predict_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """Logits (N, K) of a batch; multi-view batches (``views`` key, ``x`` (N, V, ...)) give
        the log of the view-averaged softmax probabilities."""
        x = batch["x"]
        if "views" not in batch:
            return self(x)
        if isinstance(x, Mapping):
            raise ValueError("multi-view evaluation ('views') needs a tensor input, got a dict")
        n, v = x.shape[:2]
        logits = self(x.flatten(0, 1)).float().view(n, v, -1)
        return logits.softmax(-1).mean(1).clamp_min(1e-12).log()

    def setup(self, stage: str) -> None:
        """Take training class counts from the datamodule for class-balanced losses."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        counts = getattr(dm, "class_counts", None)
        if counts is not None:
            self.loss_fn.set_class_counts(counts)
        self.setup_encoder(stage)

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "views" in batch:
            raise ValueError("training batches must hold one view per clip (got a 'views' key)")
        labels = batch["label"]
        n = labels.shape[0]
        pooled, aux = self.encode(batch["x"])
        logits = self.head(pooled)
        loss = self.add_aux_loss(
            self.loss_fn(logits, labels), aux, labels, batch["x"], self.loss_fn
        )
        if self.label_embedding is not None:
            emb_loss = self.label_embedding.loss(self.label_embedding(pooled), labels)
            reg = getattr(self.label_embedding, "classifier_regulariser", None)
            fc = getattr(self.head, "fc", None)
            if reg is not None and isinstance(fc, nn.Linear):
                emb_loss = emb_loss + reg(fc.weight)
            self.log("train/cls_loss", loss.detach(), batch_size=n)
            self.log("train/emb_loss", emb_loss.detach(), batch_size=n)
            loss = loss + emb_loss
        self.log("train/loss", loss, prog_bar=True, batch_size=n, sync_dist=False)
        self.train_top1(logits.detach(), batch["label"])
        self.log("train/top1", self.train_top1, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _eval_step(self, batch: dict[str, Any], metrics: Any, prefix: str) -> torch.Tensor:
        logits, stream_preds = self._logits_and_streams(batch)
        loss = self.loss_fn(logits, batch["label"])
        if stream_preds is not None:
            self._update_streams(getattr(self, f"{prefix}_stream_top1"), stream_preds, batch)
        metrics.update(logits, batch["label"])
        self.log(f"{prefix}/loss", loss, batch_size=batch["label"].shape[0], sync_dist=True)
        return logits

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Logits (N, K) with dataset indices and labels, for evaluation and score fusion; a
        fusion's batches also give ``stream_pred``: per stream the class its auxiliary head
        picks (N,), -1 where the stream is absent (``migalab-eval`` scores them per stream)."""
        logits, stream_preds = self._logits_and_streams(batch)
        out: dict[str, Any] = {"logits": logits, "index": batch["index"], "label": batch["label"]}
        if stream_preds is not None:
            out["stream_pred"] = stream_preds
        return out

    def _logits_and_streams(
        self, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The batch's logits (N, K) (:meth:`predict_logits`) and, for a model with stream
        metrics (a neck with auxiliary heads; one view per clip), per stream the class (N,) its
        auxiliary logits pick, -1 on the samples where the stream is absent (else None)."""
        if not len(self.test_stream_top1) or "views" in batch:
            return self.predict_logits(batch), None
        pooled, aux = self.encode(batch["x"])  # what predict_logits computes, plus aux
        flags = self.present_flags(batch["x"])
        preds = {}
        for name, logits in (aux or {}).items():
            if name in self.test_stream_top1:
                pred = logits.argmax(dim=-1)
                if name in flags:
                    pred = pred.masked_fill(~flags[name].bool(), -1)
                preds[name] = pred
        return self.head(pooled), preds

    def _update_streams(
        self, streams: nn.ModuleDict, preds: dict[str, torch.Tensor], batch: dict[str, Any]
    ) -> None:
        """Update each stream's accuracy with its predicted classes (-1 where absent)."""
        for name, pred in preds.items():
            hits = stream_hits(pred, batch["label"])
            if hits.numel():
                streams[name].update(hits)

    def _log_epoch(self, metrics: Any, prefix: str) -> None:
        summary = summarize(
            {k.removeprefix(f"{prefix}/"): v for k, v in metrics.compute().items()},
            self.class_names,
        )
        metrics.reset()
        streams: nn.ModuleDict = getattr(self, f"{prefix}_stream_top1")
        if len(streams):
            # every stream on every rank (compute syncs over processes): NaN where none had it
            summary["stream_top1"] = {}
            for name, metric in streams.items():
                with warnings.catch_warnings():  # "compute before update": a stream never seen
                    warnings.simplefilter("ignore", UserWarning)
                    value = float(metric.compute())
                self.log(f"{prefix}/stream_top1/{name}", value, sync_dist=True)
                summary["stream_top1"][name] = value
                metric.reset()
        # the values are already global (torchmetrics syncs its states over processes); the mean
        # over ranks of equal values leaves them unchanged and keeps Lightning from warning
        for key in ("top1", "top5", "macro_f1", "mean_class_acc"):
            self.log(f"{prefix}/{key}", summary[key], prog_bar=key == "top1", sync_dist=True)
        self.last_summaries[prefix] = summary

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")
