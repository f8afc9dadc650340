"""The overfit check (``migalab-train experiment=<exp> debug=overfit``, :mod:`migalab.overfit`):
every model family reaches 100 % on a handful of fixed training clips through the real
datamodule, within a fixed budget of optimiser steps; the callback's stop rule and report; the
command by name.

The budgets are about twice the steps measured (CPU, one thread; the counts vary by a few steps
with the thread count, which changes float reductions), never a timing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from migalab.overfit import OVERFIT_FAILED_EXIT, OVERFIT_FILE, OverfitCheck, overfit_metric
from migalab.train import _task, train
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides, tiny_video_overrides

#: what every test run adds: the CPU trainer, no progress bar or model summary
QUIET = [
    "trainer=cpu",
    "trainer.precision=32-true",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]
#: the tiny video release has 14 training clips: 8 of them (one full batch of the debug config's
#: 8; for the emotion target 4 win and 4 lose), face / RGB crops prepared in-process
VIDEO = ["data.overfit_clips=8", "data.batch_size=8", "data.prepare_workers=1"]
#: CPU sizes of the video models (as tests/test_train.py and tests/test_emotion_train.py): the
#: experiment's RGB encoder (MViT, or the 3D CNN of the CPU variants) at preset xs
XS = ["model.encoder.preset=xs"]
FUSION = [
    "model.encoders.joint.base_channels=8",
    "model.encoders.bone.base_channels=8",
    "model.neck.dim=32",
    "model.neck.heads=4",
]
#: InterFusion dim 32 on 2 face frames
INTERFUSION = ["data.face.num_frames=2", "model.neck.dim=32"]
#: PoseC3D on the tiny skeleton release (data=synthetic: its occlusions are not needed here) at
#: 8 frames and a 16 px canvas
POSEC3D = ["data=synthetic", "model.encoder.base_channels=8", "data.num_frames=8",
           "data.heatmap.size_train=16", "data.heatmap.size_eval=16"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One model family's overfit run: its ``_synth`` experiment, the tiny release it trains on
    (``video``), CPU-size overrides and the step budget."""

    experiment: str
    video: bool
    overrides: tuple[str, ...]
    budget: int


def _case(experiment: str, video: bool, overrides: list[str], budget: int, *marks: object):  # noqa: ANN202
    return pytest.param(Case(experiment, video, tuple(overrides), budget), marks=marks,
                        id=experiment)  # fmt: skip


#: budget: ~2x the steps measured (in brackets; CPU, one thread), at least 10. The RGB recipes
#: were measured with MViT xs at lr 1e-3 and 3e-4 and with ResNet3D xs (their CPU encoder and
#: lr were under review): the budgets cover each. The time of a run (one thread, a busy 2-core
#: machine; video runs without the crops' preparation) decides the slow mark (> ~10 s)
CASES = [
    # [38 steps, 5 s]
    _case("agcn_joint_synth", False, ["model.encoder.base_channels=8", "data.num_frames=16"], 80),
    # [36 steps, 2.3 s] the same AGCN told gesture clips from background windows (online)
    _case(
        "actionness_joint_synth", False, ["model.encoder.base_channels=8", "data.num_frames=16"], 80
    ),
    # [34 steps, 11 s]
    _case("posec3d_joint_synth", False, POSEC3D, 70, pytest.mark.slow),
    # [36 steps, 7 s] PoseC3D + 41 keypoints + interpolation + label-embedding loss
    _case("system_a_synth", False, POSEC3D, 75),
    # [214 steps, 50 s] the recipe's transformer (dim 64, 4 blocks; dim 16-32 with 1-2 blocks
    # stays below 35 % after 400 steps at the recipe's lr 5e-4): the budget is the command's
    # own 200 epochs (400 steps, 1.9x)
    _case("stt_joint_synth", False, ["data.num_frames=16"], 400, pytest.mark.slow),
    # [3 steps at lr 1e-3, 10 at 3e-4; 10-20 s] MViT xs at 4 frames x 32 px
    _case("mvit_rgb_synth", True, [*XS, *VIDEO], 20, pytest.mark.slow),
    # [18 steps, 2.5 s] FrameStack2D (timm resnet10t) at 4 frames x 32 px
    _case("framestack_rgb_synth", True, VIDEO, 40),
    # [MViT xs: 48 steps at lr 1e-3, 66 at 3e-4; ResNet3D xs: 60; 30-130 s] + 8-wide AGCN joint
    # and bone, token fusion dim 32
    _case("system_b_mg_synth", True, [*FUSION, *VIDEO], 130, pytest.mark.slow),
    # [2 steps, 10 s] SwinFace small on 2 face frames (val/clip_acc)
    _case("emotion_face_synth", True, ["data.face.num_frames=2", *VIDEO], 10, pytest.mark.slow),
    # [1 step with MViT xs, 3 with ResNet3D xs, 4 with FrameStack2D; 5-7 s, 22 s with two
    # trainings beside it] InterFusion dim 32 over SwinFace small and the context encoder
    _case("system_b_emotion_synth", True, [*INTERFUSION, *VIDEO], 10),
    # [1 step with MViT xs, 2 with ResNet3D xs, 6 with FrameStack2D; 2-11 s] the person crop
    # (emotion)
    _case("emotion_context_synth", True, VIDEO, 12),
]


