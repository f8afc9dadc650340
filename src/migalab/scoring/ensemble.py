"""Score-level ensembling of checkpoints, shared by ``migalab-eval`` and ``migalab-predict``.

The pieces, in the order the entry points use them:

* :func:`load_checkpoint_config` and :func:`score_checkpoints`: rebuild each checkpoint's model
  and data pipeline from the training config stored in it and score the requested splits
  (:class:`CheckpointScores`, one :class:`SplitScores` per split, in dataset order);
* :func:`resolve_fusion_weights`: the weights of the streams, given (``fusion.weights``), read
  from an evaluation's ``fusion.json`` (``fusion.from``, :func:`fusion_weights_from_file`) or
  searched on a labelled split (:func:`search_fusion_weights`, a grid over the simplex from
  :func:`simplex_grid`);
* :func:`fuse_scores`: the weighted sum of per-stream softmax probabilities or raw logits, and
  :func:`fused_probabilities`, the class probabilities of a fused score;
* :func:`evaluate_scores`: the metrics of each stream and of the fusion on every split.

Per-checkpoint temperatures (``fusion.temperature``): null (every stream's logits as they are),
``fit`` (each checkpoint's T fitted on ``search_split`` by minimising the NLL of softmax(logits /
T), temperature scaling as Guo et al. 2017: :func:`fit_temperature`; the weights are then searched
on the calibrated scores), or a list. Calibration puts over- and under-confident models on one
scale before their probabilities are added; it changes no single model's prediction. The
temperatures go to ``fusion.json`` with the weights and come back with ``fusion.from``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from migalab.scoring.records import (
    FusionRecordError,
    check_temperatures,
    check_weights,
    read_fusion_record,
)
from migalab.tasks.metrics import compute_metrics, stream_top1
from migalab.utils.callbacks import CONFIG_KEY
from migalab.utils.checkpoints import (
    CheckpointReadError,
    load_checkpoint,
    upgrade_state_dict,
    upgrade_targets,
)
from migalab.utils.paths import project_root
from migalab.utils.stored_config import UnsafeCheckpointError, sanitize_stored_config

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointScores",
    "SplitScores",
    "build_from_checkpoint",
    "check_same_clips",
    "checkpoint_loading",
    "evaluate_scores",
    "fit_temperature",
    "fuse_scores",
    "fused_probabilities",
    "fusion_weights_from_file",
    "load_checkpoint_config",
    "model_from_checkpoint",
    "predict_scores",
    "predict_split",
    "predict_trainer",
    "resolve_fusion_weights",
    "require_skeleton_gesture",
    "resolve_temperatures",
    "score_checkpoints",
    "search_fusion_weights",
    "simplex_grid",
]


# -- scoring checkpoints ------------------------------------------------------------------------
def load_checkpoint_config(
    ckpt_path: str | Path,
    unsafe_unpickle: bool = False,
    data_overrides: DictConfig | Mapping[str, Any] | None = None,
    data_dir: str | Path | None = None,
    trusted_targets: Sequence[str] = (),
) -> tuple[DictConfig, dict[str, Any]]:
    """The ``data`` and ``model`` config to rebuild a checkpoint's model and data from, and the
    checkpoint's state dict.

    The file is read with ``weights_only=True`` (``unsafe_unpickle`` is the explicit opt-in for a
    trusted legacy pickle). Its stored config is untrusted data
    (:func:`~migalab.utils.stored_config.sanitize_stored_config`): plain values only, no
    interpolation, only its ``data`` and ``model`` sections, classes renamed since it was written
    mapped to their new names (:func:`~migalab.utils.checkpoints.upgrade_targets`), folders and
    files re-rooted under ``data_dir`` (the current run's ``paths.data_dir``; default: the
    project's ``data/``) or taken from ``data_overrides`` (the current run's ``data.*``,
    resolved here in their own config), then every ``_target_`` checked against the exact
    allowlist (plus ``trusted_targets``).
    """
    path = Path(ckpt_path)
    source = f"checkpoint {path}"
    ckpt = load_checkpoint(path, unsafe_unpickle=unsafe_unpickle)
    if not isinstance(ckpt, Mapping) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointReadError(
            f"checkpoint {path} has no '{CONFIG_KEY}' entry: it was not written by migalab-train"
        )
    state = ckpt["state_dict"]
    if not isinstance(state, Mapping):
        raise UnsafeCheckpointError(f"{source}: its state_dict is not a mapping of tensors")
    user = data_overrides
    if isinstance(user, DictConfig):
        user = OmegaConf.to_container(user, resolve=True)
    cfg = sanitize_stored_config(
        ckpt[CONFIG_KEY],
        source,
        user_data=user,
        data_dir=data_dir if data_dir is not None else project_root() / "data",
        state_dict=state,
        trusted_targets=trusted_targets,
        upgrade=upgrade_targets,
    )
    return cfg, upgrade_state_dict(state)


def checkpoint_loading(cfg: DictConfig) -> dict[str, Any]:
    """The :func:`load_checkpoint_config` options of an entry point's config (eval, predict,
    pseudolabel): its ``data`` overrides, ``paths.data_dir``, ``trusted_targets`` and
    ``unsafe_unpickle_checkpoints``."""
    paths = cfg.get("paths") or {}
    return {
        "unsafe_unpickle": bool(cfg.get("unsafe_unpickle_checkpoints")),
        "data_overrides": cfg.get("data"),
        "data_dir": paths.get("data_dir"),
        "trusted_targets": [str(t) for t in cfg.get("trusted_targets") or []],
    }


@dataclass
class SplitScores:
    """One checkpoint's scores on one split, in dataset order: logits (N, K), labels (N,) (-1
    where unknown) and clip names; for emotion checkpoints also each clip's video (N,) (its
    position in ``video_ids``)."""

    logits: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    has_labels: bool
    videos: torch.Tensor | None = None
    video_ids: list[str] | None = None
    #: a fusion's per-stream classes (N,) from its auxiliary heads, -1 where the stream is absent
    stream_preds: dict[str, torch.Tensor] | None = None


@dataclass
class CheckpointScores:
    """Scores of one checkpoint on the requested splits, plus what describes it."""

    path: str
    name: str
    num_classes: int
    class_names: list[str] | None
    #: the dataset spec the model was trained on (``data.dataset``)
    dataset: str = "miga2025"
    splits: dict[str, SplitScores] = field(default_factory=dict)
    #: ``gesture`` (clip classes) or ``emotion`` (win / lose per video; ``data.target``)
    target: str = "gesture"
    #: an emotion model's video pooling of clip logits (``model.aggregation``, ``temperature``)
    aggregation: str = "mean"
    temperature: float = 1.0


def predict_scores(
    model: L.LightningModule, datamodule: Any, split: str, trainer: L.Trainer
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Logits (N, K), labels (N,) and, when the batches carry them (``data.target=emotion``),
    videos (N,) of dataset split ``split`` in dataset order (else None)
    (:func:`predict_split`)."""
    out = predict_split(model, datamodule, split, trainer)
    return out["logits"], out["labels"], out["videos"]


