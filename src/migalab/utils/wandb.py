"""Weights & Biases: a logger that never blocks or fails a run, per-class accuracy tables and
confusion matrices after every evaluation, checkpoint artifacts, and one W&B run per job.

    migalab-train logger=wandb                                  # offline (default)
    migalab-train logger=wandb callbacks=wandb                  # + per-class table, confusion matrix
    migalab-train logger=wandb logger.wandb.offline=false       # stream (falls back to offline)
    wandb sync logs/train/runs/<run>/wandb/offline-run-*        # upload offline runs later

- :func:`wandb_logger` is the ``_target_`` of ``conf/logger/wandb.yaml``. Offline runs are written
  under ``<run dir>/wandb/offline-run-*/``. When online is requested it starts the run at once
  with a short ``init_timeout``; on any failure (service unreachable, no API key, ...) it logs a
  warning and returns an offline logger instead.
- :class:`WandbReports` (``callbacks=wandb``) logs ``<split>/per_class`` (table: class id, name,
  accuracy, support) and ``<split>/confusion_matrix`` (W&B confusion-matrix chart) at the end of
  every validation (not the sanity check) and test, on rank 0, and optionally the best checkpoint
  as a ``model`` artifact at the end of fit.
- :func:`finish_wandb` ends the W&B run of a job; ``train()`` calls it last, so each job of a
  multirun gets its own run.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)

__all__ = [
    "MigalabWandbLogger",
    "WandbReports",
    "finish_wandb",
    "run_dir_wandb_id",
    "wandb_loggers",
    "wandb_logger",
]


class MigalabWandbLogger(WandbLogger):
    """Lightning's :class:`WandbLogger` with offline mode kept to this logger.

    Lightning's ``WandbLogger(offline=True)`` sets ``WANDB_MODE=dryrun`` for the whole process
    (the next job of a multirun would be offline even if it asked for online) and refuses
    ``log_model`` offline. Here offline is passed to ``wandb.init(mode="offline")`` only, and
    checkpoint artifacts (``log_model``) are stored with the offline run, uploaded by
    ``wandb sync``.
    """

    def __init__(
        self, *args: Any, offline: bool = False, log_model: bool | str = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, offline=False, log_model=False, **kwargs)
        self._log_model = log_model
        if offline:
            self._wandb_init["mode"] = "offline"
        if self._wandb_init.get("anonymous") is None:  # recent wandb warns about anonymous=None
            self._wandb_init.pop("anonymous", None)

    @property
    def offline(self) -> bool:
        """Whether this logger writes an offline run."""
        return self._wandb_init.get("mode") in ("offline", "dryrun")


def _plain(value: Any) -> Any:
    """OmegaConf containers (Hydra passes them as they are) → plain Python."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def wandb_logger(
    *,
    offline: bool = True,
    init_timeout: float = 30.0,
    finish_timeout: float = 120.0,
    finish_previous: bool = True,
    settings: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> MigalabWandbLogger:
    """A :class:`WandbLogger` that never blocks or fails a run because of the W&B service.

    Args:
        offline: write an offline run (``wandb sync`` uploads it later). ``WANDB_MODE=offline``
            (or ``dryrun``) in the environment makes an online request offline too, and
            ``WANDB_MODE=disabled`` turns W&B off.
        init_timeout: seconds ``wandb.init`` (and a login) may take when online; after that the
            run falls back to offline.
        finish_timeout: seconds the end of an online run may wait for uploads (0 = no limit);
            what is not uploaded stays on disk for ``wandb sync``.
        finish_previous: finish a W&B run left open in this process (e.g. by an earlier job of a
            multirun that failed before :func:`finish_wandb`), so this job gets its own run.
        settings: extra ``wandb.Settings`` fields.
        **kwargs: :class:`WandbLogger` / ``wandb.init`` arguments (``save_dir``, ``project``,
            ``name``, ``group``, ``tags``, ``job_type``, ``log_model``, ``id``, ...).

    When online is requested, the run is started here on rank 0 (other ranks never start one);
    any failure logs a warning and returns an offline logger writing to the same ``save_dir``.
    """
    import wandb

    kwargs = {k: _plain(v) for k, v in kwargs.items()}
    run_dir_id = kwargs.get("id") is None and kwargs.get("save_dir") and rank_zero_only.rank == 0
    if run_dir_id:
        # one W&B run per run dir: a resumed or requeued job continues the same run
        kwargs["id"], resumed = run_dir_wandb_id(kwargs["save_dir"])
        if resumed:
            kwargs.setdefault("resume", "allow")
            log.info("continuing W&B run %s of this run dir", kwargs["id"])
    run_settings: dict[str, Any] = {
        "init_timeout": float(init_timeout),
        "login_timeout": float(init_timeout),
        "finish_timeout": float(finish_timeout),
        **(_plain(settings) or {}),
    }
    if finish_previous and rank_zero_only.rank == 0 and wandb.run is not None:
        log.warning("Finishing the W&B run %s left open in this process", wandb.run.id)
        wandb.finish()
    # the mode is always given to wandb.init: wandb reads WANDB_MODE only once per process
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    kwargs.pop("mode", None)
    if env_mode == "disabled":
        return MigalabWandbLogger(mode="disabled", settings=dict(run_settings), **kwargs)
    if not offline and env_mode in ("offline", "dryrun"):
        log.info("WANDB_MODE=%s: the W&B run is written offline", env_mode)
        offline = True
    if offline:
        return MigalabWandbLogger(offline=True, settings=dict(run_settings), **kwargs)

    kwargs["mode"] = "online"
    logger = MigalabWandbLogger(offline=False, settings=dict(run_settings), **kwargs)
    if rank_zero_only.rank != 0:
        return logger
    start = time.monotonic()
    try:
        _ = logger.experiment  # wandb.init now, bounded by init_timeout
    except Exception as err:  # noqa: BLE001 - any failure must leave the run going, offline
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        save_dir = kwargs.get("save_dir") or kwargs.get("dir") or "."
        log.warning(
            "W&B online init failed after %.1f s (%s: %s); logging offline instead - upload "
            "later with `wandb sync %s`",
            time.monotonic() - start,
            type(err).__name__,
            reason,
            Path(save_dir) / "wandb" / "offline-run-*",
        )
        if wandb.run is not None:
            try:
                wandb.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
        kwargs.pop("mode", None)
        if run_dir_id:  # the failed online start holds its id in this process: a new one
            kwargs["id"], _ = run_dir_wandb_id(kwargs["save_dir"], renew=True)
        return MigalabWandbLogger(offline=True, settings=dict(run_settings), **kwargs)
    return logger


