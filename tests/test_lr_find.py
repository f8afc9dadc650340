"""``migalab-train ... lr_find=true``: Lightning's lr range test on a recipe instead of training
(:mod:`migalab.lr_find`), run by name as a user runs it and in-process on the emotion task."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from migalab.lr_find import DEFAULT_SETTINGS, LrFindError, lr_find_settings, suggest_lr
from migalab.train import train
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides, tiny_video_overrides
from tests.test_console_scripts import _ok, run_script

#: a short sweep (the suggestion needs >= 13 steps)
SWEEP = ["lr_find=true", "lr_find_settings.num_training=15"]
#: the default gesture recipe at a seconds-long size (AGCN width 8, 8 frames, batches of 4)
TINY_GESTURE = ["model.encoder.base_channels=8", "data.num_frames=8", "data.batch_size=4"]
#: one thread each: on a shared 2-core machine torch's thread pools otherwise wait on each other
#: (a 15-step sweep takes ~30 s instead of ~7 s under load)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_result(run_dir: Path, num_training: int) -> dict:
    """The files of a sweep: a PNG and a JSON with a usable suggestion and a non-flat curve."""
    assert (run_dir / "lr_find.png").read_bytes()[:8] == PNG_MAGIC
    result = json.loads((run_dir / "lr_find.json").read_text())
    s = result["settings"]
    assert s["num_training"] == num_training and s["min_lr"] == DEFAULT_SETTINGS["min_lr"]
    lr = result["suggested_lr"]
    assert math.isfinite(lr) and s["min_lr"] <= lr <= s["max_lr"]
    assert result["ratio"] == pytest.approx(lr / result["effective_lr"])
    assert len(result["lrs"]) == len(result["losses"]) == result["steps"] <= num_training
    assert result["lrs"] == sorted(result["lrs"]) and result["lrs"][0] == s["min_lr"]
    losses = [x for x in result["losses"] if x is not None]
    assert len(set(losses)) > 1, "the loss did not change along the sweep"
    assert not (run_dir / "checkpoints").exists()
    assert not list(run_dir.rglob("*.ckpt")), "a checkpoint was left behind"
    assert not list(run_dir.glob(".lr_find*")) and not list(run_dir.glob(".*.tmp"))
    return result


@pytest.mark.slow  # ~13 s by name; the same sweep in-process: test_lr_find_pretrain and the refusals
def test_lr_find_by_name(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    """One override turns ``migalab-train`` into the lr sweep: plot and JSON in the run dir, one
    line naming the suggestion, nothing else written (no checkpoints, loggers' folders)."""
    run_dir = tmp_path / "run"
    proc = run_script(
        ["migalab-train", *SWEEP, f"hydra.run.dir={run_dir}", f"paths.log_dir={tmp_path / 'logs'}",
         *tiny_data_overrides(tiny_release, tiny_cache), *TINY_GESTURE],
        cwd=tmp_path, env=ONE_THREAD,
    )  # fmt: skip
    out = _ok(proc)
    result = _check_result(run_dir, 15)
    assert result["recipe_lr"] == 0.1 and result["effective_lr"] == 0.1  # the default recipe's
    (line,) = [ln for ln in out.splitlines() if ln.startswith("lr_find: suggested lr")]
    assert f"suggested lr {result['suggested_lr']:.4g}" in line
    assert "model.optimizer.lr 0.1" in line and f"{run_dir / 'lr_find.png'}" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no logs/, csv/, lightning_logs/
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra",
        "lr_find.json",
        "lr_find.png",
        "train.log",
    ]


