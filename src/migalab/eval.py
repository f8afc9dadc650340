"""Evaluation entry point (console script ``migalab-eval``).

    migalab-eval ckpt_path=logs/train/runs/<run>/checkpoints/epoch_012.ckpt
    migalab-eval ckpt_path='[joint.ckpt,bone.ckpt]' fusion.weights='[0.4,0.6]'

Each checkpoint carries the resolved config of its training run, so its model and its data
pipeline (stream, layout, frames) are rebuilt exactly; ``data.*`` overrides given here (e.g. a
new ``data.release_root``) are merged on top. Several checkpoints are fused at score level (the
2s-AGCN joint + bone ensemble). Writes ``metrics.json`` in the run dir with the metrics of each
checkpoint and of the fusion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from migalab.tasks.metrics import compute_metrics
from migalab.utils.callbacks import CONFIG_KEY
from migalab.utils.hydra import register_resolvers, save_resolved_config
from migalab.utils.summary import print_summary, write_metrics

log = logging.getLogger(__name__)

STAGE_LOADERS = {"val": "val_dataloader", "test": "test_dataloader"}


def load_checkpoint_config(ckpt_path: str | Path) -> tuple[DictConfig, dict[str, Any]]:
    """The training config stored in a checkpoint and the checkpoint's state dict."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if CONFIG_KEY not in ckpt:
        raise ValueError(
            f"checkpoint {path} has no '{CONFIG_KEY}' entry: it was not written by migalab-train"
        )
    return OmegaConf.create(ckpt[CONFIG_KEY]), ckpt["state_dict"]


def predict_scores(
    model: L.LightningModule, loader: Any, trainer: L.Trainer
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, K) and labels (N,) in dataset order."""
    outputs = trainer.predict(model, dataloaders=loader)
    index = torch.cat([o["index"] for o in outputs])
    logits = torch.cat([o["logits"] for o in outputs]).float()
    labels = torch.cat([o["label"] for o in outputs])
    order = torch.argsort(index)
    return logits[order], labels[order]


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


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Score every checkpoint on the requested splits, fuse, and write ``metrics.json``."""
    L.seed_everything(cfg.get("seed", 42), workers=True)
    ckpts = cfg.ckpt_path
    ckpts = [str(c) for c in ckpts] if isinstance(ckpts, ListConfig | list) else [str(ckpts)]
    splits = list(cfg.splits)
    per_ckpt: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
    names: list[str] = []
    class_names: list[str] | None = None
    num_classes = 0
    for ckpt in ckpts:
        train_cfg, state_dict = load_checkpoint_config(ckpt)
        if cfg.get("data"):
            train_cfg.data = OmegaConf.merge(train_cfg.data, cfg.data)
        datamodule = hydra.utils.instantiate(train_cfg.data)
        model = hydra.utils.instantiate(train_cfg.model)
        model.load_state_dict(state_dict)
        model.eval()
        datamodule.prepare_data()
        datamodule.setup("validate")
        # one process: fusion needs every clip's scores in one place (for DDP evaluation of a
        # single checkpoint use `migalab-train train=false ckpt_path=... trainer=ddp`)
        trainer: L.Trainer = hydra.utils.instantiate(
            cfg.trainer,
            logger=False,
            callbacks=[],
            enable_progress_bar=False,
            devices=1,
            num_nodes=1,
            strategy="auto",
        )
        scores = {}
        for split in splits:
            if not datamodule.has_labels(split):
                log.warning("%s: split %s is missing or unlabelled; skipped", ckpt, split)
                continue
            scores[split] = predict_scores(
                model, getattr(datamodule, STAGE_LOADERS[split])(), trainer
            )
        per_ckpt.append(scores)
        names.append(f"{train_cfg.data.get('stream', 'model')}:{Path(ckpt).name}")
        class_names = list(train_cfg.model.get("class_names") or []) or None
        num_classes = int(train_cfg.model.num_classes)

    payload: dict[str, Any] = {"task": cfg.task_name, "run_dir": cfg.paths.output_dir,
                               "ckpt_path": ckpts}  # fmt: skip
    table: dict[str, Any] = {}
    for split in splits:
        available = [s[split] for s in per_ckpt if split in s]
        if len(available) != len(per_ckpt):
            continue
        labels = available[0][1]
        for other in available[1:]:
            if not torch.equal(other[1], labels):
                raise ValueError(f"checkpoints disagree on the {split} clips; cannot fuse")
        if len(available) == 1:
            payload[split] = compute_metrics(available[0][0], labels, num_classes, class_names)
            table[split] = payload[split]
            continue
        streams = {
            name: compute_metrics(s, labels, num_classes, class_names)
            for name, (s, _) in zip(names, available, strict=True)
        }
        fused = fuse_scores([s for s, _ in available], cfg.fusion.weights, cfg.fusion.space)
        payload[split] = compute_metrics(fused, labels, num_classes, class_names)
        payload[f"{split}_streams"] = streams
        table.update({f"{split} {n}": m for n, m in streams.items()})
        table[f"{split} fused"] = payload[split]
    payload["fusion"] = OmegaConf.to_container(cfg.fusion) if len(ckpts) > 1 else None
    path = write_metrics(cfg.paths.output_dir, payload)
    print_summary(f"{cfg.task_name}", table, footer=f"metrics: {path}")
    return payload


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def _main(cfg: DictConfig) -> None:
    save_resolved_config(cfg, cfg.paths.output_dir)
    evaluate(cfg)


def main() -> None:
    """Console entry point: register resolvers, then hand over to Hydra."""
    register_resolvers()
    _main()


if __name__ == "__main__":
    main()