def _overrides(case: Case, request: pytest.FixtureRequest) -> list[str]:
    """The experiment with debug=overfit on the tiny release it needs (only that one is built)."""
    if case.video:
        release = request.getfixturevalue("tiny_video_release")
        data = tiny_video_overrides(release, request.getfixturevalue("tiny_video_cache"))
    else:
        release = request.getfixturevalue("tiny_release")
        data = tiny_data_overrides(release, request.getfixturevalue("tiny_cache"))
    # the debug config's batch sizes, not the tiny overrides' (the last override wins)
    return [f"experiment={case.experiment}", "debug=overfit", *QUIET, *data,
            "data.batch_size=8", "data.eval_batch_size=16", *case.overrides]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_every_model_overfits_a_few_clips(
    case: Case, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cfg = compose_config("train", _overrides(case, request), output_dir=tmp_path)
    assert cfg.data.overfit_clips in (8, 16)
    payload, trainer = train(cfg)
    result = payload["overfit"]
    history = [(h["step"], h["accuracy"], h["train_loss"]) for h in result["history"]]
    assert result["reached"], f"{case.experiment}: best {result['best_accuracy']}: {history}"
    assert result["steps"] <= case.budget, f"{case.experiment}: {history}"
    assert result["metric"] == overfit_metric(cfg.data.target)
    # stopped at the first 100 %: the validation before was below it
    assert history[-1][1] == 1.0 and all(acc < 1.0 for _, acc, _ in history[:-1])
    assert trainer.global_step == result["steps"] and trainer.current_epoch == result["epochs"]
    # no checkpoint, no test split: the check's outcome is the result
    assert "test" not in payload and payload["ckpt_path"] is None
    assert not (tmp_path / "checkpoints").exists()
    assert json.loads((tmp_path / OVERFIT_FILE).read_text()) == json.loads(
        json.dumps(result)
    ) == json.loads((tmp_path / "metrics.json").read_text())["overfit"]  # fmt: skip


# -- the command by name -------------------------------------------------------------------------
@pytest.mark.slow  # a console script's start (torch, Lightning, Hydra) and a run: ~30 s
def test_overfit_command_by_name(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    """``migalab-train experiment=agcn_joint_synth debug=overfit`` from an empty directory: one
    line with the outcome, overfit.json and metrics.json in the run dir, exit status 0."""
    from tests.test_console_scripts import _ok, run_script

    proc = run_script(
        ["migalab-train", "experiment=agcn_joint_synth", "debug=overfit",
         f"paths.log_dir={tmp_path / 'logs'}", *tiny_data_overrides(tiny_release, tiny_cache),
         "model.encoder.base_channels=8", "data.num_frames=16",
         "+trainer.enable_progress_bar=false"],
        cwd=tmp_path, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    out = _ok(proc)
    (run,) = (tmp_path / "logs").glob("overfit/runs/*")
    result = json.loads((run / OVERFIT_FILE).read_text())
    assert result["reached"] and result["clips"] == 16
    line = (f"overfit: 100 % of 16 training clips after {result['steps']} optimizer steps "
            f"({result['epochs']} epochs, {result['seconds']} s)")  # fmt: skip
    assert line in proc.stdout.splitlines(), out[-3000:]
    assert json.loads((run / "metrics.json").read_text())["overfit"] == result
    assert not (run / "checkpoints").exists() and "Traceback" not in out


def test_failed_overfit_exits_1_with_one_line(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model that cannot learn (lr 0) never reaches 100 %: the FAILED line on stderr, with
    hints, and exit status 1 (a failed check, not a refused command), no traceback."""
    overrides = [
        "experiment=agcn_joint_synth", "debug=overfit", *QUIET,
        *tiny_data_overrides(tiny_release, tiny_cache), "model.encoder.base_channels=8",
        "data.overfit_clips=8", "model.optimizer.lr=0", "trainer.max_epochs=2",
    ]  # fmt: skip
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    with pytest.raises(SystemExit) as exc:
        _task(cfg)
    assert exc.value.code == OVERFIT_FAILED_EXIT == 1
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("overfit")]
    result = json.loads((tmp_path / OVERFIT_FILE).read_text())
    assert not result["reached"] and result["steps"] == 2 and result["epochs"] == 2
    best = f"{100 * result['best_accuracy']:.4g}"
    assert line.startswith(f"overfit FAILED: best {best} % of 8 clips (val/top1) after 2 steps "
                           f"(2 epochs, {result['seconds']} s) — hint: check the learning rate")  # fmt: skip
    assert "lr_find=true" in line and "Traceback" not in err


# -- the callback ---------------------------------------------------------------------------------
def _trainer(accuracy: float | None, monitor: str = "val/top1", **kw: object) -> SimpleNamespace:
    metrics = {} if accuracy is None else {monitor: torch.tensor(accuracy)}
    base = dict(sanity_checking=False, callback_metrics=metrics, global_step=6, current_epoch=2,
                should_stop=False)  # fmt: skip
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize(("accuracy", "stops"), [(1.0, True), (0.9999, False), (0.0, False)])
def test_the_check_stops_at_exactly_100_percent(accuracy: float, stops: bool) -> None:
    check = OverfitCheck("val/top1", clips=16)
    trainer = _trainer(accuracy)
    check.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.should_stop is stops
    assert check.history == [{"epoch": 3, "step": 6, "accuracy": pytest.approx(accuracy),
                              "train_loss": None}]  # fmt: skip
    assert (check.reached == {"step": 6, "epoch": 3}) is stops


def test_the_check_keeps_the_first_100_percent_and_skips_the_sanity_check() -> None:
    check = OverfitCheck("val/clip_acc", clips=8)
    check.on_validation_end(_trainer(1.0, "val/clip_acc", sanity_checking=True), None)  # type: ignore[arg-type]
    assert check.history == []  # the sanity check is not a validation of trained weights
    assert not check.update(0.5, 2, 1)
    assert check.update(1.0, 4, 2) and check.update(1.0, 6, 3)
    result = check.finish(step=6, epochs=3)
    assert result["reached"] and (result["steps"], result["epochs"]) == (4, 2)
    assert result["best_accuracy"] == 1.0 and result["clips"] == 8
    assert check.line().startswith("overfit: 100 % of 8 training clips after 4 optimizer steps "
                                   "(2 epochs, ")  # fmt: skip


def test_the_check_reports_a_failure_with_the_best_accuracy(tmp_path: Path) -> None:
    check = OverfitCheck("val/top1", clips=16)
    check._losses = [2.0, 1.0]  # noqa: SLF001 (two training batches of the epoch)
    check.update(0.9375, 2, 1)
    check.update(0.5, 4, 2)
    result = check.finish(step=4, epochs=2)
    assert result["history"][0]["train_loss"] == 1.5 and result["history"][1]["train_loss"] is None
    assert not result["reached"] and result["best_accuracy"] == 0.9375
    assert (result["steps"], result["epochs"]) == (4, 2)
    assert check.line().startswith("overfit FAILED: best 93.75 % of 16 clips (val/top1) after 4 "
                                   "steps (2 epochs, ")  # fmt: skip
    path = check.report(tmp_path)
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))


def test_the_check_names_a_missing_metric() -> None:
    with pytest.raises(KeyError, match=r"reads val/top1, which this model does not log"):
        OverfitCheck().on_validation_end(_trainer(None), None)  # type: ignore[arg-type]
    assert overfit_metric("emotion") == "val/clip_acc" and overfit_metric("gesture") == "val/top1"
