"""The comparison scripts of docs/, run as a user runs them (``python scripts/<name>.py``, from
another directory) on tiny synthetic data: they train, evaluate and write their tables."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, check=False)  # fmt: skip
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_emotion_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = _run([str(SCRIPTS / "emotion_table.py"), "--out", str(out), "--seeds", "0",
                 "--from-scratch", "--",
                 f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=1",
                 "data.synthetic.num_videos={train:6,validate:4,test:6}"], cwd=tmp_path)  # fmt: skip
    rows = json.loads((out / "results.json").read_text())
    assert [r["row"] for r in rows] == [
        "majority", "face only (SwinFace)", "context only (FrameStack2D)",
        "late fusion face+context (val-searched)", "InterFusion from single streams",
        "InterFusion from scratch",
    ]  # fmt: skip
    for r in rows:
        assert 0 <= r["acc"] <= 1 and r["ci95"]["acc"][0] <= r["acc"] <= r["ci95"]["acc"][1]
    assert rows[0]["auroc"] == 0.5 and rows[0]["balance"]["train"]["videos"] == 6
    for fusion, above in ((rows[-2], rows[:-2]), (rows[-1], rows[:-1])):
        assert [k for k in fusion if k.startswith("vs ")] == [f"vs {r['row']}" for r in above]
        diff = fusion["vs majority"]["acc"]
        assert diff["lo"] <= diff["diff"] <= diff["hi"] and 0 <= diff["p_not_better"] <= 1
    # MiGA's recipe: the fusion's encoders start from this seed's face and context checkpoints
    seed0 = out / "seed0"
    cfg = (seed0 / "InterFusion_from_single_streams" / "config_resolved.yaml").read_text()
    for row in ("face_only_SwinFace", "context_only_FrameStack2D"):
        ckpt = json.loads((seed0 / row / "metrics.json").read_text())["ckpt_path"]
        assert ckpt in cfg, row
    assert "backbone_lr_mult: 0.1" in cfg
    scratch = (seed0 / "InterFusion_from_scratch" / "config_resolved.yaml").read_text()
    assert ".ckpt" not in scratch and "backbone_lr_mult: 1.0" in scratch
    assert "| 0 | InterFusion from single streams |" in text and (out / "results.md").is_file()


def _helpers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_run_helpers", SCRIPTS / "run_helpers.py")
    assert spec and spec.loader
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers


def test_train_once_resumes_a_stopped_run_and_reuses_a_finished_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row's run goes through ``ckpt_path=auto`` (migalab-train resumes from the folder's
    newest readable last / interrupted / requeue checkpoint, else starts fresh: a run killed
    before its first epoch ended has only ``interrupted.ckpt``); a finished one (its
    ``metrics.json``) is not run again."""
    helpers = _helpers()
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], log: Path) -> None:
        calls.append(cmd)
        (log.parent / "metrics.json").write_text('{"ckpt_path": "best.ckpt"}')

    monkeypatch.setattr(helpers, "run", fake_run)
    run_dir = tmp_path / "row"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "interrupted.ckpt").write_bytes(b"")
    payload = helpers.train_once("migalab.train", "row", run_dir, ["seed=1"])
    assert payload == {"ckpt_path": "best.ckpt"} and len(calls) == 1
    assert calls[0][-2:] == ["seed=1", "ckpt_path=auto"]
    assert f"hydra.run.dir={run_dir}" in calls[0]
    assert helpers.train_once("migalab.train", "row", run_dir, ["seed=1"]) == payload
    assert len(calls) == 1  # finished: reused


def test_path_overrides_reach_the_evaluations() -> None:
    """The comparison scripts pass a run's ``paths.*`` overrides (and only those) to the
    ``migalab-eval`` / ``migalab-pseudolabel`` of its checkpoints: without the runs' data dir
    an evaluation regenerated the tiny test release in the checkout's data/ folder, replacing
    the full-size one a user had there."""
    helpers = _helpers()
    overrides = ["paths.data_dir=/d", "trainer.max_epochs=1", "++paths.log_dir=/l",
                 "data.synthetic.num_videos={train:4}", "pathsx=1", "~paths.output_dir"]  # fmt: skip
    assert helpers.path_overrides(overrides) == [
        "paths.data_dir=/d", "++paths.log_dir=/l", "~paths.output_dir",
    ]  # fmt: skip
    assert helpers.path_overrides([]) == []


