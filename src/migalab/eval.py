"""Evaluation entry point (console script ``migalab-eval``).

    migalab-eval ckpt_path=logs/train/runs/<run>/checkpoints/epoch_012.ckpt
    migalab-eval ckpt_path='[joint.ckpt,bone.ckpt]' fusion.weights='[0.4,0.6]'
    migalab-eval ckpt_path='[joint.ckpt,limb.ckpt]' fusion.search=true   # weights from val

Each checkpoint carries the resolved config of its training run, so its model and its data
pipeline (stream, layout, frames, test-time views) are rebuilt exactly; ``data.*`` overrides
given here (e.g. a new ``data.release_root``) are merged on top. Several checkpoints are fused
at score level (the 2s-AGCN joint + bone or PoseC3D joint + limb ensembles), with given weights
or weights searched on the validation split (a grid over the simplex; the chosen weights are
saved in ``fusion.json`` and used for the other splits). Writes ``metrics.json`` in the run dir
with the metrics of each checkpoint and of the fusion.
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
from omegaconf import DictConfig, ListConfig, OmegaConf

from migalab.tasks.metrics import compute_metrics
from migalab.utils.callbacks import CONFIG_KEY
from migalab.utils.checkpoints import check_config_targets, load_checkpoint
from migalab.utils.hydra import register_resolvers, save_resolved_config
from migalab.utils.io import atomic_write_json
from migalab.utils.paths import CONFIG_PATH
from migalab.utils.summary import print_summary, write_metrics

log = logging.getLogger(__name__)


def load_checkpoint_config(
    ckpt_path: str | Path, unsafe_unpickle: bool = False
) -> tuple[DictConfig, dict[str, Any]]:
    """The training config stored in a checkpoint and the checkpoint's state dict.

    The file is read with ``weights_only=True`` and the ``data`` and ``model`` configs (what
    gets instantiated) may name only allowed classes (:mod:`migalab.utils.checkpoints`);
    ``unsafe_unpickle`` is the explicit opt-in for a trusted legacy pickle.
    """
    path = Path(ckpt_path)
    ckpt = load_checkpoint(path, unsafe_unpickle=unsafe_unpickle)
    if not isinstance(ckpt, Mapping) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise ValueError(
            f"checkpoint {path} has no '{CONFIG_KEY}' entry: it was not written by migalab-train"
        )
    cfg = OmegaConf.create(ckpt[CONFIG_KEY])
    missing = [part for part in ("data", "model") if part not in cfg]
    if missing:
        raise ValueError(f"checkpoint {path}: its stored config has no {missing} section")
    stored = OmegaConf.to_container(cfg, resolve=False)
    check_config_targets({"data": stored["data"], "model": stored["model"]}, f"checkpoint {path}")
    return cfg, ckpt["state_dict"]


@dataclass
class SplitScores:
    """One checkpoint's scores on one split, in dataset order: logits (N, K), labels (N,) (-1
    where unknown) and clip names."""

    logits: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    has_labels: bool


@dataclass
class CheckpointScores:
    """Scores of one checkpoint on the requested splits, plus what describes it."""

    path: str
    name: str
    num_classes: int
    class_names: list[str] | None
    splits: dict[str, SplitScores] = field(default_factory=dict)


def predict_scores(
    model: L.LightningModule, datamodule: Any, split: str, trainer: L.Trainer
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) of dataset split ``split`` in dataset order.

    Runs ``trainer.predict`` with the datamodule attached (its batch hooks, e.g. on-device
    heatmap rendering, apply) on ``datamodule.predict_split = split``.
    """
    datamodule.predict_split = split
    outputs = trainer.predict(model, datamodule=datamodule)
    index = torch.cat([o["index"] for o in outputs])
    logits = torch.cat([o["logits"] for o in outputs]).float()
    labels = torch.cat([o["label"] for o in outputs])
    order = torch.argsort(index)
    return logits[order], labels[order]


def score_checkpoints(
    ckpts: Sequence[str],
    splits: Sequence[str],
    trainer_cfg: DictConfig,
    data_overrides: DictConfig | None = None,
    require_labels: bool = True,
    unsafe_unpickle: bool = False,
) -> list[CheckpointScores]:
    """Rebuild each checkpoint's model and data from its stored config and score ``splits``.

    Splits that are missing (or unlabelled, when ``require_labels``) are skipped with a
    warning. Runs on one process: fusion needs every clip's scores in one place (for DDP
    evaluation of a single checkpoint use ``migalab-train train=false ckpt_path=...``).
    Checkpoints are read safely (:func:`load_checkpoint_config`; ``unsafe_unpickle`` opts out).
    """
    out: list[CheckpointScores] = []
    for ckpt in ckpts:
        train_cfg, state_dict = load_checkpoint_config(ckpt, unsafe_unpickle)
        if data_overrides:
            train_cfg.data = OmegaConf.merge(train_cfg.data, data_overrides)
        datamodule = hydra.utils.instantiate(train_cfg.data)
        model = hydra.utils.instantiate(train_cfg.model)
        model.load_state_dict(state_dict)
        model.eval()
        datamodule.prepare_data()
        datamodule.setup("predict")
        trainer: L.Trainer = hydra.utils.instantiate(
            trainer_cfg,
            logger=False,
            callbacks=[],
            enable_progress_bar=False,
            devices=1,
            num_nodes=1,
            strategy="auto",
        )
        class_names = list(train_cfg.model.get("class_names") or []) or None
        entry = CheckpointScores(
            path=str(ckpt),
            name=f"{train_cfg.data.get('stream', 'model')}:{Path(ckpt).name}",
            num_classes=int(train_cfg.model.num_classes),
            class_names=class_names,
        )
        for split in splits:
            ds = datamodule.datasets.get(split)
            labelled = datamodule.has_labels(split)
            if ds is None or len(ds) == 0 or (require_labels and not labelled):
                log.warning("%s: split %s is missing, empty or unlabelled; skipped", ckpt, split)
                continue
            logits, labels = predict_scores(model, datamodule, split, trainer)
            names = [ds.clip_name(i) for i in range(len(ds))]
            entry.splits[split] = SplitScores(logits, labels, names, labelled)
        out.append(entry)
    return out