def predict_split(
    model: L.LightningModule, datamodule: Any, split: str, trainer: L.Trainer
) -> dict[str, Any]:
    """Everything the model's ``predict_step`` gives on dataset split ``split``, in dataset
    order: ``logits`` (N, K), ``labels`` (N,), ``videos`` (N,) or None (emotion batches carry
    them) and ``stream_preds`` (stream -> (N,), a fusion's auxiliary heads) or None.

    Runs ``trainer.predict`` with the datamodule attached (its batch hooks, e.g. on-device
    heatmap rendering, apply) on ``datamodule.predict_split = split``.
    """
    datamodule.predict_split = split
    outputs = trainer.predict(model, datamodule=datamodule)
    index = torch.cat([o["index"] for o in outputs])
    order = torch.argsort(index)
    videos, stream_preds = None, None
    if all("video" in o for o in outputs):
        videos = torch.cat([o["video"] for o in outputs]).long()[order]
    streams = [set(o.get("stream_pred") or {}) for o in outputs]
    if streams and streams[0] and all(s == streams[0] for s in streams):
        stream_preds = {
            name: torch.cat([o["stream_pred"][name] for o in outputs]).long()[order]
            for name in sorted(streams[0])
        }
    return {
        "logits": torch.cat([o["logits"] for o in outputs]).float()[order],
        "labels": torch.cat([o["label"] for o in outputs])[order],
        "videos": videos,
        "stream_preds": stream_preds,
    }