#: the W&B run id of a run dir, kept in ``<run dir>/wandb/``
RUN_ID_FILE = "migalab_run_id"


def run_dir_wandb_id(save_dir: str | os.PathLike, renew: bool = False) -> tuple[str, bool]:
    """The W&B run id of the run dir ``save_dir``: the one stored there by an earlier start of
    this run (then ``True``: resume it), else a new id, stored atomically (``False``).

    A job that is resumed or requeued in its run dir (``ckpt_path=auto|last``) thus logs into the
    same W&B run, online or offline (``wandb sync`` uploads every offline part into that run).
    ``renew`` stores a new id (an online start that failed keeps its id busy in this process).
    """
    import secrets
    import string

    from migalab.utils.io import atomic_write_text

    path = Path(save_dir) / "wandb" / RUN_ID_FILE
    if path.is_file() and not renew:
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored, True
    # W&B's own form (8 lowercase letters / digits); its id helper is not public API
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    atomic_write_text(path, run_id + "\n")
    return run_id, False


def wandb_loggers(loggers: Iterable[Logger] | Logger | None) -> list[WandbLogger]:
    """The :class:`WandbLogger` instances among ``loggers`` (a list, a logger or None)."""
    if loggers is None:
        return []
    if isinstance(loggers, Logger):
        loggers = [loggers]
    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def finish_wandb(loggers: Iterable[Logger] | Logger | None, exit_code: int | None = None) -> None:
    """Finish the W&B runs started by ``loggers`` (call once a job is done: train, val, test).

    Lightning never finishes a W&B run, and a later ``WandbLogger`` in the same process reuses an
    unfinished one: without this the jobs of a multirun would all log into the first job's run.
    Safe on every rank, with no W&B logger, or when the run was never started. Errors are logged,
    never raised.
    """
    for lg in wandb_loggers(loggers):
        run = getattr(lg, "_experiment", None)  # None: never started here (or rank > 0)
        if run is None or not hasattr(run, "finish"):
            continue
        try:
            run.finish(exit_code=exit_code)
        except Exception as err:  # noqa: BLE001
            log.warning("Could not finish the W&B run: %s", err)