def fuse_scores(
    scores: Sequence[torch.Tensor], weights: Sequence[float] | None, space: str = "probs"
) -> torch.Tensor:
    """Weighted sum of per-stream scores (N, K): softmax probabilities or raw logits."""
    if weights is None:
        weights = [1.0] * len(scores)
    if len(weights) != len(scores):
        raise ValueError(f"{len(weights)} fusion weights for {len(scores)} checkpoints")
    if space not in ("probs", "logits"):
        raise ValueError(f"fusion.space must be 'probs' or 'logits', got {space!r}")
    terms = [s.softmax(-1) if space == "probs" else s for s in scores]
    return sum(w * t for w, t in zip(weights, terms, strict=True))


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
) -> tuple[tuple[float, ...], dict[str, float]]:
    """Grid-search fusion weights maximising top-1 (ties: macro-F1, then the most even
    weights) on labelled scores. Returns the weights and the metrics they reach."""
    best: tuple[tuple[float, float, float], tuple[float, ...], dict[str, float]] | None = None
    for w in simplex_grid(len(scores), step):
        m = compute_metrics(fuse_scores(scores, w, space), labels, num_classes)
        evenness = -max(w)
        key = (float(m["top1"]), float(m["macro_f1"]), evenness)
        if best is None or key > best[0]:
            best = (key, w, {"top1": float(m["top1"]), "macro_f1": float(m["macro_f1"])})
    assert best is not None
    return best[1], best[2]


def resolve_fusion_weights(
    fusion: DictConfig, entries: Sequence[CheckpointScores]
) -> tuple[list[float] | None, dict[str, Any]]:
    """The fusion weights to use: searched on ``fusion.search_split`` when ``fusion.search``,
    else ``fusion.weights`` (None = equal). Returns them and a record for ``fusion.json``."""
    info: dict[str, Any] = {"space": fusion.space, "checkpoints": [e.path for e in entries]}
    if not fusion.get("search", False):
        weights = list(fusion.weights) if fusion.weights is not None else None
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
    )
    log.info("fusion weights searched on %s: %s (top1 %.4f)", split, weights, reached["top1"])
    info.update(weights=list(weights), searched=True, search_split=split,
                grid_step=float(fusion.get("grid_step", 0.05)), search_metrics=reached)  # fmt: skip
    return list(weights), info


def check_same_clips(entries: Sequence[CheckpointScores], split: str) -> None:
    """Raise unless every checkpoint scored the same ``split`` clips (names and labels)."""
    first = entries[0].splits[split]
    for other in entries[1:]:
        s = other.splits[split]
        if s.names != first.names or not torch.equal(s.labels, first.labels):
            raise ValueError(f"checkpoints disagree on the {split} clips; cannot fuse")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score every checkpoint on the requested splits, fuse, and write ``metrics.json``."""
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = cfg.ckpt_path
    ckpts = [str(c) for c in ckpts] if isinstance(ckpts, ListConfig | list) else [str(ckpts)]
    splits = list(cfg.splits)
    if cfg.fusion.get("search", False) and cfg.fusion.get("search_split", "val") not in splits:
        splits.insert(0, cfg.fusion.get("search_split", "val"))
    entries = score_checkpoints(ckpts, splits, cfg.trainer, cfg.get("data"),
                                unsafe_unpickle=bool(cfg.get("unsafe_unpickle_checkpoints")))  # fmt: skip
    num_classes, class_names = entries[0].num_classes, entries[0].class_names

    payload: dict[str, Any] = {"task": cfg.task_name, "run_dir": cfg.paths.output_dir,
                               "ckpt_path": ckpts}  # fmt: skip
    weights, fusion_info = None, None
    if len(entries) > 1:
        weights, fusion_info = resolve_fusion_weights(cfg.fusion, entries)
        atomic_write_json(Path(cfg.paths.output_dir) / "fusion.json", fusion_info)
    table: dict[str, Any] = {}
    for split in splits:
        if any(split not in e.splits for e in entries):
            continue
        labels = entries[0].splits[split].labels
        if len(entries) == 1:
            payload[split] = compute_metrics(
                entries[0].splits[split].logits, labels, num_classes, class_names
            )
            table[split] = payload[split]
            continue
        check_same_clips(entries, split)
        streams = {
            e.name: compute_metrics(e.splits[split].logits, labels, num_classes, class_names)
            for e in entries
        }
        fused = fuse_scores([e.splits[split].logits for e in entries], weights, cfg.fusion.space)
        payload[split] = compute_metrics(fused, labels, num_classes, class_names)
        payload[f"{split}_streams"] = streams
        table.update({f"{split} {n}": m for n, m in streams.items()})
        table[f"{split} fused"] = payload[split]
    payload["fusion"] = fusion_info
    path = write_metrics(cfg.paths.output_dir, payload)
    footer = f"metrics: {path}"
    if fusion_info is not None:
        footer += f"\nfusion weights: {fusion_info['weights']}"
    print_summary(f"{cfg.task_name}", table, footer=footer)
    return payload


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _main(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    evaluate(cfg)


def main() -> None:
    """Console entry point: register resolvers, then hand over to Hydra."""
    register_resolvers()
    _main()


if __name__ == "__main__":
    main()
