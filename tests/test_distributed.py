"""DDP on CPU (trainer=ddp_sim: 2 processes, gloo): the Hydra command relaunches for rank 1,
only rank 0 writes, evaluation sees every clip exactly once (no padding duplicates) and gives
the metrics of a 1-process evaluation; the distributed samplers the datamodule builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import DistributedSampler

import migalab
from migalab.data.datamodule import ClipDataModule
from migalab.eval import evaluate
from migalab.utils.hydra import compose_config
from tests.conftest import TINY_SYNTH, tiny_data_overrides, tiny_eval_overrides

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("top1", "top5", "macro_f1", "mean_class_acc", "num_samples", "support")


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # the child (and the rank-1 process Lightning starts from it) imports this migalab
    src = str(Path(migalab.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(ROOT)])}
    cmd = [sys.executable, "-m", "migalab.train", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd, env=env)


def _ddp_overrides(release: Path, cache: Path, log_dir: Path) -> list[str]:
    return [
        "trainer=ddp_sim", "logger=csv", *tiny_data_overrides(release, cache),
        # 13 val / 15 test clips over 2 ranks in batches of 3: uneven per-rank counts and batches
        "data.eval_batch_size=3", "model.encoder.base_channels=8",
        "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null",
        f"paths.log_dir={log_dir}",
    ]  # fmt: skip


def _assert_same_metrics(ddp: dict, single: dict, split: str) -> None:
    for key in KEYS:
        assert ddp[split][key] == pytest.approx(single[split][key], abs=1e-6), (split, key)
    assert ddp[split]["per_class_acc"] == pytest.approx(
        single[split]["per_class_acc"], abs=1e-6, nan_ok=True
    )


def test_ddp_sim_trains_and_evaluates_every_clip_once(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    args = [
        *_ddp_overrides(tiny_release, tiny_cache, tmp_path / "logs"),
        "trainer.max_epochs=2",
        "model.lr_scaling.base_batch_size=8",  # per-device 8 x 2 processes: lr x 2
    ]
    proc = _cli(args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "global batch 16" in out and "effective lr 0.2" in out
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1  # rank 1 ran in rank 0's run dir (Lightning passes hydra.run.dir)
    run = runs[0]
    ddp = json.loads((run / "metrics.json").read_text())
    assert (run / "config_resolved.yaml").is_file()
    assert ddp["epochs"] == 2

    # DDP evaluation (after fit, on 2 ranks) of the best checkpoint == 1-process evaluation
    cfg = compose_config("eval", [f"ckpt_path={ddp['ckpt_path']}",
                                  *tiny_eval_overrides(tiny_release, tiny_cache)],
                         output_dir=tmp_path / "ev")  # fmt: skip
    single = evaluate(cfg)
    dm = ClipDataModule(str(tiny_release), str(tiny_cache), synthetic=TINY_SYNTH)
    dm.setup()
    for split in ("val", "test"):
        assert ddp[split]["num_samples"] == len(dm.datasets[split])  # none dropped or repeated
        _assert_same_metrics(ddp, single, split)


@pytest.mark.slow
def test_ddp_sim_evaluation_only_matches_one_process(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """``train=false ckpt_path=<ckpt>`` on 2 processes vs 1 process (same entry point)."""
    base = _ddp_overrides(tiny_release, tiny_cache, tmp_path / "train")
    proc = _cli([*base, "trainer=cpu", "trainer.max_epochs=2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "train" / "train" / "runs").iterdir()
    ckpt = json.loads((run / "metrics.json").read_text())["ckpt_path"]
    results = {}
    for trainer in ("ddp_sim", "cpu"):
        logs = tmp_path / trainer
        args = [*base, f"trainer={trainer}", "train=false", f"ckpt_path={ckpt}",
                f"paths.log_dir={logs}"]  # fmt: skip
        proc = _cli(args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (run,) = (logs / "train" / "runs").iterdir()
        results[trainer] = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        _assert_same_metrics(results["ddp_sim"], results["cpu"], split)


def _fake_trainer(rank: int, world: int = 2, epoch: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=world, global_rank=rank, current_epoch=epoch, training=False,
        distributed_sampler_kwargs={"num_replicas": world, "rank": rank},
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=True),
    )  # fmt: skip


@pytest.mark.parametrize("sampler", ["random", "class_balanced"])
def test_datamodule_builds_distributed_samplers(
    tiny_release: Path, tiny_cache: Path, sampler: str
) -> None:
    def dm_for(rank: int) -> ClipDataModule:
        dm = ClipDataModule(str(tiny_release), str(tiny_cache), synthetic=TINY_SYNTH,
                                batch_size=4, eval_batch_size=3, sampler=sampler, seed=5)  # fmt: skip
        dm.setup()
        dm.trainer = _fake_trainer(rank)  # type: ignore[assignment]
        return dm

    dms = [dm_for(0), dm_for(1)]
    for split, getter in (("val", "val_dataloader"), ("test", "test_dataloader"),
                          ("test", "predict_dataloader")):  # fmt: skip
        loaders = [getattr(dm, getter)() for dm in dms]
        # Lightning leaves DistributedSamplers alone (no re-wrapping with padding)
        assert all(isinstance(dl.sampler, DistributedSampler) for dl in loaders)
        seen = [int(i) for dl in loaders for b in dl for i in b["index"]]
        assert sorted(seen) == list(range(len(dms[0].datasets[split])))  # each clip once

    train = [dm.train_dataloader() for dm in dms]
    assert all(isinstance(dl.sampler, DistributedSampler) for dl in train)
    assert len(train[0]) == len(train[1])  # equal steps on every rank (DDP needs it)
    shards = [list(dl.sampler) for dl in train]
    assert len(shards[0]) == len(shards[1]) == -(-len(dms[0].datasets["train"]) // 2)
    if sampler == "random":  # a permutation split over the ranks (padded by at most one)
        assert set(shards[0]) | set(shards[1]) == set(range(len(dms[0].datasets["train"])))
    # the order is a function of (seed, epoch): a rebuilt module at epoch 1 gives epoch 1's order
    train[0].sampler.set_epoch(1)
    other = dm_for(0)
    other.trainer = _fake_trainer(0, epoch=1)  # type: ignore[assignment]
    assert list(other.train_dataloader().sampler) == list(train[0].sampler)


def test_single_process_loaders_and_options(tiny_release: Path, tiny_cache: Path) -> None:
    dm = ClipDataModule(str(tiny_release), str(tiny_cache), synthetic=TINY_SYNTH,
                            num_workers=1, prefetch_factor=3, prepare_per_node=False)  # fmt: skip
    assert dm.prepare_data_per_node is False  # Lightning: prepare on global rank 0 only
    dm.setup()
    assert dm.val_dataloader().prefetch_factor == 3
    assert not isinstance(dm.val_dataloader().sampler, DistributedSampler)
    dm0 = ClipDataModule(str(tiny_release), str(tiny_cache), synthetic=TINY_SYNTH,
                             prefetch_factor=3)  # fmt: skip
    dm0.setup()
    assert dm0.val_dataloader().prefetch_factor is None  # not passed without workers
    assert dm0.prepare_data_per_node is True
    batch = next(iter(dm0.train_dataloader()))
    assert batch["x"].dtype == torch.float32


def test_ddp_configs_compose(tmp_path: Path) -> None:
    cfg = compose_config("train", ["trainer=ddp_multinode"], output_dir=tmp_path)
    assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.trainer.sync_batchnorm) == (
        "ddp", 2, True)  # fmt: skip
    cfg = compose_config("train", ["trainer=slurm"], output_dir=tmp_path)
    (plugin,) = cfg.trainer.plugins
    assert plugin._target_.endswith("SLURMEnvironment") and plugin.auto_requeue
    assert cfg.ckpt_path == "auto"  # a requeued job resumes with the same command
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 1
    assert compose_config("train", ["trainer=slurm", "ckpt_path=null"]).ckpt_path is None
    cfg = compose_config("train", ["trainer=ddp_sim"], output_dir=tmp_path)
    assert not cfg.trainer.sync_batchnorm  # SyncBatchNorm is GPU-only


@pytest.mark.slow  # three 2-process training runs (~45 s)
def test_ddp_sim_requeued_command_matches_uninterrupted_run(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """The requeue test of ``tests/test_resume.py`` on 2 processes: SIGTERM on both ranks in the
    middle of epoch 1, the same command again, and the run ends as an uninterrupted one."""
    from tests.test_resume import _assert_same_run, _requeue_run

    base = [*_ddp_overrides(tiny_release, tiny_cache, tmp_path / "logs"), "trainer.max_epochs=3",
            "data.batch_size=4", "test=false", "ckpt_path=auto"]  # fmt: skip
    # 14 training clips per rank in batches of 4: 3 steps per epoch, step 4 is mid-epoch 1
    kill = ["+callbacks.kill._target_=tests.test_resume.SigtermAtStep", "+callbacks.kill.step=4"]
    procs = _requeue_run([*base, *kill], tmp_path / "run", tmp_path)
    assert [p.returncode for p in procs] == [143, 0], procs[-1].stderr[-4000:]
    assert "resuming from" in procs[1].stdout + procs[1].stderr
    (straight,) = _requeue_run(base, tmp_path / "straight", tmp_path)
    assert straight.returncode == 0, straight.stderr[-4000:]
    _assert_same_run(tmp_path / "run", tmp_path / "straight")


def test_slurm_trainer_run_dir_is_fixed_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """A requeued SLURM job keeps its SLURM_JOB_ID: its run dir (checkpoints) must not move."""
    from hydra import compose, initialize_config_module

    from migalab.utils.hydra import register_resolvers
    from migalab.utils.paths import CONFIG_MODULE

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    register_resolvers()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose("train", ["trainer=slurm"], return_hydra_config=True)
    run_dir = cfg.hydra.run.dir
    assert run_dir.endswith("/train/slurm/4242") and "${now" not in run_dir


@pytest.mark.slow  # a 1-process MViT-xs emotion fit + a 2-process evaluation (~1 min)
def test_ddp_sim_emotion_evaluation_pools_videos_across_ranks(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    """Emotion ``train=false ckpt_path=<ckpt>`` on 2 processes: the clips of a video, split over
    the ranks (eval batches of 2), are pooled whole; metrics and video_predictions.csv equal a
    1-process evaluation."""
    from tests.conftest import tiny_video_overrides

    base = [
        "experiment=emotion_context_synth", "logger=csv", "trainer.precision=32-true",
        *tiny_video_overrides(tiny_video_release, tiny_video_cache), "data.eval_batch_size=2",
        "callbacks.progress_bar.refresh_rate=0", "callbacks.model_summary=null",
    ]  # fmt: skip
    train_logs = tmp_path / "train"
    proc = _cli([*base, "trainer=cpu", "trainer.max_epochs=1", f"paths.log_dir={train_logs}"],
                cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (train_logs / "train" / "runs").iterdir()
    ckpt = json.loads((run / "metrics.json").read_text())["ckpt_path"]
    results, csvs = {}, {}
    for trainer in ("ddp_sim", "cpu"):
        logs = tmp_path / trainer
        args = [*base, f"trainer={trainer}", "train=false", f"ckpt_path={ckpt}",
                f"paths.log_dir={logs}"]  # fmt: skip
        proc = _cli(args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (run,) = (logs / "train" / "runs").iterdir()
        results[trainer] = json.loads((run / "metrics.json").read_text())
        csvs[trainer] = (run / "video_predictions.csv").read_text().splitlines()
    for split in ("val", "test"):
        for key in ("acc", "clip_acc", "num_videos", "num_clips"):
            assert results["ddp_sim"][split][key] == pytest.approx(results["cpu"][split][key])
    assert len(csvs["cpu"]) > 1
    ddp_rows = [r.split(",") for r in csvs["ddp_sim"]]
    cpu_rows = [r.split(",") for r in csvs["cpu"]]
    assert [r[:2] + r[3:] for r in ddp_rows] == [r[:2] + r[3:] for r in cpu_rows]
    for a, b in zip(ddp_rows[1:], cpu_rows[1:], strict=True):
        assert float(a[2]) == pytest.approx(float(b[2]), abs=1e-5)
