"""migalab-eval / -predict / -train on checkpoints a stranger hands you, each run in a fresh
interpreter under the audit hook (tests/security/audit.py): a hostile one is refused with one
line naming it and exit status 2, and nothing outside the run is opened, written, imported or
started -- also when the payload hides inside a real trained checkpoint."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import tiny_eval_overrides
from tests.security.audit import RECORDER, run_audited
from tests.utils.test_checkpoints import malicious_checkpoint


def _doctored(real: Path, out: Path, change: Any) -> Path:
    """A copy of the real checkpoint ``real`` whose stored config ``change(cfg)`` edited."""
    ckpt = torch.load(real, map_location="cpu", weights_only=True)
    change(ckpt["migalab_config"])
    torch.save(ckpt, out)
    return out


def _one_line_refusal(proc_stderr: str, name: str) -> None:
    lines = [ln for ln in proc_stderr.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("error: ") and name in lines[-1], proc_stderr[-3000:]
    assert "Traceback" not in proc_stderr, proc_stderr[-3000:]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A folder no command of ours may open (what a hostile checkpoint points at)."""
    folder = tmp_path / "secret"
    folder.mkdir()
    (folder / "id_rsa").write_text("PRIVATE")
    return folder


def _interpolation(cfg: dict[str, Any], secret: Path) -> None:
    cfg["model"]["encoder"]["layout"] = (
        "${oc.create:{_target_: pathlib.Path.write_text, self: " + str(secret / "pwned") + "}}"
    )


@pytest.mark.parametrize(
    "entry", ["migalab.cli:evaluate", pytest.param("migalab.cli:predict", marks=pytest.mark.slow)]
)
def test_an_interpolation_hidden_in_a_real_checkpoint_is_refused(
    entry: str, cli_run: tuple[Path, Path], tiny_release: Path, tiny_cache: Path,
    tmp_path: Path, secret: Path,
) -> None:  # fmt: skip
    _, real = cli_run
    ckpt = _doctored(real, tmp_path / "shared.ckpt", lambda c: _interpolation(c, secret))
    logs = tmp_path / "logs"
    run = run_audited(entry, [f"ckpt_path={ckpt}", f"paths.log_dir={logs}",
                              *tiny_eval_overrides(tiny_release, tiny_cache)[:2]],
                      cwd=tmp_path, writable=[logs], forbidden=[secret])  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    _one_line_refusal(run.stderr, "shared.ckpt")
    assert "interpolation" in run.stderr and run.events == []
    assert not (secret / "pwned").exists()


@pytest.mark.slow
def test_a_pickle_payload_is_refused_by_name(tmp_path: Path, secret: Path) -> None:
    ckpt = malicious_checkpoint(tmp_path / "shared.ckpt", secret / "pwned")
    run = run_audited("migalab.cli:evaluate", [f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path}"],
                      cwd=tmp_path, writable=[tmp_path], forbidden=[secret])  # fmt: skip
    assert run.returncode == 2
    _one_line_refusal(run.stderr, "shared.ckpt")
    assert "refused to load checkpoint" in run.stderr and run.events == []


@pytest.mark.slow
def test_locations_in_a_real_checkpoint_are_not_used_and_it_still_evaluates(
    cli_run: tuple[Path, Path], tiny_release: Path, tiny_cache: Path, tmp_path: Path,
    secret: Path,
) -> None:  # fmt: skip
    """A real checkpoint whose stored config names files in someone else's folders (an encoder
    init, a cache, prepared clips, label files) evaluates normally from the user's data and
    never opens them; the log says what was ignored."""
    cwd, real = cli_run

    def point_at_secret(cfg: dict[str, Any]) -> None:
        cfg["model"]["encoder"]["init"] = str(secret / "id_rsa")
        cfg["data"]["video"]["prepared_dir"] = str(secret / "prepared")
        cfg["data"]["pseudo_labels"] = str(secret / "labels.csv")

    ckpt = _doctored(real, tmp_path / "shared.ckpt", point_at_secret)
    logs = tmp_path / "logs"
    run = run_audited("migalab.cli:evaluate", [f"ckpt_path={ckpt}", f"paths.log_dir={logs}",
                                            *tiny_eval_overrides(tiny_release, tiny_cache)],
                      cwd=tmp_path, writable=[logs, tiny_cache.parent], forbidden=[secret])  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.events == [], "\n".join(run.events)
    log_text = next(logs.glob("eval/runs/*/eval.log")).read_text()
    assert "not taken from the checkpoint" in log_text and "id_rsa" in log_text


def test_an_init_checkpoint_is_read_as_weights_only(tmp_path: Path, secret: Path) -> None:
    """``model.encoder.init=<file>`` (fine-tuning from a pretraining run): a pickle payload in
    the file is refused before anything runs."""
    from migalab.models.finetune import load_encoder_weights
    from migalab.utils.stored_config import UnsafeCheckpointError

    ckpt = malicious_checkpoint(tmp_path / "pretrained.ckpt", secret / "pwned")
    with RECORDER.armed(writable=[], forbidden=[secret]) as events:
        with pytest.raises(UnsafeCheckpointError, match=r"pretrained\.ckpt"):
            load_encoder_weights(torch.nn.Linear(2, 2), ckpt, "encoder")
    assert events == [] and not (secret / "pwned").exists()