@pytest.mark.slow  # ~10 s with its video fixture
def test_lr_find_emotion_sweeps_the_optimizer_lr(
    tiny_video_release: Path,
    tiny_video_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    """The emotion task (its recipe: AdamW, cosine warm-up, lr 1e-3, here with lr scaling): the
    lr each optimiser step actually used, read from the optimiser's param groups, is the swept
    lr of lr_find.json; the suggestion is compared with the recipe's effective lr."""
    import torch

    from migalab.tasks.emotion import EmotionModule

    used: list[list[float]] = []
    original = EmotionModule.on_before_optimizer_step

    def record(self: EmotionModule, optimizer: torch.optim.Optimizer) -> None:
        used.append([g["lr"] for g in optimizer.param_groups])
        original(self, optimizer)

    monkeypatch.setattr(EmotionModule, "on_before_optimizer_step", record)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = [
            "experiment=emotion_context_synth", *SWEEP, "trainer.precision=32-true",
            *tiny_video_overrides(tiny_video_release, tiny_video_cache),
            "model.lr_scaling.base_batch_size=8",  # batches of 4: lr x 0.5
        ]  # fmt: skip
        payload, trainer = train(compose_config("train", overrides, output_dir=tmp_path))
    finally:
        torch.set_num_threads(threads)
    assert trainer is None
    result = _check_result(tmp_path, 15)
    assert result == json.loads(json.dumps(payload))
    assert result["recipe_lr"] == 0.001 and result["model"].endswith("EmotionModule")
    assert result["effective_lr"] == pytest.approx(0.0005) and result["lr_scaling"]["factor"] == 0.5
    assert (
        "(effective 0.0005 after lr_scaling): ratio suggested/effective" in capsys.readouterr().out
    )
    assert len(used) == result["steps"]
    for groups, lr in zip(used, result["lrs"], strict=True):
        assert groups == pytest.approx([lr] * len(groups), rel=1e-6)
    assert used[-1][0] > 1e3 * used[0][0]  # exponential sweep from 1e-6 towards 1


def test_lr_find_pretrain(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    """``migalab-pretrain ... lr_find=true`` sweeps the pretext recipe the same way."""
    import torch

    from tests.test_pretrain import SMALL

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        overrides = [*SWEEP, *tiny_data_overrides(tiny_release, tiny_cache), *SMALL]
        payload, _ = train(compose_config("pretrain", overrides, output_dir=tmp_path))
    finally:
        torch.set_num_threads(threads)
    result = _check_result(tmp_path, 15)
    assert result["task"] == "pretrain" and result["recipe_lr"] == payload["recipe_lr"] == 0.001


@pytest.mark.slow  # the refusals are also tested in-process (test_lr_find_refusals)
def test_lr_find_refuses_a_resume_by_name(tmp_path: Path) -> None:
    """A resume checkpoint contradicts a sweep from the recipe's initial weights: one line,
    exit 2, before any data is read."""
    proc = run_script(
        ["migalab-train", "lr_find=true", "ckpt_path=last", f"hydra.run.dir={tmp_path / 'run'}",
         f"paths.data_dir={tmp_path / 'nodata'}"],
        cwd=tmp_path, env=ONE_THREAD,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "lr_find=true" in line and "ckpt_path=last" in line
    assert not (tmp_path / "nodata").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["debug=fdr"], "fast_dev_run"),
        (["ckpt_path=/some/run/last.ckpt"], "ckpt_path=/some/run/last.ckpt"),
        (["lr_find_settings.num_training=5"], "at least 13"),
        (["lr_find_settings.min_lr=1.0", "lr_find_settings.max_lr=0.1"], "min_lr < max_lr"),
        (["lr_find_settings.mode=cosine"], "exponential or linear"),
        (["lr_find_settings.early_stop_threshold=0.5"], "> 1 or null"),
        (["+lr_find_settings.beta=0.9"], "unknown key(s) beta"),
    ],
)
def test_lr_find_refusals(overrides: list[str], message: str, tmp_path: Path) -> None:
    cfg = compose_config("train", ["lr_find=true", *overrides], output_dir=tmp_path)
    with pytest.raises(LrFindError) as err:
        train(cfg)
    assert message in str(err.value)
    assert not list(tmp_path.iterdir())


def test_lr_find_settings_defaults_and_auto_resume(tmp_path: Path) -> None:
    """The config's block matches the module's defaults; ``ckpt_path=auto`` (SLURM jobs) is no
    resume request and passes; ``lr_find_settings.early_stop_threshold=null`` is allowed."""
    cfg = compose_config("train", ["lr_find=true", "lr_find_settings.early_stop_threshold=null"],
                         output_dir=tmp_path)  # fmt: skip
    assert lr_find_settings(cfg) == {**DEFAULT_SETTINGS, "early_stop_threshold": None}
    for name in ("train", "pretrain"):
        cfg = compose_config(name, [], output_dir=tmp_path)
        assert cfg.lr_find is False and lr_find_settings(cfg) == DEFAULT_SETTINGS
    from migalab.lr_find import _check_options

    _check_options(compose_config("train", ["lr_find=true", "ckpt_path=auto"]))


def test_suggest_lr_is_the_steepest_fall_in_log_lr() -> None:
    """A flat, slightly noisy loss at small lrs, a fall between 1e-3 and 1e-1, a rise after:
    the suggestion lies on the fall (differentiating against the lr itself, as Lightning >= 2.5.3
    does, lets the noise among the smallest lrs win: Lightning issue #21141)."""
    import random

    rng = random.Random(0)
    lrs = [1e-6 * 10 ** (6 * i / 99) for i in range(100)]

    def loss(lr: float) -> float:
        x = math.log10(lr)
        base = 4.0 if x < -3 else 4.0 - 0.5 * (x + 3) if x < -1 else 3.0 + 2.0 * (x + 1)
        return base + rng.uniform(-0.01, 0.01)

    losses: list[float | None] = [loss(lr) for lr in lrs]
    best = suggest_lr(lrs, losses)
    assert best is not None and 1e-3 <= lrs[best] <= 1e-1
    losses[best] = None  # a non-finite loss is skipped, not chosen
    assert suggest_lr(lrs, losses) not in (None, best)
    assert suggest_lr(lrs[:12], losses[:12]) is None  # nothing left after the skipped steps
    linear = [i / 100 for i in range(1, 41)]
    best = suggest_lr(linear, [1.0 - (x - 0.2) ** 2 if x > 0.2 else 1.0 for x in linear], "linear")
    assert best == len(linear) - 2  # the last step is skipped