def model_from_checkpoint(
    train_cfg: DictConfig, state_dict: Mapping[str, Any]
) -> L.LightningModule:
    """The model of a stored training config (:func:`load_checkpoint_config`), its weights
    loaded, in eval mode."""
    model = hydra.utils.instantiate(train_cfg.model)
    model.load_state_dict(state_dict)
    return model.eval()


def require_skeleton_gesture(train_cfg: DictConfig, ckpt: str, task: str) -> None:
    """Refuse, naming the checkpoint, one that is not a skeleton gesture model (``task``: what
    needs it, e.g. "online recognition")."""
    data = train_cfg.data
    if data.get("modalities") or str(data.get("target", "gesture")) != "gesture":
        raise ValueError(
            f"{ckpt}: {task} takes skeleton gesture checkpoints (this one: "
            f"modalities {data.get('modalities')}, target {data.get('target')})"
        )


def build_from_checkpoint(
    train_cfg: DictConfig, state_dict: Mapping[str, Any]
) -> tuple[L.LightningModule, Any]:
    """The model (:func:`model_from_checkpoint`) and the prepared, set-up datamodule of a
    stored training config (:func:`load_checkpoint_config`)."""
    datamodule = hydra.utils.instantiate(train_cfg.data)
    model = model_from_checkpoint(train_cfg, state_dict)
    datamodule.prepare_data()
    datamodule.setup("predict")
    return model, datamodule


def predict_trainer(trainer_cfg: DictConfig) -> L.Trainer:
    """A one-process trainer for scoring (no logger, callbacks or progress bar)."""
    return hydra.utils.instantiate(
        trainer_cfg,
        logger=False,
        callbacks=[],
        enable_progress_bar=False,
        devices=1,
        num_nodes=1,
        strategy="auto",
    )