def test_a_bad_override_exits_2_in_one_message(tmp_path: Path) -> None:
    from tests.test_console_scripts import run_script

    proc = run_script(["migalab-eval", "ckpt_path=x.ckpt", "nosuchkey=1"], tmp_path)
    assert proc.returncode == 2 and "nosuchkey" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_missing_checkpoint_exits_2_in_one_line(tmp_path: Path) -> None:
    from tests.test_console_scripts import run_script

    missing = run_script(["migalab-eval", f"ckpt_path={tmp_path / 'none.ckpt'}",
                          f"paths.log_dir={tmp_path}"], tmp_path)  # fmt: skip
    assert missing.returncode == 2
    _one_line_refusal(missing.stderr, "none.ckpt")


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from tests.test_console_scripts import run_script

    debug = run_script(["migalab-eval", f"ckpt_path={tmp_path / 'none.ckpt'}",
                        f"paths.log_dir={tmp_path}", "--debug"], tmp_path)  # fmt: skip
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # the trace on request


@pytest.mark.slow
def test_train_with_a_hostile_init_checkpoint_by_name(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path, secret: Path
) -> None:
    from tests.conftest import tiny_data_overrides

    ckpt = malicious_checkpoint(tmp_path / "pretrained.ckpt", secret / "pwned")
    logs = tmp_path / "logs"
    run = run_audited("migalab.cli:train",
                      ["logger=csv", f"paths.log_dir={logs}",
                       *tiny_data_overrides(tiny_release, tiny_cache),
                       "model.encoder.base_channels=8", "+trainer.fast_dev_run=1",
                       f"model.encoder.init={ckpt}"],
                      cwd=tmp_path, writable=[logs, tiny_cache.parent], forbidden=[secret],
                      env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    _one_line_refusal(run.stderr, "pretrained.ckpt")
    assert run.events == [] and not (secret / "pwned").exists()


def test_a_framestack_pretrained_file_is_read_as_weights_only(tmp_path: Path, secret: Path) -> None:
    """``model.encoder.pretrained=<file>`` of the frame-stack RGB encoder: a pickle payload in
    the file is refused, naming it, before anything runs."""
    from migalab.models.encoders.framestack import FrameStack2D
    from migalab.utils.stored_config import UnsafeCheckpointError

    ckpt = malicious_checkpoint(tmp_path / "resnet10t.pth", secret / "pwned")
    enc = FrameStack2D("resnet10t", temporal_size=4, spatial_size=32, pretrained=str(ckpt))
    with RECORDER.armed(writable=[], forbidden=[secret]) as events:
        with pytest.raises(UnsafeCheckpointError, match=r"resnet10t\.pth"):
            enc.load_initial_weights()
    assert events == [] and not (secret / "pwned").exists()


@pytest.mark.slow  # the gesture checkpoint of the session's cli_run, then a refused one (~15 s)
@pytest.mark.parametrize("key", ["online.actionness_ckpt", "emotion_ckpt"])
def test_online_recognition_s_other_checkpoints_are_read_as_data(
    key: str, cli_run: tuple[Path, Path], tiny_release: Path, tmp_path: Path, secret: Path
) -> None:
    """migalab-predict's actionness and emotion checkpoints, handed over by a stranger: a pickle
    payload in either is refused with one line naming it, and nothing runs."""
    _, gesture = cli_run
    ckpt = malicious_checkpoint(tmp_path / "shared.ckpt", secret / "pwned")
    table = sorted((tiny_release / "test").iterdir())[0]
    video = tmp_path / "talk.mp4"  # the emotion's video: the refusal comes before any decoding
    video.write_bytes(b"")
    run_dir = tmp_path / "run"
    run = run_audited("migalab.cli:predict",
                      [f"ckpt_path={gesture}", f"skeleton={table}", f"{key}={ckpt}",
                       f"online.annotate_video={video}", f"hydra.run.dir={run_dir}"],
                      cwd=tmp_path, writable=[run_dir], forbidden=[secret],
                      env={"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    _one_line_refusal(run.stderr, "shared.ckpt")
    assert run.events == [] and not (secret / "pwned").exists()


@pytest.mark.parametrize("stream", ["joint", "bone"])
def test_a_hostile_target_in_a_checkpoint_from_before_the_neck_split_is_refused(
    stream: str, tmp_path: Path, secret: Path
) -> None:
    """The upgrade of an old fusion config (its encoders moved out of the neck) runs before the
    allowlist: a ``_target_`` hidden in an old encoder entry is still refused, naming the file,
    and nothing is imported, opened or started."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "pre_neck_token_fusion.ckpt"

    def hostile(cfg: dict[str, Any]) -> None:
        entry = cfg["model"]["encoder"]["modalities"][stream]["encoder"]
        entry.update({"_target_": "os.system", "command": f"touch {secret / 'pwned'}"})

    ckpt = _doctored(fixture, tmp_path / "old_fusion.ckpt", hostile)
    logs = tmp_path / "logs"
    run = run_audited("migalab.cli:evaluate",
                      [f"ckpt_path={ckpt}", f"paths.log_dir={logs}",
                       f"paths.data_dir={tmp_path / 'data'}"],
                      cwd=tmp_path, writable=[logs], forbidden=[secret])  # fmt: skip
    assert run.returncode == 2, run.stderr[-3000:]
    _one_line_refusal(run.stderr, "old_fusion.ckpt")
    assert "os.system" in run.stderr and run.events == []
    assert not (secret / "pwned").exists()
