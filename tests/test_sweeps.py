"""Sweeps and launchers: a basic multirun and an Optuna search through the console entry point
(subprocesses on the tiny synthetic release), and the Optuna / SLURM launcher configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from migalab.utils.hydra import register_resolvers
from migalab.utils.paths import config_dir
from tests.conftest import tiny_data_overrides

OPTUNA_PARAMS = (
    "model.optimizer.lr",
    "model.optimizer.weight_decay",
    "model.loss.label_smoothing",
    "model.encoder.dropout",
)


def _compose_with_hydra(overrides: Sequence[str]) -> DictConfig:
    """``train`` composed with its ``hydra`` node (sweeper, launcher), as the CLI sees it."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _train_cli(
    args: Sequence[str], release: Path, cache: Path, log_dir: Path, debug: bool = True
) -> None:
    cmd = [
        sys.executable, "-m", "migalab.train", *args, f"paths.log_dir={log_dir}",
        *(["debug=fdr"] if debug else []), *tiny_data_overrides(release, cache),
    ]  # fmt: skip
    home = log_dir / "wandb_home"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **{
            v: str(home / v.lower())
            for v in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")
        },
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _job_dirs(log_dir: Path, task: str = "debug") -> list[Path]:
    (sweep_dir,) = (log_dir / task / "multiruns").iterdir()
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


@pytest.mark.slow  # two training processes (~20 s); test_optuna_sweep runs a multirun by name in the fast suite
def test_basic_multirun_one_run_dir_per_job(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """Two jobs, each with its own run dir, metrics.json and W&B (offline) run."""
    args = [
        "-m", "model.optimizer.lr=0.05,0.1", "logger=wandb", "trainer.max_epochs=1",
        "++trainer.limit_train_batches=1", "++trainer.limit_val_batches=1",
        "++trainer.limit_test_batches=1", "callbacks.progress_bar.refresh_rate=0",
        "model.encoder.base_channels=8",
    ]  # fmt: skip
    _train_cli(args, tiny_release, tiny_cache, tmp_path, debug=False)
    jobs = _job_dirs(tmp_path, "train")
    assert [p.name for p in jobs] == ["0", "1"]
    run_ids = set()
    for job, lr in zip(jobs, ("0.05", "0.1"), strict=True):
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["run_dir"] == str(job)
        assert 0.0 <= metrics["val"]["top1"] <= 1.0
        assert f"model.optimizer.lr={lr}" in (job / ".hydra" / "overrides.yaml").read_text()
        (wandb_run,) = (job / "wandb").glob("offline-run-*")  # its own W&B run, in its dir
        run_ids.add(wandb_run.name.rsplit("-", 1)[-1])
    assert len(run_ids) == 2
    assert (jobs[0].parent / "multirun.yaml").is_file()


def test_optuna_sweep(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    args = [
        "hparams_search=agcn_optuna", "hydra.sweeper.n_trials=3",
        "model.encoder.base_channels=8", "trainer.detect_anomaly=false",
    ]  # fmt: skip
    _train_cli(args, tiny_release, tiny_cache, tmp_path)
    jobs = _job_dirs(tmp_path)
    assert [p.name for p in jobs] == ["0", "1", "2"]
    top1 = [json.loads((job / "metrics.json").read_text())["val"]["top1"] for job in jobs]
    results = OmegaConf.load(jobs[0].parent / "optimization_results.yaml")
    assert set(results.best_params) == set(OPTUNA_PARAMS)
    assert results.best_value == pytest.approx(max(top1))
    assert 0.005 <= results.best_params["model.optimizer.lr"] <= 0.2


def test_optuna_search_config() -> None:
    cfg = _compose_with_hydra(["hparams_search=agcn_optuna"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert (sweeper.direction, sweeper.n_trials, cfg.optimized_metric) == (
        "maximize",
        20,
        "val/top1",
    )
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.sampler.seed is not None
    assert set(sweeper.params) == set(OPTUNA_PARAMS)
    for key in OPTUNA_PARAMS:  # every searched key exists in the config
        assert OmegaConf.select(cfg, key) is not None, key
    assert sweeper.study_name == "agcn_joint_synth"  # the experiment searched
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"


def test_slurm_launcher_config() -> None:
    cfg = _compose_with_hydra(
        ["hydra/launcher=slurm", "trainer=ddp", "hydra.launcher.gpus_per_node=4",
         "hydra.launcher.nodes=2", "hydra.launcher.partition=gpu"]
    )  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 4  # one task per GPU
    assert (launcher.nodes, launcher.partition) == (2, "gpu")
    assert launcher.timeout_min > 0 and launcher.cpus_per_task > 0 and launcher.mem_gb > 0
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout >= 0
    assert launcher.additional_parameters.requeue is True  # sbatch --requeue
    assert launcher.name == "train"
    assert cfg.trainer.strategy == "ddp"
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "slurm"
    # requeued jobs (submitit's checkpoint protocol) run the same command: it must resume
    assert launcher.max_num_timeout > 0
    for overrides, expected in ((["hydra/launcher=slurm"], "auto"), ([], None),
                                (["hydra/launcher=slurm", "ckpt_path=null"], None)):  # fmt: skip
        cfg = _compose_with_hydra(overrides)
        HydraConfig.instance().set_config(cfg)  # as in a job: ${ckpt_path_default:} reads it
        assert cfg.ckpt_path == expected, overrides
    # with the Optuna sweeper too
    cfg = _compose_with_hydra(["hparams_search=agcn_optuna", "hydra/launcher=slurm"])
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")


def test_slurm_sbatch_script() -> None:
    script = (config_dir().parent / "scripts" / "slurm" / "train.sbatch").read_text()
    for needle in ("--ntasks-per-node", "--signal=SIGUSR1@90", "srun python -m migalab.train",
                   "trainer=ddp", "trainer.devices=", "trainer.num_nodes="):  # fmt: skip
        assert needle in script, needle
    proc = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
