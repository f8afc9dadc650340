"""Callbacks the entry points always add (not optional config), and checkpointing helpers."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from migalab.utils.checkpoints import load_checkpoint

log = logging.getLogger(__name__)

CONFIG_KEY = "migalab_config"
RNG_KEY = "migalab_rng_states"


class StoreConfigInCheckpoint(Callback):
    """Put the resolved run config into every checkpoint, so ``migalab-eval`` can rebuild the
    exact model and data pipeline from the checkpoint alone."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config


# -- RNG states ---------------------------------------------------------------------------------
def collect_rng_states() -> dict[str, Any]:
    """This process' torch (CPU, CUDA), numpy and python global RNG states, as tensors and plain
    Python values (a checkpoint holding them loads with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    version, state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "torch.cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": int(version), "state": list(state), "gauss": py_gauss},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states` (CUDA states only when the device count matches)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("torch.cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    npst = states["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["name"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))  # noqa: NPY002
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


class RNGStateCheckpoint(Callback):
    """Store the global RNG states of every rank in each checkpoint and restore them on resume.

    Under DDP the states of all ranks are gathered (``save_checkpoint`` is collective anyway) and
    each rank restores its own; a checkpoint from a different world size restores rank 0's state
    on rank 0 and leaves the other ranks as seeded. The training loader also re-seeds from
    (seed, epoch, rank) at every epoch start, so these states matter for mid-epoch resumes.
    """

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = collect_rng_states()
        gathered = [states]
        if (
            trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, states)
        checkpoint[RNG_KEY] = {"world_size": len(gathered), "states": gathered}

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get(RNG_KEY)
        if not saved:
            return
        rank = trainer.global_rank
        if saved["world_size"] != trainer.world_size:
            rank_zero_warn(
                f"checkpoint RNG states are from {saved['world_size']} process(es), this run has "
                f"{trainer.world_size}: only rank 0's RNG state is restored"
            )
            if rank != 0:
                return
        set_rng_states(saved["states"][rank])


# -- interruption -------------------------------------------------------------------------------
class CollectiveFreeSigterm(Callback):
    """Under DDP, handle SIGTERM without collective calls inside the signal handler.

    Lightning's SIGTERM handler broadcasts from rank 0 *inside the handler*, wherever the process
    happens to be: a rank that gets the signal twice (SLURM signals every task, and Lightning's
    subprocess launcher forwards rank 0's signal to the other ranks) or while another collective
    is in flight leaves the ranks' collectives out of step, and the job hangs instead of saving
    ``interrupted.ckpt``. Lightning already shares rank 0's flag at every training step (a
    broadcast at a fixed point of the loop), so the handler only needs to set the flag: this
    callback installs such a handler when training starts (Lightning restores the original
    handlers at teardown). Handlers registered before the fit (e.g. submitit's) still run.
    Nothing changes for a single process.
    """

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        import signal
        import threading

        connector = getattr(trainer, "_signal_connector", None)  # private: checked, not assumed
        if (
            trainer.world_size <= 1
            or connector is None
            or not hasattr(connector, "received_sigterm")
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        previous = getattr(connector, "_original_handlers", {}).get(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            if not connector.received_sigterm:
                log.info(
                    "[rank %d] received SIGTERM: stopping after this batch", trainer.global_rank
                )
            connector.received_sigterm = True
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)


class InterruptCheckpoint(Callback):
    """Save ``<dirpath>/<filename>.ckpt`` when fitting is interrupted (SIGTERM, e.g. SLURM
    preemption, which Lightning turns into a graceful stop after the current batch; or Ctrl-C),
    so ``ckpt_path=last`` resumes from there. ``save_on_error`` also saves on any other exception
    raised during training. The file is removed when a later fit of the run completes.

    Unlike Lightning's ``OnExceptionCheckpoint`` this does not make ``trainer.fit(ckpt_path=None)``
    resume silently from the run dir's last checkpoint: resuming is always explicit.
    """

    def __init__(self, dirpath: str, filename: str = "interrupted", save_on_error: bool = False):
        self.dirpath = str(dirpath)
        self.filename = filename
        self.save_on_error = save_on_error

    @property
    def ckpt_path(self) -> str:
        return str(Path(self.dirpath) / f"{self.filename}.ckpt")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException):
        interrupt = isinstance(exception, SIGTERMException | KeyboardInterrupt)
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not fitting or not (interrupt or self.save_on_error):
            return
        trainer.save_checkpoint(self.ckpt_path)
        rank_zero_info(
            f"{type(exception).__name__}: saved {self.ckpt_path} (epoch {trainer.current_epoch}, "
            f"step {trainer.global_step}); resume with ckpt_path=last in the same run dir"
        )

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            Path(self.ckpt_path).unlink(missing_ok=True)


def resume_candidates(trainer: Trainer) -> tuple[list[Path], list[str]]:
    """Checkpoints a run can resume from, newest first, and the places searched.

    The run's ``last*.ckpt`` (ModelCheckpoint), its interrupt checkpoints and SLURM requeue
    checkpoints (``<default_root_dir>/hpc_ckpt_<n>.ckpt``).
    """
    from lightning.pytorch.callbacks import ModelCheckpoint

    candidates: set[Path] = set()
    searched: list[str] = []
    for cb in trainer.callbacks:
        if isinstance(cb, InterruptCheckpoint):
            candidates.add(Path(cb.ckpt_path))
            searched.append(cb.ckpt_path)
        elif isinstance(cb, ModelCheckpoint) and cb.dirpath:
            folder = Path(cb.dirpath)
            candidates |= set(folder.glob(f"{cb.CHECKPOINT_NAME_LAST}*{cb.FILE_EXTENSION}"))
            searched.append(str(folder / f"{cb.CHECKPOINT_NAME_LAST}*{cb.FILE_EXTENSION}"))
    if trainer.default_root_dir:  # SLURM auto-requeue checkpoints (trainer=slurm)
        candidates |= set(Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt"))
        searched.append(str(Path(trainer.default_root_dir) / "hpc_ckpt_*.ckpt"))
    existing = [p for p in candidates if p.is_file()]
    return sorted(existing, key=lambda p: p.stat().st_mtime_ns, reverse=True), searched


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (None: it can). Reads only its metadata (mmap)."""
    try:
        ckpt = load_checkpoint(path, mmap=True)
    except Exception as err:  # noqa: BLE001 - any read failure makes it unusable
        return str(err)
    missing = [k for k in ("state_dict", "loops", "global_step") if k not in ckpt]
    return f"not a full training checkpoint (no {', '.join(missing)})" if missing else None


def find_resume_checkpoint(trainer: Trainer, required: bool = True) -> str | None:
    """The newest readable checkpoint of this run (:func:`resume_candidates`).

    A newer file that cannot be read (e.g. cut short by ``kill -9`` while being written) is
    skipped with a warning and the next one is taken. With nothing usable: FileNotFoundError
    naming the places searched when ``required`` (``ckpt_path=last``), else None
    (``ckpt_path=auto``: start fresh).
    """
    candidates, searched = resume_candidates(trainer)
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return str(path)
        rank_zero_warn(f"cannot resume from {path}: {problem}; trying an older checkpoint")
    if not required:
        return None
    raise FileNotFoundError(
        "ckpt_path=last: no checkpoint to resume from (looked for "
        + (", ".join(searched) or "nothing: no ModelCheckpoint with a dirpath configured")
        + "). To resume a run, point Hydra at its run dir: "
        "migalab-train hydra.run.dir=<old run dir> ckpt_path=last (with the run's overrides); "
        "ckpt_path=auto resumes when there is a checkpoint and starts fresh otherwise"
    )
