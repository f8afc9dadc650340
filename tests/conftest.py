"""Shared fixtures: a tiny synthetic iMiGUE release and its cache (built once per session), and
Hydra overrides for tests (compose configs with migalab.utils.hydra.compose_config)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# Under pytest-xdist (`make test`), the cores are shared by the workers: each worker, and the
# console scripts its tests start, gets its share of threads instead of one per core.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    _threads = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    os.environ.setdefault("MKL_NUM_THREADS", _threads)

#: A release small enough for seconds-long tests, with every split present.
TINY_SYNTH = {
    "seed": 0,
    "num_videos": {"train": 4, "validate": 2, "test": 2},
    "clips_per_video": [6, 8],
    "table_format": "csv",
    "workers": 1,
}


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic MiGA 2025 release (csv tables) shared by the session's tests."""
    from migalab.synthetic import SynthConfig, generate_release

    root = tmp_path_factory.mktemp("synth") / "release"
    generate_release(root, SynthConfig(**TINY_SYNTH), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_cache(tiny_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared skeleton cache of :func:`tiny_release`."""
    from migalab.data.prepare import prepare_release

    out = tmp_path_factory.mktemp("cache") / "cache"
    prepare_release(tiny_release, out, progress=False)
    return out


def tiny_data_overrides(release: Path, cache: Path) -> list[str]:
    """Overrides pointing the data config at the tiny release/cache, loaders in-process."""
    return [
        f"data.release_root={release}",
        f"data.cache_dir={cache}",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "+data.synthetic.clips_per_video=[6,8]",
        "data.synthetic.num_videos={train:4,validate:2,test:2}",
        "data.synthetic.workers=1",
        # run reports cost ~2.5 s of plotting per run; tests/test_reports.py covers them
        "report=false",
    ]


def tiny_eval_overrides(release: Path, cache: Path) -> list[str]:
    """What migalab-eval / -predict / -pseudolabel need to score a checkpoint trained on the
    tiny release: its folders (never taken from the checkpoint) and no run report."""
    return [f"data.release_root={release}", f"data.cache_dir={cache}", "report=false"]


#: A release with rendered videos (<vid>.mp4, 320x180), small enough for seconds-long tests.
TINY_VIDEO_SYNTH = {
    "seed": 0,
    "num_videos": {"train": 3, "validate": 1, "test": 1},
    "clips_per_video": [4, 5],
    "table_format": "csv",
    "workers": 1,
    "video": True,
    "video_scale": 0.25,
}


@pytest.fixture(scope="session")
def tiny_video_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic release with mp4 videos, shared by the session's tests."""
    from migalab.synthetic import SynthConfig, generate_release

    root = tmp_path_factory.mktemp("synth_video") / "release"
    generate_release(root, SynthConfig(**TINY_VIDEO_SYNTH), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_video_cache(tiny_video_release: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The skeleton cache of :func:`tiny_video_release` (prepared video clips are written
    into it by the datamodules that use it)."""
    from migalab.data.prepare import prepare_release

    out = tmp_path_factory.mktemp("video_cache") / "cache"
    prepare_release(tiny_video_release, out, progress=False)
    return out


def tiny_video_overrides(release: Path, cache: Path) -> list[str]:
    """data=synthetic_video on the tiny video release: 8 skeleton / 4 RGB frames at 32 px."""
    return [
        "data=synthetic_video",
        f"data.release_root={release}",
        f"data.cache_dir={cache}",
        "data.num_workers=0",
        "data.persistent_workers=false",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "++data.synthetic.clips_per_video=[4,5]",
        "data.synthetic.num_videos={train:3,validate:1,test:1}",
        "data.synthetic.workers=1",
        "data.num_frames=8",
        "data.video.num_frames=4",
        "data.video.size=32",
        "data.video.prepared_size=40",
        "data.video.prepare_workers=1",
    ]


@pytest.fixture(scope="session")
def cli_run(
    tiny_release: Path, tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """``migalab-train`` by name from an empty directory: 1 short epoch on the tiny release.
    Returns the working directory and the best checkpoint."""
    from tests.test_console_scripts import _ok, run_script

    cwd = tmp_path_factory.mktemp("cli")
    proc = run_script(
        ["migalab-train", "logger=csv", f"paths.log_dir={cwd / 'logs'}",
         *tiny_data_overrides(tiny_release, tiny_cache), "model.encoder.base_channels=8",
         "trainer.max_epochs=1", "callbacks.progress_bar.refresh_rate=0"],
        cwd=cwd,
    )  # fmt: skip
    out = _ok(proc)
    (metrics,) = (cwd / "logs").glob("train/runs/*/metrics.json")
    payload = json.loads(metrics.read_text())
    # the summary says where (Rich may wrap a long path anywhere: compare without whitespace)
    assert f"rundir:{metrics.parent}" in "".join(out.split())
    return cwd, Path(payload["ckpt_path"])


@pytest.fixture(scope="session")
def emotion_run(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """One epoch of system_b_emotion_synth (InterFusion over face and person crops, CPU sizes)
    on the tiny video release, in-process; its run dir and best checkpoint."""
    from migalab.train import train
    from migalab.utils.hydra import compose_config

    out = tmp_path_factory.mktemp("emotion_run")
    overrides = [
        "experiment=system_b_emotion_synth", "trainer=cpu", "trainer.precision=32-true",
        "logger=csv", *tiny_video_overrides(tiny_video_release, tiny_video_cache),
        "data.face.num_frames=2", "model.neck.dim=32", "trainer.max_epochs=1",
        "callbacks.progress_bar.refresh_rate=0", "report=false",
    ]  # fmt: skip
    payload, _ = train(compose_config("train", overrides, output_dir=out))
    return out, Path(payload["ckpt_path"])