# -- reports ------------------------------------------------------------------------------------
def _finite_or_none(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def per_class_rows(
    summary: Mapping[str, Any] | None,
    confusion: torch.Tensor | None,
    class_names: Sequence[str] | None = None,
) -> list[list[Any]]:
    """Rows ``[class_id, class, accuracy, support]`` (accuracy None where a class has no clips).

    Taken from a ``tasks.metrics.summarize`` summary (``per_class_acc``, ``support``) when there
    is one, else computed from the confusion matrix (rows = true class).
    """
    if summary and summary.get("per_class_acc"):
        acc = summary["per_class_acc"]
        support = summary.get("support") or {}
        return [
            [i, name, _finite_or_none(a), int(support.get(name, 0))]
            for i, (name, a) in enumerate(acc.items())
        ]
    if confusion is None:
        return []
    cm = confusion.double().cpu()
    support = cm.sum(dim=1)
    recall = torch.where(support > 0, cm.diag() / support.clamp_min(1), torch.nan)
    names = list(class_names) if class_names else [str(i) for i in range(len(recall))]
    return [
        [i, names[i], _finite_or_none(r), int(s)]
        for i, (r, s) in enumerate(zip(recall.tolist(), support.tolist(), strict=True))
    ]


def confusion_chart(confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str):
    """A W&B confusion-matrix chart (``wandb/confusion_matrix/v1``) from a (K, K) count matrix
    (rows = true class, columns = predicted), the same chart as ``wandb.plot.confusion_matrix``."""
    import wandb

    data = [
        [class_names[i], class_names[j], int(n)]
        for i, row in enumerate(confusion)
        for j, n in enumerate(row)
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
    return wandb.plot_table(
        "wandb/confusion_matrix/v1",
        table,
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": title},
    )


class WandbReports(Callback):
    """Per-class accuracy and confusion matrix to W&B after every evaluation; best checkpoint as
    an artifact.

    At the end of each validation (the sanity check excepted; including the final
    ``trainer.validate`` of the best checkpoint) and each test, rank 0 logs
    ``<split>/per_class`` (a table of class id, name, accuracy, support) and
    ``<split>/confusion_matrix`` (a W&B confusion-matrix chart, rows = true class) to every
    :class:`WandbLogger` of the trainer, at ``trainer/global_step``. What was logged is also kept in
    :attr:`records` (plain Python, for tests and scripts).

    Per-class accuracy and support come from ``pl_module.last_summaries[split]`` (see
    ``tasks.metrics.summarize``), so they match ``metrics.json``. The confusion matrix is
    ``last_summaries[split]["confusion_matrix"]`` when the summary has one; otherwise the callback
    counts it itself from the module's forward outputs (logits (N, K)) and ``batch["label"]``,
    summed over DDP ranks.

    Args:
        per_class: log the per-class table.
        confusion_matrix: log the confusion matrix.
        splits: which evaluations to report (``val``, ``test``).
        log_best_checkpoint: at the end of fit, log the best checkpoint of
            ``trainer.checkpoint_callback`` as a ``model`` artifact (aliases ``best``, ``latest``;
            offline runs keep it for ``wandb sync``). Skipped for a logger whose own ``log_model``
            is set (Lightning then logs the checkpoints itself).
        artifact_name: artifact name; default ``model-<run id>`` (as Lightning names them).
    """

    def __init__(
        self,
        per_class: bool = True,
        confusion_matrix: bool = True,
        splits: Sequence[str] = ("val", "test"),
        log_best_checkpoint: bool = False,
        artifact_name: str | None = None,
    ) -> None:
        self.per_class = per_class
        self.confusion_matrix = confusion_matrix
        self.splits = tuple(splits)
        self.log_best_checkpoint = log_best_checkpoint
        self.artifact_name = artifact_name
        #: one dict per report: split, epoch, global_step, per_class rows, confusion_matrix
        self.records: list[dict[str, Any]] = []
        #: artifacts logged: name, path, aliases, score
        self.artifacts: list[dict[str, Any]] = []
        self._warned = False

    # -- reports -------------------------------------------------------------------------------
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    def _report(self, trainer: Trainer, pl_module: LightningModule, split: str) -> None:
        if split not in self.splits or not trainer.is_global_zero:
            return
        summaries = getattr(pl_module, "last_summaries", None) or {}
        summary = summaries.get(split) or {}
        # summarize() carries the confusion matrix, already synchronised over DDP ranks
        cm = summary.get("confusion_matrix")
        confusion = torch.as_tensor(cm, dtype=torch.long) if cm is not None else None
        names = getattr(pl_module, "class_names", None)
        rows = per_class_rows(summary, confusion, names)
        names = [r[1] for r in rows] or (
            [str(i) for i in range(len(confusion))] if confusion is not None else []
        )
        record = {
            "split": split,
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "per_class": rows,
            "confusion_matrix": confusion.tolist() if confusion is not None else None,
        }
        self.records.append(record)

        loggers = wandb_loggers(trainer.loggers)
        if not loggers:
            if not self._warned:
                log.warning("WandbReports: the trainer has no WandbLogger (use logger=wandb)")
                self._warned = True
            return
        import wandb

        payload: dict[str, Any] = {}
        if self.per_class and rows:
            payload[f"{split}/per_class"] = wandb.Table(
                columns=["class_id", "class", "accuracy", "support"], data=rows
            )
        if self.confusion_matrix and confusion is not None and len(names) == len(confusion):
            title = f"{split} confusion matrix (epoch {trainer.current_epoch})"
            payload[f"{split}/confusion_matrix"] = confusion_chart(
                record["confusion_matrix"], names, title
            )
        if payload:
            for lg in loggers:
                lg.log_metrics(payload, step=trainer.global_step)

    # -- checkpoint artifact -------------------------------------------------------------------
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.log_best_checkpoint or not trainer.is_global_zero:
            return
        ckpt_cb = trainer.checkpoint_callback
        path = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
        if not path or not os.path.isfile(path):
            log.warning("WandbReports: no best checkpoint to log as an artifact")
            return
        import wandb

        score = getattr(ckpt_cb, "best_model_score", None)
        score = float(score) if score is not None else None
        for lg in wandb_loggers(trainer.loggers):
            if getattr(lg, "_log_model", False):
                continue  # Lightning logs the checkpoints of this logger itself
            run = lg.experiment
            name = self.artifact_name or f"model-{run.id}"
            metadata = {
                "score": score,
                "monitor": getattr(ckpt_cb, "monitor", None),
                "original_filename": Path(path).name,
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
            }
            artifact = wandb.Artifact(name=name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt")
            aliases = ["best", "latest"]
            run.log_artifact(artifact, aliases=aliases)
            self.artifacts.append({"name": name, "path": path, "aliases": aliases, "score": score})