def score_checkpoints(
    ckpts: Sequence[str],
    splits: Sequence[str],
    trainer_cfg: DictConfig,
    data_overrides: DictConfig | None = None,
    require_labels: bool = True,
    unsafe_unpickle: bool = False,
    target: str | None = None,
    data_dir: str | Path | None = None,
    trusted_targets: Sequence[str] = (),
) -> list[CheckpointScores]:
    """Rebuild each checkpoint's model and data from its stored config and score ``splits``.

    Splits that are missing (or unlabelled, when ``require_labels``) are skipped with a
    warning. Runs on one process: fusion needs every clip's scores in one place (for DDP
    evaluation of a single checkpoint use ``migalab-train train=false ckpt_path=...``).
    Checkpoints are read safely (:func:`load_checkpoint_config`; ``unsafe_unpickle`` opts out).
    ``target`` (``gesture`` | ``emotion``): refuse, before scoring, a checkpoint trained for
    the other task. Emotion checkpoints' splits also hold each clip's video.
    """
    out: list[CheckpointScores] = []
    for ckpt in ckpts:
        train_cfg, state_dict = load_checkpoint_config(
            ckpt, unsafe_unpickle, data_overrides, data_dir, trusted_targets
        )
        found = str(train_cfg.data.get("target", "gesture"))
        if target is not None and found != target:
            raise ValueError(
                f"{ckpt} is an {found} checkpoint (data.target={found}); this command takes "
                f"{target} checkpoints"
                + (
                    f" (evaluate it per video with migalab-eval ckpt_path={ckpt})"
                    if found == "emotion"
                    else ""
                )
            )
        model, datamodule = build_from_checkpoint(train_cfg, state_dict)
        trainer = predict_trainer(trainer_cfg)
        class_names = list(train_cfg.model.get("class_names") or []) or None
        # what the model sees: its modalities (face, rgb+joint+bone, ...) or its skeleton stream
        modalities = train_cfg.data.get("modalities")
        inputs = "+".join(modalities) if modalities else train_cfg.data.get("stream", "model")
        entry = CheckpointScores(
            path=str(ckpt),
            name=f"{inputs}:{Path(ckpt).name}",
            num_classes=int(train_cfg.model.get("num_classes") or train_cfg.model.num_outputs),
            class_names=class_names,
            dataset=str(train_cfg.data.get("dataset") or "miga2025"),
            target=found,
            aggregation=str(train_cfg.model.get("aggregation", "mean")),
            temperature=float(train_cfg.model.get("temperature", 1.0)),
        )
        for split in splits:
            ds = datamodule.datasets.get(split)
            labelled = datamodule.has_labels(split)
            if ds is None or len(ds) == 0 or (require_labels and not labelled):
                log.warning("%s: split %s is missing, empty or unlabelled; skipped", ckpt, split)
                continue
            scored = predict_split(model, datamodule, split, trainer)
            names = [ds.clip_name(i) for i in range(len(ds))]
            entry.splits[split] = SplitScores(
                scored["logits"],
                scored["labels"],
                names,
                labelled,
                scored["videos"],
                list(ds.video_ids) if scored["videos"] is not None else None,
                scored["stream_preds"],
            )
        out.append(entry)
    return out


def check_same_clips(entries: Sequence[CheckpointScores], split: str) -> None:
    """Raise unless every checkpoint scored the same ``split`` clips (names and labels)."""
    first = entries[0].splits[split]
    for other in entries[1:]:
        s = other.splits[split]
        if s.names != first.names or not torch.equal(s.labels, first.labels):
            raise ValueError(f"checkpoints disagree on the {split} clips; cannot fuse")


# -- fusion ---------------------------------------------------------------------------------------
def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) on labelled scores
    (logits (N, K), labels (N,)); LBFGS over log T, as temperature scaling (Guo et al., 2017)."""
    x, y = logits.detach().double(), labels.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def calibrated_scores(
    scores: Sequence[torch.Tensor], temperatures: Sequence[float]
) -> list[torch.Tensor]:
    """Each stream's logits (N, K) divided by its temperature."""
    if len(temperatures) != len(scores):
        raise ValueError(f"{len(temperatures)} temperatures for {len(scores)} checkpoints")
    return [s / float(t) for s, t in zip(scores, temperatures, strict=True)]


def fuse_scores(
    scores: Sequence[torch.Tensor],
    weights: Sequence[float] | None,
    space: str = "probs",
    temperatures: Sequence[float] | None = None,
) -> torch.Tensor:
    """Weighted sum of per-stream scores (N, K): softmax probabilities or raw logits, each
    stream's logits divided by its temperature first (None: 1)."""
    if weights is None:
        weights = [1.0] * len(scores)
    if len(weights) != len(scores):
        raise ValueError(f"{len(weights)} fusion weights for {len(scores)} checkpoints")
    if space not in ("probs", "logits"):
        raise ValueError(f"fusion.space must be 'probs' or 'logits', got {space!r}")
    if temperatures is not None:
        scores = calibrated_scores(scores, temperatures)
    terms = [s.softmax(-1) if space == "probs" else s for s in scores]
    return sum(w * t for w, t in zip(weights, terms, strict=True))