def _checkout_release_state() -> list[tuple[str, float]]:
    """(file, mtime) of the synthetic releases' metadata in the checkout's data/ folder."""
    data = SCRIPTS.parent / "data"
    return sorted((str(p), p.stat().st_mtime) for p in data.glob("*/release/synth_meta.json"))


@pytest.mark.slow
def test_compare_system_b(tmp_path: Path) -> None:
    """Two seeds of every row at tiny sizes: per-seed metrics, mean ± sd and paired diffs;
    the token fusions by MiGA's recipe start from the same seed's single-stream checkpoints;
    the from-scratch rows train only when asked and are reported over the seeds they have;
    nothing is written into the checkout's data/ (the score fusions' evaluations included)."""
    out = tmp_path / "out"
    before = _checkout_release_state()
    common = ["--", f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=1",
              "data.synthetic.num_videos={train:4,validate:2,test:2}",
              "++data.synthetic.clips_per_video=[4,6]", "data.video.size=32",
              "data.video.prepared_size=32"]  # fmt: skip
    script = str(SCRIPTS / "compare_system_b.py")
    # one seed with the from-scratch rows, then both seeds without: seed 1 has none of them
    _run([script, "--out", str(out), "--seeds", "0", "--from-scratch", *common], cwd=tmp_path)
    text = _run([script, "--out", str(out), "--seeds", "0", "1", *common], cwd=tmp_path)
    assert _checkout_release_state() == before
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and len(results["per_seed"]) == 2
    token = "token fusion RGB + joint + bone from single streams"
    main_rows = {
        "RGB only (FrameStack2D)", "joint (2s-AGCN)", "bone (2s-AGCN)",
        "joint + bone score fusion", "RGB + joint + bone score fusion", token,
        "token fusion joint + bone from single streams",
        "token fusion joint + bone from single streams, modality dropout off",
    }  # fmt: skip
    scratch = {"token fusion RGB + joint + bone from scratch",
               "token fusion joint + bone from scratch"}  # fmt: skip
    assert set(results["per_seed"][0]) == main_rows | scratch
    assert set(results["per_seed"][1]) == main_rows
    for metrics in results["per_seed"][0].values():
        assert 0 <= metrics["test_top1"] <= 1 and 0 <= metrics["val_top1"] <= 1
    # MiGA's recipe: each encoder starts from the same seed's single-stream best checkpoint
    for seed in (0, 1):
        cfg = (
            out
            / f"seed{seed}"
            / "token_fusion_RGB_joint_bone_from_single_streams"
            / "config_resolved.yaml"
        ).read_text()
        for stream, row in (("rgb", "RGB_only_FrameStack2D"), ("joint", "joint_2sAGCN")):
            ckpt = json.loads((out / f"seed{seed}" / row / "metrics.json").read_text())
            assert ckpt["ckpt_path"] in cfg, (seed, stream)
        assert "backbone_lr_mult: 0.1" in cfg
    diffs = results["paired"][token]
    best = [max(s[r]["test_top1"] for r in ("RGB only (FrameStack2D)", "joint (2s-AGCN)",
                                            "bone (2s-AGCN)")) for s in results["per_seed"]]  # fmt: skip
    expected = [s[token]["test_top1"] - b
                for s, b in zip(results["per_seed"], best, strict=True)]  # fmt: skip
    assert diffs["vs_best_single"] == pytest.approx(expected)
    assert len(results["paired"]["token fusion joint + bone from scratch"]["vs_best_single"]) == 1
    assert "| token fusion joint + bone from scratch | 1 |" in text
    assert f"| {token} | 2 |" in text and " ± " in text
    assert text.strip().endswith((out / "results.md").read_text().strip())  # printed last


