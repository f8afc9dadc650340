"""Behaviour-based emotion prediction (win / lose per interview video) from clips.

The module owns loss, metrics and optimisation only (optimisation shared with the gesture task
through :class:`~migalab.tasks.optimization.OptimizationMixin`). The encoder is any module
returning an :class:`~migalab.models.encoders.output.EncoderOutput` (a single encoder such as
MViT on the person crop or SwinFace on the face crops), or ``encoders`` for the face and context
streams fused by the InterFusion neck; the head maps the ``pooled`` (N, C) to 1 logit (BCE) or
2 logits (CE).

**Clip score.** Every clip gets one win score ``s``: the logit with 1 output, ``z_win - z_lose``
with 2 outputs (both are the log-odds of *win*), so ``sigmoid(s)`` is the clip's P(win).

**Video-level aggregation** (validation / test, over all clips of the epoch; batches carry
``video``, ``data.target=emotion``): the clip scores of a video are pooled into one video score
(:func:`aggregate_videos`):

* ``mean`` (default): mean of the clips' logits;
* ``prob``: mean of the clips' probabilities (returned as a logit);
* ``attention``: parameter-free confidence attention (MIL-style): weights
  ``softmax(|s_i| / temperature)`` over the video's clips, so confident clips count more
  (``temperature`` → ∞ gives ``mean``, → 0 the most confident clip).

The per-clip scores are kept in a torchmetrics ``Metric`` with ``cat`` states
(:class:`VideoScores`), so under DDP every rank's clips are gathered before the video scores
are computed (each clip is seen once: the evaluation loaders do not pad). Metrics (video level,
torchmetrics functional): ``acc``, ``macro_f1`` (F1 of win and lose averaged), ``auroc``; at
clip level ``clip_acc``. ``last_summaries[split]`` also holds the counts and, from the
datamodule, the split's win / lose balance; ``metrics.json`` gets them.

At test end rank 0 writes ``video_predictions.csv`` (``video_id,n_clips,prob_win,label``; label
1 win, 0 lose) to the trainer's ``default_root_dir`` (the run dir).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    multiclass_f1_score,
)

from migalab.tasks.recognizer import Recognizer

AGGREGATIONS = ("mean", "prob", "attention")
PREDICTIONS_FILE = "video_predictions.csv"


def aggregate_videos(
    videos: torch.Tensor,
    scores: torch.Tensor,
    method: str = "mean",
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool clip win scores (logits) into one logit per video.

    Args:
        videos: (N,) integer video id of each clip.
        scores: (N,) clip logits (log-odds of win).
        method: ``mean`` | ``prob`` | ``attention`` (module docstring).
        temperature: of ``attention``.

    Returns:
        (video ids (V,) sorted, clips per video (V,), video logits (V,)).
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {method!r}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = scores.double()
    ids, inverse, counts = torch.unique(videos, return_inverse=True, return_counts=True)
    v = len(ids)
    if method == "mean":
        out = torch.zeros(v, dtype=scores.dtype, device=scores.device)
        out.index_add_(0, inverse, scores)
        out = out / counts
    elif method == "prob":
        out = torch.zeros(v, dtype=scores.dtype, device=scores.device)
        out.index_add_(0, inverse, torch.sigmoid(scores))
        p = (out / counts).clamp(1e-12, 1 - 1e-12)
        out = torch.log(p) - torch.log1p(-p)
    else:
        w = scores.abs() / temperature
        peak = torch.full((v,), -torch.inf, dtype=scores.dtype, device=scores.device)
        peak = peak.scatter_reduce(0, inverse, w, reduce="amax")
        e = torch.exp(w - peak[inverse])  # softmax within each video, numerically stable
        den = torch.zeros(v, dtype=scores.dtype, device=scores.device).index_add_(0, inverse, e)
        num = torch.zeros(v, dtype=scores.dtype, device=scores.device)
        num.index_add_(0, inverse, e * scores)
        out = num / den
    return ids, counts, out


def win_scores(logits: torch.Tensor) -> torch.Tensor:
    """Clip logits (N, 1) (BCE) or (N, 2) (lose / win, CE) → (N,) win log-odds."""
    logits = logits.float()
    return logits[:, 0] if logits.shape[-1] == 1 else logits[:, 1] - logits[:, 0]


class VideoScores(Metric):
    """Clip (video, score, label) triples of an epoch, gathered over DDP ranks (``cat``)."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("videos", default=[], dist_reduce_fx="cat")
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, videos: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        self.videos.append(videos.detach().long().flatten())
        self.scores.append(scores.detach().float().flatten())
        self.labels.append(labels.detach().long().flatten())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        def cat(x: Any) -> torch.Tensor:
            if isinstance(x, list):
                return torch.cat(x) if x else torch.zeros(0, device=self.device)
            return x

        return cat(self.videos).long(), cat(self.scores).float(), cat(self.labels).long()


