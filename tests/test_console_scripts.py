"""Every console script, run by name in a subprocess from a temporary directory, as a user
runs it: ``--help``, a short training run, evaluation and prediction of its checkpoint, and the
same scripts from a freshly built wheel (not the editable checkout)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import tiny_data_overrides, tiny_eval_overrides
from tests.utils.test_checkpoints import malicious_checkpoint

SCRIPTS = ["migalab-train", "migalab-pretrain", "migalab-eval", "migalab-predict", "migalab-synth",
           "migalab-prepare", "migalab-pseudolabel", "migalab-pose"]  # fmt: skip
HYDRA_SCRIPTS = ("migalab-train", "migalab-pretrain", "migalab-eval", "migalab-predict",
                 "migalab-pseudolabel")  # fmt: skip
#: where this environment installed its console scripts (next to its python)
BIN = Path(sysconfig.get_path("scripts"))


def run_script(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (a console script by name first) in ``cwd`` with this env's scripts on PATH."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    return subprocess.run(
        args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def test_help_from_any_directory(tmp_path: Path) -> None:
    """``<script> --help`` of every console script, started together (the Hydra ones enter
    through migalab.cli and import neither torch nor Lightning for it; the others do)."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    procs = {}
    for script in SCRIPTS:
        assert (BIN / script).is_file(), f"{script} is not installed in {BIN}"
        procs[script] = subprocess.Popen(
            [script, "--help"], cwd=tmp_path, env=full_env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
    for script, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{script} --help failed:\n{out[-3000:]}"
        if script in HYDRA_SCRIPTS:
            # Hydra's help lists the config groups it found: the configs were located
            assert "== Configuration groups ==" in out and "trainer:" in out, script
            assert out.startswith(f"{script} is powered by Hydra"), out[:200]
            if script in ("migalab-train", "migalab-pretrain"):
                assert "agcn_joint_synth" in out and "mamp_skeleton_synth" in out  # experiments
        else:
            assert "usage:" in out, script
    assert not list(tmp_path.iterdir()), "--help wrote files into the working directory"


@pytest.mark.parametrize("entry", ["train", "pretrain", "evaluate", "predict", "pseudolabel"])
def test_hydra_entries_compose_without_importing_torch(entry: str, tmp_path: Path) -> None:
    """migalab.cli: ``--help`` and ``--cfg job`` (composing the whole config, resolvers
    included) never import torch or Lightning; the tasks are module-level functions, picklable
    for launchers that send them to other machines (submitit)."""
    code = (
        "import pickle, sys\n"
        f"from migalab import cli\n"
        f"pickle.loads(pickle.dumps(cli._{'eval' if entry == 'evaluate' else entry}))\n"
        "for argv in (['--help'], ['--cfg', 'job']):\n"
        "    sys.argv = ['x', *argv]\n"
        "    try:\n"
        f"        cli.{entry}()\n"
        "    except SystemExit as e:\n"
        "        assert e.code in (0, None), e.code\n"
        "print('IMPORTED', sorted(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    )
    out = _ok(run_script([sys.executable, "-c", code], cwd=tmp_path))
    assert "IMPORTED []" in out and "task_name:" in out


def test_train_eval_predict_by_name(
    cli_run: tuple[Path, Path], tiny_release: Path, tiny_cache: Path
) -> None:
    cwd, ckpt = cli_run
    where = tiny_eval_overrides(tiny_release, tiny_cache)
    trained = json.loads(next((cwd / "logs").glob("train/runs/*/metrics.json")).read_text())
    _ok(run_script(["migalab-eval", f"ckpt_path={ckpt}", f"paths.log_dir={cwd / 'logs'}", *where],
                   cwd))  # fmt: skip
    (ev,) = (cwd / "logs").glob("eval/runs/*/metrics.json")
    evaluated = json.loads(ev.read_text())
    for split in ("val", "test"):
        assert evaluated[split]["top1"] == pytest.approx(trained[split]["top1"], abs=1e-6)

    _ok(run_script(["migalab-predict", f"ckpt_path={ckpt}", f"paths.log_dir={cwd / 'logs'}",
                    *where[:2]], cwd))  # fmt: skip
    (sub,) = (cwd / "logs").glob("predict/runs/*/submission.csv")
    rows = list(csv.reader(sub.open()))
    assert rows[0] == ["Id", "Target"] and len(rows) > 1
    assert {int(r[1]) for r in rows[1:]} <= set(range(32))  # 0-based, 31 = illustrative


@pytest.mark.slow  # pseudolabel + a training by name (~17 s); the windows are tested in-process
def test_pseudolabel_by_name_then_train_on_its_windows(
    cli_run: tuple[Path, Path], tiny_release: Path, tiny_cache: Path
) -> None:
    """migalab-pseudolabel scores the unlabelled windows of the train videos; migalab-train
    takes its CSV (data.pseudo_labels) as extra training windows."""
    cwd, ckpt = cli_run
    # a 1-epoch model is unsure of everything: a low threshold keeps windows to train on
    out = _ok(run_script(["migalab-pseudolabel", f"ckpt_path={ckpt}", "threshold=0.02",
                          *tiny_eval_overrides(tiny_release, tiny_cache)[:2],
                          f"paths.log_dir={cwd / 'logs'}"], cwd))  # fmt: skip
    (summary,) = (cwd / "logs").glob("pseudolabel/runs/*/pseudo_labels.json")
    info = json.loads(summary.read_text())
    table = list(csv.DictReader((summary.parent / "pseudo_labels.csv").open()))
    assert info["windows"] > 0 and len(table) == info["kept"] > 0 and "pseudo-labels:" in out
    assert sum(info["kept_per_class"]) == info["kept"]
    assert all(float(r["score"]) >= 0.02 and 0 <= int(r["label"]) < 32 for r in table)
    run = _ok(run_script(
        ["migalab-train", "logger=csv", f"paths.log_dir={cwd / 'pl_logs'}",
         *tiny_data_overrides(tiny_release, tiny_cache), "model.encoder.base_channels=8",
         "+trainer.fast_dev_run=1", f"data.pseudo_labels={summary.parent / 'pseudo_labels.csv'}"],
        cwd,
    ))  # fmt: skip
    assert f"pseudo-labels: {info['kept']} windows" in " ".join(run.split())


def test_eval_refuses_a_malicious_checkpoint_by_name(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = malicious_checkpoint(tmp_path / "shared.ckpt", marker)
    proc = run_script(["migalab-eval", f"ckpt_path={ckpt}", f"paths.log_dir={tmp_path}"], tmp_path)
    assert proc.returncode != 0
    assert "refused to load checkpoint" in proc.stderr and "shared.ckpt" in proc.stderr
    assert not marker.exists()


def test_user_config_dir_is_searched(tmp_path: Path) -> None:
    """Users keep their own configs outside the package (``--config-dir``)."""
    mine = tmp_path / "myconf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "my_exp.yaml").write_text(
        "# @package _global_\ndefaults:\n  - agcn_joint_synth\ntags: [mine]\n"
        "model:\n  encoder:\n    base_channels: 12\n"
    )
    out = _ok(run_script(["migalab-train", "--config-dir", str(tmp_path / "myconf"),
                          "experiment=my_exp", "--cfg", "job"], tmp_path))  # fmt: skip
    assert "base_channels: 12" in out and "- mine" in out


@pytest.mark.slow  # builds and installs a wheel (~13 s)
def test_wheel_install_runs_from_anywhere(tmp_path: Path) -> None:
    """``pip install .`` (not editable): the configs travel inside the wheel."""
    repo = Path(__file__).resolve().parents[1]
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(repo)]
    _ok(subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, check=False))
    (wheel,) = wheels.glob("migalab-*.whl")
    _ok(subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                       cwd=tmp_path, capture_output=True, text=True, check=False))  # fmt: skip
    env = {"PYTHONPATH": str(target)}  # the wheel's migalab first; dependencies from this env
    where = _ok(run_script([sys.executable, "-c", "import migalab; print(migalab.__file__)"],
                           tmp_path, env))  # fmt: skip
    assert where.strip().startswith(str(target))
    packaged = {p.relative_to(target / "migalab" / "conf") for p in
                (target / "migalab" / "conf").rglob("*.yaml")}  # fmt: skip
    source = {p.relative_to(repo / "conf") for p in (repo / "conf").rglob("*.yaml")
              if "local" not in p.parts}  # fmt: skip
    assert source <= packaged
    work = tmp_path / "work"
    work.mkdir()
    script = str(target / "bin" / "migalab-train")
    out = _ok(run_script([script, "experiment=agcn_bone_synth", "--cfg", "job"], work, env))
    assert "stream: bone" in out
    # outside a checkout, data and logs default to the working directory
    out = _ok(run_script([script, "--cfg", "job", "--resolve"], work, env))
    assert f"log_dir: {work.resolve()}/logs" in out