@pytest.mark.slow
def test_pretrain_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = _run([str(SCRIPTS / "pretrain_table.py"), "--out", str(out), "--seeds", "0",
                 "--pretrain-epochs", "1", "--mamp-epochs", "1", "--finetune-epochs", "1",
                 "--stt-epochs", "1", "--workers", "2", "--",
                 f"paths.data_dir={tmp_path / 'data'}",
                 "data.synthetic.num_videos={train:4,validate:2,test:2}"], cwd=tmp_path)  # fmt: skip
    rows = json.loads((out / "results.json").read_text())
    names = [r["row"] for r in rows]
    for expected in ("RGB only (MViT xs), from scratch", "RGB only, from MaskFeat",
                     "token fusion, MViT from MaskFeat", "skeleton transformer, from MAMP",
                     "token fusion joint+bone only (no RGB: what RGB adds)",
                     "2s-AGCN joint on train+val (final model)", "maskfeat pretraining",
                     "mamp pretraining"):  # fmt: skip
        assert expected in names, names
    assert any(n.startswith("cRT") for n in names) and any(n.startswith("ensemble") for n in names)
    assert any("pseudo-labelled" in n for n in names)
    for folder in ("rgb_maskfeat", "fusion_maskfeat", "stt_mamp"):
        log = (out / "seed0" / folder / "stdout.log").read_text()
        assert "initial weights: " in log and "<- " in log, folder  # the pretrained encoder loaded
    pre = {r["row"]: r for r in rows if r["row"].endswith("pretraining")}
    assert pre["maskfeat pretraining"]["items_per_epoch"] > 0
    assert pre["mamp pretraining"]["items_per_s"] > 0 and "clips/s" in text and "windows/s" in text


@pytest.mark.slow
def test_bench_sections_of_the_emotion_and_pretraining_work(tmp_path: Path) -> None:
    """``python scripts/bench.py <section>`` at tiny sizes: a result file with its ratios."""
    runs = {
        "mamp": ["--repeat", "1", "--batch", "2"],
        "swinface": ["--presets", "xs", "--frames", "2", "--repeat", "1"],
        "faces": ["--frames", "300", "--repeats", "1", "--scale", "0.25"],
        "online": ["--frames", "200", "--baseline-frames", "20"],
        "loader": ["--samples", "4", "--rounds", "1", "--workers", "1"],
    }
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        _run([str(SCRIPTS / "bench.py"), name, *extra, "--out", str(out)], cwd=tmp_path)
        payload = json.loads(out.read_text())
        assert payload["section"] == name and payload["machine"]
    mamp = json.loads((tmp_path / "mamp.json").read_text())["rows"]
    assert all(r["windows_per_s"] > 0 for r in mamp.values())
    swin = json.loads((tmp_path / "swinface.json").read_text())["results"][0]
    assert swin["cache_hit_fps"] > 0 and swin["hit_speedup_vs_compute"] > 0
    faces = json.loads((tmp_path / "faces.json").read_text())
    assert faces["face_boxes_frames_per_s"] > 0 and faces["prepare"]["face crops"]["clips"] >= 0
    online = json.loads((tmp_path / "online.json").read_text())["rows"]
    assert all(r["frames_per_s"] > 0 and r["x_vs_baseline"] > 0 for r in online.values())
    loader = json.loads((tmp_path / "loader.json").read_text())
    assert [r["dtype"] for r in loader["rows"]] == ["float32", "uint8"]  # loader, device
    assert loader["ratios"]["bytes_per_clip"] == pytest.approx(4.0)
    assert loader["ratios"]["worker_clips_per_s"] > 0


#: the full-size experiments scripts/gpu_check.py checks (tracker issue 27)
GPU_CHECK_EXPERIMENTS = [
    "system_a", "posec3d_limb", "agcn_joint", "stt_joint", "mvit_rgb", "system_b_mg",
    "emotion_face", "system_b_emotion", "maskfeat_mvit", "mamp_skeleton",
]  # fmt: skip