def video_metrics(
    videos: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    method: str = "mean",
    temperature: float = 1.0,
) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """Video- and clip-level metrics of clip scores.

    Returns:
        (metrics ``acc``, ``macro_f1``, ``auroc`` (video level; NaN when the videos are of one
        class), ``clip_acc``, ``num_videos``, ``num_clips``; per video ``video``, ``n_clips``,
        ``prob_win``, ``label``).

    Raises:
        ValueError: a video whose clips have different labels.
    """
    ids, counts, logits = aggregate_videos(videos, scores, method, temperature)
    inverse = torch.searchsorted(ids, videos)
    lo = torch.full_like(ids, 2).scatter_reduce(0, inverse, labels, reduce="amin")
    hi = torch.full_like(ids, -1).scatter_reduce(0, inverse, labels, reduce="amax")
    if (lo != hi).any():
        bad = ids[lo != hi].tolist()
        raise ValueError(f"videos {bad[:10]} have clips with different emotion labels")
    prob = torch.sigmoid(logits).float()
    vlabels = lo
    out: dict[str, float] = {
        **binary_video_metrics(prob, vlabels),
        "clip_acc": float(binary_accuracy(torch.sigmoid(scores.float()), labels)),
        "num_clips": len(scores),
    }
    return out, {"video": ids, "n_clips": counts, "prob_win": prob, "label": vlabels}