def fused_probabilities(fused: torch.Tensor, space: str = "probs") -> torch.Tensor:
    """Class probabilities (N, K) of a :func:`fuse_scores` result: fused probabilities (a
    weighted sum) are renormalised to sum to 1, fused logits go through a softmax."""
    return fused / fused.sum(-1, keepdim=True) if space == "probs" else fused.softmax(-1)


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``n`` non-negative multiples of ``step`` summing to 1."""
    if not 0 < step <= 1:
        raise ValueError(f"fusion.grid_step must be in (0, 1], got {step}")
    k = round(1 / step)
    if abs(k * step - 1) > 1e-9:
        raise ValueError(f"fusion.grid_step must divide 1, got {step}")
    return [
        tuple(c / k for c in combo)
        for combo in itertools.product(range(k + 1), repeat=n)
        if sum(combo) == k
    ]


def search_fusion_weights(
    scores: Sequence[torch.Tensor],
    labels: torch.Tensor,
    num_classes: int,
    step: float = 0.05,
    space: str = "probs",
    temperatures: Sequence[float] | None = None,
) -> tuple[tuple[float, ...], dict[str, float]]:
    """Grid-search fusion weights maximising top-1 on labelled scores. Returns the weights and
    the metrics they reach.

    Ties are broken deterministically: the higher macro-F1, then the most even weights (the
    smallest largest weight), then the first grid point in :func:`simplex_grid`'s order (the
    lexicographically smallest weights, e.g. ``(0.25, 0.75)`` before ``(0.75, 0.25)``)."""
    if temperatures is not None:  # calibrate once, not at every grid point
        scores = calibrated_scores(scores, temperatures)
    best: tuple[tuple[float, float, float], tuple[float, ...], dict[str, float]] | None = None
    for w in simplex_grid(len(scores), step):
        m = compute_metrics(fuse_scores(scores, w, space), labels, num_classes)
        evenness = -max(w)
        key = (float(m["top1"]), float(m["macro_f1"]), evenness)
        if best is None or key > best[0]:
            best = (key, w, {"top1": float(m["top1"]), "macro_f1": float(m["macro_f1"])})
    assert best is not None
    return best[1], best[2]


def fusion_weights_from_file(path: str | Path, n: int | None = None) -> list[float]:
    """Weights stored by ``migalab-eval`` (``fusion.json`` or the ``fusion`` entry of a
    ``metrics.json``), checked (``n`` of them when the number of checkpoints is known); a
    malformed record raises :class:`~migalab.scoring.records.FusionRecordError`."""
    return read_fusion_record(path, n)["weights"]


def resolve_temperatures(
    fusion: DictConfig, entries: Sequence[CheckpointScores]
) -> list[float] | None:
    """Per-checkpoint temperatures: from ``fusion.from`` (None when it stored none), else
    ``fusion.temperature``: null -> None, ``fit`` -> fitted on ``search_split``, a list -> it."""
    if fusion.get("from"):
        return read_fusion_record(fusion["from"], len(entries))["temperatures"]
    given = fusion.get("temperature")
    if given is None:
        return None
    if isinstance(given, str):
        if given != "fit":
            raise FusionRecordError(
                f"fusion.temperature must be null, fit or a list, got {given!r}"
            )
        split = fusion.get("search_split", "val")
        if any(split not in e.splits or not e.splits[split].has_labels for e in entries):
            raise ValueError(
                f"fusion.temperature=fit needs labelled {split} scores from every "
                f"checkpoint; add {split} to splits or give the temperatures"
            )
        temps = [fit_temperature(e.splits[split].logits, e.splits[split].labels) for e in entries]
        log.info("temperatures fitted on %s: %s", split, [round(t, 4) for t in temps])
        return temps
    return check_temperatures(given, len(entries), "fusion.temperature")


def resolve_fusion_weights(
    fusion: DictConfig, entries: Sequence[CheckpointScores]
) -> tuple[list[float] | None, dict[str, Any]]:
    """The fusion weights to use: read from ``fusion.from`` when set (migalab-predict), else
    searched on ``fusion.search_split`` when ``fusion.search``, else ``fusion.weights`` (None =
    equal). Returns them and a record for ``fusion.json``."""
    if fusion.get("from"):  # one read of the stored record: its weights and temperatures
        record = read_fusion_record(fusion["from"], len(entries))
        weights, temps = record["weights"], record["temperatures"]
        info = {
            "weights": weights,
            "temperatures": temps,
            "from": str(fusion["from"]),
            "space": fusion.space,
            "checkpoints": [e.path for e in entries],
        }
        return weights, info
    temps = resolve_temperatures(fusion, entries)
    info: dict[str, Any] = {
        "space": fusion.space,
        "temperatures": temps,
        "checkpoints": [e.path for e in entries],
    }
    if not fusion.get("search", False):
        given = fusion.get("weights")
        weights = None if given is None else check_weights(given, len(entries), "fusion.weights")
        info.update(weights=weights, searched=False)
        return weights, info
    split = fusion.get("search_split", "val")
    if any(split not in e.splits or not e.splits[split].has_labels for e in entries):
        raise ValueError(
            f"fusion.search needs labelled {split} scores from every checkpoint; "
            f"add {split} to splits or give fusion.weights"
        )
    labels = entries[0].splits[split].labels
    weights, reached = search_fusion_weights(
        [e.splits[split].logits for e in entries],
        labels,
        entries[0].num_classes,
        step=float(fusion.get("grid_step", 0.05)),
        space=fusion.space,
        temperatures=temps,
    )
    log.info("fusion weights searched on %s: %s (top1 %.4f)", split, weights, reached["top1"])
    info.update(
        weights=list(weights),
        searched=True,
        search_split=split,
        grid_step=float(fusion.get("grid_step", 0.05)),
        search_metrics=reached,
    )
    return list(weights), info


# -- metrics --------------------------------------------------------------------------------------
def evaluate_scores(
    entries: Sequence[CheckpointScores],
    splits: Sequence[str],
    weights: Sequence[float] | None = None,
    space: str = "probs",
    temperatures: Sequence[float] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of every split that all ``entries`` scored: one checkpoint's own, or with several
    the fusion's (``<split>``, streams calibrated by ``temperatures``) and each stream's
    (``<split>_streams``).

    Returns the metrics (for ``metrics.json``) and a flat table of them by row name (for
    :func:`migalab.utils.summary.print_summary`).
    """
    num_classes, class_names = entries[0].num_classes, entries[0].class_names
    metrics: dict[str, Any] = {}
    table: dict[str, Any] = {}
    for split in splits:
        if any(split not in e.splits for e in entries):
            continue
        labels = entries[0].splits[split].labels
        if len(entries) == 1:
            metrics[split] = _checkpoint_metrics(entries[0].splits[split], num_classes, class_names)
            table[split] = metrics[split]
            for stream, top1 in metrics[split].get("stream_top1", {}).items():
                table[f"{split} {stream} head"] = {"top1": top1}  # the printed table's rows
            continue
        check_same_clips(entries, split)
        streams = {
            e.name: _checkpoint_metrics(e.splits[split], num_classes, class_names) for e in entries
        }
        fused = fuse_scores([e.splits[split].logits for e in entries], weights, space, temperatures)
        metrics[split] = compute_metrics(fused, labels, num_classes, class_names)
        metrics[f"{split}_streams"] = streams
        table.update({f"{split} {n}": m for n, m in streams.items()})
        table[f"{split} fused"] = metrics[split]
    return metrics, table


def _checkpoint_metrics(
    scores: SplitScores, num_classes: int, class_names: Sequence[str] | None
) -> dict[str, Any]:
    """One checkpoint's metrics on a split, with a fusion's per-stream top-1 (``stream_top1``:
    each auxiliary head over the clips where its stream is present; NaN where it never is), as
    its training run's validation and test report them."""
    metrics = compute_metrics(scores.logits, scores.labels, num_classes, class_names)
    if scores.stream_preds:
        metrics["stream_top1"] = stream_top1(scores.stream_preds, scores.labels)
    return metrics