def _strict_json(path: Path) -> Any:
    """The file's JSON, refusing NaN / Infinity (not JSON)."""

    def refuse(name: str) -> None:
        raise ValueError(f"{path}: {name} is not valid JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _gpu_check() -> ModuleType:
    """scripts/gpu_check.py imported as a module."""
    spec = importlib.util.spec_from_file_location("_gpu_check_script", SCRIPTS / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_gpu_check_experiment_options_name_existing_configs() -> None:
    """Every row (and its ``_synth`` CPU variant, ``--tiny``) names an experiment yaml; the
    pretraining ones in experiment/pretrain/."""
    gc = _gpu_check()
    from migalab.utils.paths import config_dir

    experiments = config_dir() / "experiment"
    for name, entry in gc.EXPERIMENTS.items():
        for variant in (name, f"{name}_synth"):
            option = gc.experiment_option(variant)
            assert (experiments / f"{option}.yaml").is_file(), option
            assert option.startswith("pretrain/") == (entry == "pretrain"), option


def test_gpu_check_peaks_plan_arithmetic_and_budget(tmp_path: Path) -> None:
    """Peak lookup by device name, MFU and the plan's arithmetic; with no time budget left
    every experiment gets a one-line skip reason in valid JSON."""
    from omegaconf import OmegaConf

    gc = _gpu_check()
    assert list(gc.EXPERIMENTS) == GPU_CHECK_EXPERIMENTS
    assert gc.peak_for("NVIDIA H100 80GB HBM3").bf16 == 989
    assert gc.peak_for("NVIDIA H100 PCIe").bf16 == 756
    assert gc.peak_for("NVIDIA H200").bf16 == 989
    assert gc.peak_for("NVIDIA A100-SXM4-80GB").bf16 == 312
    assert gc.peak_for("NVIDIA L40S").bf16 == 362
    assert gc.peak_for("NVIDIA H100 80GB HBM3 MIG 3g.40gb") is None  # a slice of the GPU
    assert gc.peak_for("NVIDIA GeForce RTX 4090") is None
    assert gc.mfu(989e12 * 0.4, 2.0, 989.0) == pytest.approx(0.2)
    assert gc.mfu(1e12, 1.0, None) is None

    cfg = OmegaConf.create({"data": {"batch_size": 32},
                            "trainer": {"max_epochs": 10, "check_val_every_n_epoch": 5}})  # fmt: skip
    row = gc.plan_row("posec3d_limb", cfg, 10**11, 4 * 10**10, mfu_value=0.5,
                      mfu_source="assumed", mamp_windows=None)  # fmt: skip
    clips = 12_893 // 32 * 32
    total = 1e11 * clips * 10 + 4e10 * 777 * 2  # 10 epochs, validated twice
    assert row["clips_per_epoch"] == clips and row["validations"] == 2 and not row["notes"]
    assert row["total_pflop"] == pytest.approx(total / 1e15)
    assert row["h100_hours"] == pytest.approx(total / (989e12 * 0.5) / 3600)
    assert row["hours_on_8_h100"] == pytest.approx(row["h100_hours"] / 8)
    # one H100 at MFU 0.5 takes 989e12 * 0.5 / 1e11 = 4,945 clips/s; workers round up
    assert row["gpu_clips_per_s"] == pytest.approx(4945.0) and row["workers_per_gpu"] is None
    for rate, workers in ((4945.0, 1), (4944.0, 2), (2472.5, 2), (2472.4, 3)):
        fed = gc.plan_row("posec3d_limb", cfg, 10**11, None, mfu_value=0.5,
                          mfu_source="assumed", mamp_windows=None, worker_clips_per_s=rate)  # fmt: skip
        assert fed["workers_per_gpu"] == workers, rate
    cfg.data.unlabelled = {"window": 120, "stride": 60}
    mamp = gc.plan_row("mamp_skeleton", cfg, 10**10, None, mfu_value=0.35,
                       mfu_source="assumed", mamp_windows=None)  # fmt: skip
    # windows estimated from the release's length: 3,138,000 frames / 60 - 359 videos x (2 - 1)
    assert gc.release_windows(120, 60) == 51_941 and gc.release_windows(60, 60) == 52_300
    assert mamp["clips_per_epoch"] == 51_941 // 32 * 32 and "ESTIMATED 51,941" in mamp["notes"][0]
    assert "2,214 windows" in mamp["notes"][0]  # validation: val's share (777 / 18,232)
    given = gc.plan_row("mamp_skeleton", cfg, 10**10, None, mfu_value=0.35,
                        mfu_source="assumed", mamp_windows=90_000)  # fmt: skip
    assert given["clips_per_epoch"] == 90_000 // 32 * 32 and not given["notes"]
    table = gc.plan_markdown([row, mamp], ["a note"])
    assert "| posec3d_limb | train | 32 | 100.0 | 40.0 | 12,864 | 10 |" in table
    assert "- a note" in table and "\\* mamp_skeleton: ESTIMATED" in table

    out = tmp_path / "check.json"
    assert gc.main(["--device", "cpu", "--budget-s", "0", "--out", str(out)]) == 0
    rows = _strict_json(out)["rows"]
    assert [r["experiment"] for r in rows] == GPU_CHECK_EXPERIMENTS
    assert all(r["skipped"].startswith("time budget exhausted") for r in rows)


def test_gpu_check_cache_sizes_of_the_real_release(tmp_path: Path) -> None:
    """The plan's disk sizes: the skeleton cache from its format over every frame of the real
    release (2,092 min at 25 fps, 137 points x 3 float32), the prepared clips from the bytes
    per frame of a real video's centre crops written as prepare_data writes them."""
    from migalab.data.video.writer import write_video

    gc = _gpu_check()
    rng = np.random.default_rng(0)
    footage = tmp_path / "interview.mp4"
    write_video(footage, rng.integers(0, 256, (10, 48, 64, 3), dtype=np.uint8), gop=5)
    clip = gc.stand_in_clip(32, 12, footage=footage)  # 10 frames looped to 12
    assert clip.shape == (12, 32, 32, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip[10], clip[0]) and not np.array_equal(clip[1], clip[0])
    (tmp_path / "sizes").mkdir()
    rows = gc.cache_sizes(tmp_path / "sizes", footage, frames=12)
    assert [r["cache"] for r in rows] == [
        "skeleton cache (float32)", "skeleton cache (float16)",
        "RGB person crops (256x256, GOP 16, CRF 20)", "face crops (112x112, GOP 16, CRF 20)",
    ]  # fmt: skip
    f32, f16, rgb, face = rows
    assert f32["frames"] == 2_092 * 60 * 25 and f32["bytes_per_frame"] == 137 * 3 * 4
    assert f32["gib"] == pytest.approx(3_138_000 * 1644 / 2**30) == 2 * f16["gib"]
    for r in (rgb, face):
        assert r["frames"] == round(18_232 * 2.5 * 25) and r["measured_on"] == "interview.mp4"
        assert r["gib"] == pytest.approx(r["frames"] * r["bytes_per_frame"] / 2**30)
        assert r["gib"] > 0
    assert rgb["bytes_per_frame"] > face["bytes_per_frame"]  # 256 px vs 112 px crops
    table = gc.caches_markdown(rows)
    assert "| skeleton cache (float32) | 3,138,000 (video frames) | 1,644 | 4.8 |" in table


def test_gpu_check_decode_rows_say_why_a_decoder_cannot_run(tmp_path: Path) -> None:
    """The NVDEC row of the check: where CUDA decoding cannot run (here: no GPU) the row says
    why instead of failing the check; the CPU row measures clips per second."""
    from types import SimpleNamespace

    from migalab.data.video.readers import torchcodec_problem

    gc = _gpu_check()
    cpu, cuda = gc.decode_check(tmp_path, SimpleNamespace(type="cuda"), clips=2)
    assert cpu["decoder"] == "torchcodec (cpu)" and cuda["decoder"] == "torchcodec (cuda)"
    assert cpu["clip"] == "16 of 62 frames, 256x256"
    if torchcodec_problem() is None:
        assert cpu["clips_per_s"] > 0 and cpu["frames_on"] == "cpu"
    assert cuda["skipped"] and "clips_per_s" not in cuda and "vs_cpu_worker" not in cuda


@pytest.mark.slow
def test_gpu_check_tiny_on_cpu(tmp_path: Path) -> None:
    """``gpu_check.py --device cpu --steps 1 --tiny``: the check's code on the CPU at the
    _synth sizes; every experiment has its rows, measured (nothing skipped on the CPU)."""
    out = tmp_path / "gpu_check.json"
    text = _run([str(SCRIPTS / "gpu_check.py"), "--device", "cpu", "--steps", "1", "--tiny",
                 "--out", str(out)], cwd=tmp_path)  # fmt: skip
    payload = _strict_json(out)
    rows = payload["rows"]
    assert payload["finished"] and payload["device"]["type"] == "cpu"
    assert [(r["experiment"], r["precision"]) for r in rows] == [
        (name, p) for name in GPU_CHECK_EXPERIMENTS
        for p in ("bf16", "fp32") if p == "bf16" or name == "agcn_joint"
    ]  # fmt: skip
    for r in rows:
        reason = r.get("skipped")
        assert reason is None, f"{r['experiment']} skipped: {reason}\n{r.get('traceback')}"
        assert r["step_ms"] > 0 and r["clips_per_s"] > 0 and r["batch_size"] == 2
        assert r["flops_per_step"] > 0 and r["tflops_per_s"] > 0
        assert r["mfu"] is None and r["peak_mem_gib"] is None  # no peak / CUDA memory on a CPU
    assert rows[0]["input"] == "(2, 41, 16, 24, 24) float32"  # System A: 41-keypoint heatmaps
    face = next(r for r in rows if r["experiment"] == "emotion_face")["input"]
    assert face["face"].endswith("uint8") and face["present"]["face"] == "(2,) bool"
    assert "system_b_emotion" in text and "MFU" in text and str(out) in text
    assert [r["decoder"] for r in payload["decode"]] == ["torchcodec (cpu)"]  # no NVDEC row
    assert "decode, torchcodec (cpu)" in text


@pytest.mark.slow
def test_gpu_check_plan_tiny(tmp_path: Path) -> None:
    """``gpu_check.py --plan --markdown``: FLOPs per clip, clips, epochs and hours, the MFU
    measured where a check's JSON gives one and labelled assumed elsewhere."""
    measured = tmp_path / "measured.json"
    measured.write_text(json.dumps({"device": {"name": "NVIDIA H100 80GB HBM3"}, "rows": [
        {"experiment": "agcn_joint", "precision": "bf16", "mfu": 0.125}]}))  # fmt: skip
    out = tmp_path / "plan.json"
    text = _run([str(SCRIPTS / "gpu_check.py"), "--plan", "--tiny", "--markdown",
                 "--experiments", "agcn_joint", "mamp_skeleton", "--measured", str(measured),
                 "--out", str(out)], cwd=tmp_path)  # fmt: skip
    payload = _strict_json(out)
    rows = {r["experiment"]: r for r in payload["rows"]}
    assert set(rows) == {"agcn_joint", "mamp_skeleton"}
    assert [c["gib"] > 0 for c in payload["caches"]] == [True] * 4  # disk sizes of the caches
    assert "| skeleton cache (float32) | 3,138,000 (video frames) |" in text
    for r in rows.values():
        assert r["gflop_per_clip_train"] > r["gflop_per_clip_val"] > 0 and r["h100_hours"] > 0
    assert rows["agcn_joint"]["mfu"] == 0.125 and "measured" in rows["agcn_joint"]["mfu_source"]
    assert rows["mamp_skeleton"]["mfu_source"] == "assumed"
    assert "| agcn_joint | train | 32 |" in text and "12% (measured (NVIDIA H100" in text
    assert "MFU 35% is ASSUMED" in text and "loader workers per GPU" in text
    for r in rows.values():  # the loader's rate measured, the workers that keep up with a GPU
        assert r["worker_clips_per_s"] > 0 and r["workers_per_gpu"] >= 1
        assert r["workers_per_gpu"] == math.ceil(r["gpu_clips_per_s"] / r["worker_clips_per_s"])


def test_pretrain_table_fusion_rows_take_the_maskfeat_encoder() -> None:
    """The pretraining table's token-fusion rows initialise their RGB stream from the MaskFeat
    checkpoint of ``mvit_rgb_synth``'s encoder, so their overrides must compose to that same
    encoder (a stream of another size refuses the checkpoint and the row is missing)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from migalab.utils.hydra import register_resolvers
    from migalab.utils.paths import config_dir

    spec = importlib.util.spec_from_file_location("_pretrain_table", SCRIPTS / "pretrain_table.py")
    assert spec and spec.loader
    sys.path.insert(0, str(SCRIPTS))
    try:
        table = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(table)
    finally:
        sys.path.remove(str(SCRIPTS))
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        fusion = compose("train", overrides=["experiment=system_b_mg_synth", table.VIDEO_FULL,
                                             *table.FUSION_MVIT])  # fmt: skip
        rgb = compose("train", overrides=["experiment=mvit_rgb_synth", table.VIDEO_FULL])
    GlobalHydra.instance().clear()
    stream = fusion.model.encoders.rgb
    for key in ("_target_", "preset", "temporal_size", "spatial_size", "drop_path"):
        assert stream[key] == rgb.model.encoder[key], key


def _posture_cache(root: Path, videos_per_class: int = 6, cue: float = 1.0) -> Path:
    """A skeleton cache laid out as migalab-prepare writes it (index.csv with split, video_id,
    file, emotion, height, width; one (T, 137, 3) array a video) whose lost videos drop the
    head ``cue`` x 20 px nearer the neck, with per-video posture differences and frame jitter,
    a missing frame (all zeros) and a missing joint in each."""
    rng = np.random.default_rng(0)
    lines = ["name,video_id,split,row,label,start,end,video_frames,height,width,emotion,file"]
    for split in ("train", "validate", "test"):
        (root / split).mkdir(parents=True)
        for i in range(2 * videos_per_class):
            vid, win = f"{split[:2]}{i:02d}", i % 2
            t = 40
            a = np.zeros((t, 137, 3), np.float32)
            base = {0: (640, 200), 1: (640, 270), 2: (550, 275), 5: (730, 275),
                    15: (625, 185), 16: (655, 185)}  # fmt: skip
            height = rng.normal(0, 2) + (0 if win else 20 * cue)
            for j, (x, y) in base.items():
                a[:, j, 0] = x + rng.normal(0, 1.5, t)
                a[:, j, 1] = y + rng.normal(0, 1.5, t) + (height if j in (0, 15, 16) else 0)
                a[:, j, 2] = 0.9
            a[3] = 0  # a frame OpenPose missed
            a[7, 16] = 0  # a missing eye
            np.save(root / split / f"{vid}.npy", a)
            lines.append(f"{vid}_0,{vid},{split},0,3,0,40,{t},720,1280,{win},{split}/{vid}.npy")
    (root / "index.csv").write_text("\n".join(lines) + "\n")
    (root / "meta.json").write_text('{"format_version": 1}\n')
    return root


def test_emotion_posture_probe_finds_a_posture_cue_and_only_one_that_is_there(
    tmp_path: Path,
) -> None:
    cache = _posture_cache(tmp_path / "cue")
    out = tmp_path / "probe.json"
    _run([str(SCRIPTS / "emotion_posture_probe.py"), str(cache), "--out", str(out)], cwd=tmp_path)
    result = json.loads(out.read_text())
    test = result["splits"]["test"]
    assert test["videos"] == 12 and test["auroc"] == 1.0 and test["acc"] >= 0.9
    assert test["single feature auroc"]["head drop"] == 1.0
    drop = result["head drop in 64-px input"]
    assert drop["win"]["mean"] > drop["lose"]["mean"] + 1.0
    # no cue: the probe must not invent one
    none = _posture_cache(tmp_path / "none", videos_per_class=20, cue=0.0)
    text = _run([str(SCRIPTS / "emotion_posture_probe.py"), str(none)], cwd=tmp_path)
    assert 0.25 <= json.loads(text)["splits"]["test"]["auroc"] <= 0.75


def test_emotion_posture_probe_names_a_cache_without_its_columns(tmp_path: Path) -> None:
    (tmp_path / "index.csv").write_text("name,video_id,split,file\n")
    (tmp_path / "meta.json").write_text('{"format_version": 1}\n')
    proc = subprocess.run([sys.executable, str(SCRIPTS / "emotion_posture_probe.py"),
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode != 0 and f"{tmp_path / 'index.csv'}" in proc.stderr
    assert "emotion" in proc.stderr


def test_emotion_posture_probe_needs_both_outcomes_in_train(tmp_path: Path) -> None:
    cache = _posture_cache(tmp_path / "cache", videos_per_class=2)
    index = cache / "index.csv"
    rows = [ln.split(",") for ln in index.read_text().splitlines()]
    col = rows[0].index("emotion")
    for row in rows[1:]:
        row[col] = "1" if row[2] == "train" else row[col]  # every train video won
    index.write_text("\n".join(",".join(r) for r in rows) + "\n")
    proc = subprocess.run([sys.executable, str(SCRIPTS / "emotion_posture_probe.py"), str(cache)],
                          cwd=tmp_path, capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode != 0 and "train split needs won and lost videos" in proc.stderr


def test_emotion_table_trains_the_scratch_fusion_only_when_asked_and_reports_a_finished_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``--from-scratch`` the from-scratch InterFusion is not trained, and a finished
    one is still reported; the fusion by MiGA's recipe names the face and context rows' best
    checkpoints and lr x 0.1."""
    spec = importlib.util.spec_from_file_location("_emotion_table", SCRIPTS / "emotion_table.py")
    assert spec and spec.loader
    monkeypatch.syspath_prepend(str(SCRIPTS))
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    trained: list[tuple[str, list[str]]] = []
    rng = np.random.default_rng(0)

    def write_run(run_dir: Path, csv_name: str) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        lines = ["video_id,n_clips,prob_win,label"]
        lines += [f"v{i},3,{rng.uniform():.3f},{i % 2}" for i in range(10)]
        (run_dir / csv_name).write_text("\n".join(lines) + "\n")
        balance = {"train": {"videos": 10, "videos_win": 5, "videos_lose": 5}}
        payload = {"ckpt_path": str(run_dir / "best.ckpt"), "balance": balance}
        (run_dir / "metrics.json").write_text(json.dumps(payload))

    def fake_train(name: str, experiment: str, seed: int, out: Path, overrides: list[str]) -> Path:
        trained.append((name, overrides))
        run_dir = out / f"seed{seed}" / table.slug(name)
        write_run(run_dir, "video_predictions.csv")
        return run_dir

    def fake_late(face: Path, context: Path, seed: int, out: Path, overrides: list[str]) -> Path:
        run_dir = out / f"seed{seed}" / table.slug(table.LATE)
        write_run(run_dir, "video_predictions_test.csv")
        return run_dir

    monkeypatch.setattr(table, "train", fake_train)
    monkeypatch.setattr(table, "late_fusion", fake_late)
    rows = table.one_seed(0, tmp_path, [], from_scratch=False)
    assert [n for n, _ in trained] == [table.FACE, table.CONTEXT, table.INTER_INIT]
    assert table.INTER not in {r["row"] for r in rows}
    init = dict(trained)[table.INTER_INIT]
    face_ckpt = tmp_path / "seed0" / table.slug(table.FACE) / "best.ckpt"
    assert f"model.encoders.face.init={face_ckpt}" in init
    assert "model.backbone_lr_mult=0.1" in init and dict(trained)[table.FACE] == []
    trained.clear()
    rows = table.one_seed(1, tmp_path, [], from_scratch=True)
    assert [n for n, _ in trained][-1] == table.INTER and dict(trained)[table.INTER] == []
    trained.clear()
    rows = table.one_seed(1, tmp_path, [], from_scratch=False)  # seed 1's scratch run finished
    assert table.INTER in [n for n, _ in trained] and rows[-1]["row"] == table.INTER
    assert "vs InterFusion from single streams" in rows[-1]