def binary_video_metrics(prob: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``acc`` (threshold 0.5), ``macro_f1`` (F1 of win and lose averaged), ``auroc`` (NaN when
    the videos are of one class) and ``num_videos`` of per-video P(win) (V,) and labels (V,)."""
    prob, labels = prob.float(), labels.long()
    pred = (prob >= 0.5).long()
    return {
        "acc": float(binary_accuracy(prob, labels)),
        "macro_f1": float(multiclass_f1_score(pred, labels, num_classes=2, average="macro")),
        "auroc": float(binary_auroc(prob, labels)) if len(labels.unique()) == 2 else float("nan"),
        "num_videos": len(labels),
    }


def write_video_predictions(
    path: str | Path, per_video: Mapping[str, torch.Tensor], names: list[str] | None = None
) -> Path:
    """Write ``video_id,n_clips,prob_win,label`` rows (label 1 win, 0 lose); ``names[i]`` is
    the id of video ``i`` (else the integer)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id", "n_clips", "prob_win", "label"])
        for v, n, p, y in zip(
            per_video["video"].tolist(),
            per_video["n_clips"].tolist(),
            per_video["prob_win"].tolist(),
            per_video["label"].tolist(),
            strict=True,
        ):
            w.writerow([names[v] if names is not None else v, n, f"{p:.6f}", y])
    return path


class EmotionModule(Recognizer):
    """Clip encoder + head trained on clips, evaluated per video (module docstring).

    Batches: ``x`` (a tensor or a dict of modalities), ``label`` (N,) 0 lose / 1 win, ``video``
    (N,) video index (``data.target=emotion``), ``index``.

    Args:
        encoder: module with ``out_channels`` returning an ``EncoderOutput``; None with
            ``encoders`` + ``neck``.
        head: module or partial ``head(in_channels=C)`` giving (N, num_outputs) logits.
        optimizer: as in :class:`~migalab.tasks.gesture.GestureModule` (shared code), as are
            the next five.
        scheduler: optional per-step scheduler partial.
        backbone_lr_mult: lr multiplier of the encoders.
        compile: ``torch.compile`` the encoder when fitting.
        lr_scaling: linear / sqrt lr scaling with the global batch.
        channels_last: channels-last memory format for 4-D inputs.
        num_outputs: 1 (one win logit, BCE) or 2 (lose / win logits, CE).
        loss: a loss module; default ``BCEWithLogitsLoss`` (1 output) or ``CrossEntropyLoss``
            (2). With 1 output it gets float targets (N,), with 2 long targets.
        input_key: with dict inputs, feed ``x[input_key]`` to a single encoder (and, when the
            batch has ``<input_key>_visible`` (face crops), pass it as ``visible=``).
        inputs: for encoders named apart from the batch's modalities (InterFusion's streams):
            stream -> batch modality, e.g. ``{face: face, context: rgb}``; each stream's encoder
            gets ``x[modality]`` (``visible=`` its ``x[<modality>_visible]``) and the neck the
            ``present`` / ``visible`` flags per stream. Exclusive with ``input_key``; neither:
            ``x`` as it is.
        aggregation: ``mean`` | ``prob`` | ``attention`` (video pooling of clip logits).
        temperature: of ``attention``.
        aux_loss_weight: weight of the neck's auxiliary per-stream heads' loss (InterFusion
            ``num_classes`` = num_outputs), masked by ``present``; 0 = off.
        encoders: stream -> encoder, fused by ``neck`` (instead of one ``encoder``).
        neck: a fusion module or a partial given the encoders' sizes (e.g. InterFusion).
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        head: nn.Module | Callable[..., nn.Module] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        num_outputs: int = 1,
        loss: nn.Module | None = None,
        input_key: str | None = None,
        inputs: Mapping[str, str] | None = None,
        aggregation: str = "mean",
        temperature: float = 1.0,
        aux_loss_weight: float = 0.0,
        backbone_lr_mult: float = 1.0,
        compile: bool | Mapping[str, Any] = False,
        lr_scaling: Mapping[str, Any] | None = None,
        channels_last: bool = False,
        encoders: Mapping[str, nn.Module] | None = None,
        neck: nn.Module | Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if num_outputs not in (1, 2):
            raise ValueError(f"num_outputs must be 1 (BCE) or 2 (CE), got {num_outputs}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if input_key is not None and inputs:
            raise ValueError("give input_key (one encoder) or inputs (a neck's streams), not both")
        self.save_hyperparameters(
            ignore=[
                "encoder",
                "encoders",
                "neck",
                "head",
                "loss",
                "optimizer",
                "scheduler",
                "lr_scaling",
                "compile",
                "inputs",
            ]
        )
        self.inputs = dict(inputs) if inputs else None
        self.build_model(encoder, head, encoders, neck)
        if loss is None:
            loss = nn.BCEWithLogitsLoss() if num_outputs == 1 else nn.CrossEntropyLoss()
        self.loss_fn = loss
        self.num_outputs = num_outputs
        self.val_scores = VideoScores()
        self.test_scores = VideoScores()
        self.last_summaries: dict[str, dict[str, object]] = {}
        self.last_predictions: dict[str, dict[str, torch.Tensor]] = {}
        self.init_optimization(optimizer, scheduler, compile, lr_scaling, channels_last)

    # -- model ----------------------------------------------------------------------------------
    def forward(self, x: Any) -> torch.Tensor:
        """Encoder input → logits (N, num_outputs)."""
        return self.head(self.encode(x)[0])

    def clip_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, 1 | 2) logits → (N,) win log-odds (:func:`win_scores`)."""
        return win_scores(logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] == 1:
            return self.loss_fn(logits[:, 0].float(), labels.float())
        return self.loss_fn(logits.float(), labels.long())

    def setup(self, stage: str) -> None:
        """Training win / lose counts for class-balanced losses (``ClassificationLoss``)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        counts = getattr(dm, "class_counts", None) if getattr(dm, "datasets", None) else None
        if counts is not None and hasattr(self.loss_fn, "set_class_counts"):
            self.loss_fn.set_class_counts(counts)
        self.setup_encoder(stage)

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        labels = batch["label"]
        n = labels.shape[0]
        pooled, aux = self.encode(batch["x"])
        logits = self.head(pooled)
        loss = self.add_aux_loss(self._loss(logits, labels), aux, labels, batch["x"], self._loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        acc = ((self.clip_scores(logits.detach()) > 0).long() == labels).float().mean()
        self.log("train/clip_acc", acc, on_step=False, on_epoch=True, batch_size=n)
        return loss

    def _eval_step(self, batch: dict[str, Any], scores: VideoScores, prefix: str) -> None:
        if "video" not in batch:
            raise KeyError("emotion batches need `video` (use data.target=emotion)")
        logits = self(batch["x"])
        labels = batch["label"]
        self.log(
            f"{prefix}/loss", self._loss(logits, labels), batch_size=labels.shape[0], sync_dist=True
        )
        scores.update(batch["video"], self.clip_scores(logits), labels)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.val_scores, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_scores, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Clip logits (N, num_outputs) with dataset indices, labels and videos."""
        out = {"logits": self(batch["x"]), "index": batch["index"], "label": batch["label"]}
        if "video" in batch:
            out["video"] = batch["video"]
        return out

    def _epoch_end(self, scores: VideoScores, prefix: str) -> None:
        videos, clip_scores, labels = scores.compute()
        scores.reset()
        if len(videos) == 0:
            return
        summary, per_video = video_metrics(
            videos, clip_scores, labels, self.hparams.aggregation, self.hparams.temperature
        )
        # values are global already (the states were gathered); equal on every rank
        for key in ("acc", "macro_f1", "auroc", "clip_acc"):
            self.log(f"{prefix}/{key}", summary[key], prog_bar=key == "acc", sync_dist=True)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        balance = getattr(dm, "emotion_balance", {}).get(prefix)
        if balance:
            summary["balance"] = dict(balance)
        self.last_summaries[prefix] = summary
        self.last_predictions[prefix] = per_video

    def on_validation_epoch_end(self) -> None:
        self._epoch_end(self.val_scores, "val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end(self.test_scores, "test")
        per_video = self.last_predictions.get("test")
        if per_video is None or self._trainer is None or not self.trainer.is_global_zero:
            return
        dm = getattr(self.trainer, "datamodule", None)
        ds = getattr(dm, "datasets", {}).get("test")
        names = list(ds.video_ids) if ds is not None and hasattr(ds, "video_ids") else None
        root = Path(self.trainer.default_root_dir)
        write_video_predictions(root / PREDICTIONS_FILE, per_video, names)
