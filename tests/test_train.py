"""End-to-end: each experiment trains (fast_dev_run) on a tiny synthetic release; a short real
run writes its results, and migalab-eval reproduces them from the checkpoint."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from migalab.eval import evaluate
from migalab.predict import check_submission, predict, submission_csv
from migalab.scoring.ensemble import fuse_scores, search_fusion_weights, simplex_grid
from migalab.train import train
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides, tiny_eval_overrides, tiny_video_overrides
from tests.test_configs import EXPERIMENTS

SYNTH_EXPERIMENTS = [e for e in EXPERIMENTS if e.endswith("_synth")]
#: emotion experiments: tests/test_emotion_train.py runs them
EMOTION_EXPERIMENTS = [e for e in EXPERIMENTS if "emotion" in e]
#: experiments with RGB input (System B): they train on the tiny release with videos
VIDEO_EXPERIMENTS = [
    e
    for e in EXPERIMENTS
    if e.startswith(("mvit", "x3d", "r3d", "framestack", "system_b"))
    and e not in EMOTION_EXPERIMENTS
]


def _tiny_video_model_overrides(experiment: str) -> list[str]:
    """CPU-sized encoders of the RGB experiments (MViT xs, 8-wide AGCNs, a 32-wide fusion)."""
    if experiment.startswith(("x3d", "r3d", "framestack")):  # the CPU encoders already
        return []
    if experiment.startswith("mvit"):
        return ["model.encoder.preset=xs"]
    # the fusion's RGB stream is FrameStack2D (no preset: its resnet10t at the tiny clip)
    return ["model.encoders.joint.base_channels=8",
            "model.encoders.bone.base_channels=8",
            "model.neck.dim=32", "model.neck.heads=4"]  # fmt: skip


#: tiny encoders by experiment prefix (default: an 8-wide AGCN / PoseC3D)
TINY_ENCODERS = {"stt": ["model.encoder.dim=16", "model.encoder.depth=1", "model.encoder.heads=2"]}


def _tiny_cpu_overrides(release: Path, cache: Path, experiment: str = "") -> list[str]:
    """CPU trainer, csv logger, the tiny synthetic release and a tiny encoder (8-wide AGCN)."""
    encoder = next((v for k, v in TINY_ENCODERS.items() if experiment.startswith(k)),
                   ["model.encoder.base_channels=8"])  # fmt: skip
    return [
        "trainer=cpu",
        "trainer.precision=32-true",
        "logger=csv",
        *tiny_data_overrides(release, cache),
        *encoder,
        "data.heatmap.test_clips=2",  # PoseC3D: 2 clips x flip per test clip, not 10
    ]


@pytest.mark.parametrize("experiment", VIDEO_EXPERIMENTS)
def test_fast_dev_run_video_experiments(
    experiment: str, tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    overrides = [
        f"experiment={experiment}", "debug=fdr", "trainer=cpu", "trainer.precision=32-true",
        "logger=csv", *tiny_video_overrides(tiny_video_release, tiny_video_cache),
        *_tiny_video_model_overrides(experiment),
    ]  # fmt: skip
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    payload, trainer = train(cfg)
    assert trainer.state.finished
    assert 0.0 <= payload["val"]["top1"] <= 1.0


@pytest.mark.parametrize(
    "experiment", [e for e in EXPERIMENTS if e not in VIDEO_EXPERIMENTS + EMOTION_EXPERIMENTS]
)
def test_fast_dev_run_every_experiment(
    experiment: str, tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    overrides = [
        f"experiment={experiment}",
        "debug=fdr",
        # real-data experiments run here on the tiny synthetic release, at a CPU size
        *_tiny_cpu_overrides(tiny_release, tiny_cache, experiment),
        "data=synthetic",
    ]
    if not experiment.endswith("_synth") and experiment.startswith(("posec3d", "system_a")):
        # PoseC3D at GPU size (48 frames, 56/64 px, blocks 4-6-3) takes minutes on 2 CPU cores
        overrides += ["model.encoder.stage_blocks=[1,1,1]", "data.num_frames=16",
                      "data.heatmap.size_train=32", "data.heatmap.size_eval=32"]  # fmt: skip
    cfg = compose_config("train", overrides, output_dir=tmp_path)
    payload, trainer = train(cfg)
    assert trainer.state.finished
    assert 0.0 <= payload["val"]["top1"] <= 1.0
    assert (tmp_path / "metrics.json").is_file()


def _short_run(release: Path, cache: Path, out: Path, stream: str) -> dict:
    overrides = [
        *_tiny_cpu_overrides(release, cache),
        f"data.stream={stream}",
        "trainer.max_epochs=2",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    cfg = compose_config("train", overrides, output_dir=out)
    payload, _ = train(cfg)
    return payload


def test_train_writes_results_and_eval_reproduces(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    payload = _short_run(tiny_release, tiny_cache, tmp_path / "joint", "joint")
    run = tmp_path / "joint"
    on_disk = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        for key in ("top1", "top5", "macro_f1", "mean_class_acc", "per_class_acc"):
            assert key in on_disk[split]
    assert (run / "config_resolved.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert Path(payload["ckpt_path"]).is_file()

    eval_cfg = compose_config(
        "eval",
        [f"ckpt_path={payload['ckpt_path']}", *tiny_eval_overrides(tiny_release, tiny_cache)],
        output_dir=tmp_path / "eval",
    )
    result = evaluate(eval_cfg)
    for split in ("val", "test"):
        for key in ("top1", "top5", "macro_f1", "mean_class_acc"):
            assert result[split][key] == pytest.approx(payload[split][key], abs=1e-6), (split, key)
    assert (tmp_path / "eval" / "metrics.json").is_file()


@pytest.fixture(scope="module")
def joint_bone_runs(
    tiny_release: Path, tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict, dict]:
    """Two short runs (joint and bone streams) whose checkpoints the fusion tests share."""
    root = tmp_path_factory.mktemp("streams")
    joint = _short_run(tiny_release, tiny_cache, root / "joint", "joint")
    bone = _short_run(tiny_release, tiny_cache, root / "bone", "bone")
    return joint, bone


def test_eval_fuses_joint_and_bone(
    joint_bone_runs: tuple[dict, dict], tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    joint, bone = joint_bone_runs
    cfg = compose_config(
        "eval",
        [f"ckpt_path=[{joint['ckpt_path']},{bone['ckpt_path']}]", "fusion.weights=[0.6,0.4]",
         "splits=[val]", *tiny_eval_overrides(tiny_release, tiny_cache)],
        output_dir=tmp_path / "eval",
    )  # fmt: skip
    result = evaluate(cfg)
    streams = result["val_streams"]
    assert len(streams) == 2
    for stream, ref in zip(streams.values(), (joint, bone), strict=True):
        assert stream["top1"] == pytest.approx(ref["val"]["top1"], abs=1e-6)
    assert 0.0 <= result["val"]["top1"] <= 1.0
    assert result["fusion"]["weights"] == [0.6, 0.4]


def test_fusion_weights_searched_on_val_then_used_for_submission(
    joint_bone_runs: tuple[dict, dict], tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    joint, bone = joint_bone_runs
    ckpts = f"ckpt_path=[{joint['ckpt_path']},{bone['ckpt_path']}]"
    where = tiny_eval_overrides(tiny_release, tiny_cache)
    cfg = compose_config(
        "eval",
        [ckpts, "fusion.search=true", "fusion.grid_step=0.25", *where],
        output_dir=tmp_path / "ev",
    )
    result = evaluate(cfg)
    saved = json.loads((tmp_path / "ev" / "fusion.json").read_text())
    assert saved["searched"] and saved["search_split"] == "val"
    assert saved["weights"] == result["fusion"]["weights"]
    assert sum(saved["weights"]) == pytest.approx(1.0)
    # the grid holds (1, 0) and (0, 1): the searched fusion is at least as good as either stream
    best_single = max(s["top1"] for s in result["val_streams"].values())
    assert result["val"]["top1"] >= best_single - 1e-9
    assert saved["search_metrics"]["top1"] == pytest.approx(result["val"]["top1"])

    out = tmp_path / "pred"
    pcfg = compose_config(
        "predict",
        [ckpts, f"fusion.from={tmp_path / 'ev' / 'fusion.json'}", *where[:2]],
        output_dir=out,
    )
    summary = predict(pcfg)
    rows = (out / "submission.csv").read_text().splitlines()
    assert rows[0] == "Id,Target"
    ids = [r.split(",")[0] for r in rows[1:]]
    targets = [int(r.split(",")[1]) for r in rows[1:]]
    assert len(ids) == summary["clips"] > 0
    assert ids == sorted(ids, key=lambda n: (n.split("_")[0], int(n.split("_")[1])))
    assert set(targets) <= set(range(32))  # 0-based, the challenge's format
    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert zf.namelist() == ["submission.csv"]
        assert zf.read("submission.csv").decode() == (out / "submission.csv").read_text()
    assert json.loads((out / "fusion.json").read_text())["weights"] == saved["weights"]
    # the submission's predictions equal the fused test scores of migalab-eval
    assert summary["top1_known_labels"] == pytest.approx(result["test"]["top1"], abs=1e-6)


def test_submission_label_formats() -> None:
    # the default is the challenge's (and the winners') format: 0-based, 31 = illustrative
    assert submission_csv(["0007_0", "0007_1"], [0, 31]) == "Id,Target\n0007_0,0\n0007_1,31\n"
    assert (
        submission_csv(["0007_0", "0007_1"], [0, 31], "raw") == "Id,Target\n0007_0,1\n0007_1,99\n"
    )
    with pytest.raises(ValueError, match="label_format"):
        submission_csv(["a"], [0], "letters")
    assert compose_config("predict", ["ckpt_path=x"]).submission.label_format == "index"


def test_submission_is_checked_against_the_clip_list() -> None:
    names = ["0007_0", "0007_1", "0008_0"]
    good = "Id,Target\n0007_0,0\n0007_1,31\n0008_0,5\n"
    check_submission(good, names)
    bad = {
        "Id,Target\n0007_0,0\n0007_1,31\n": "differ from the 3 clips",  # a clip missing
        "Id,Target\n0007_0,0\n0007_0,0\n0008_0,5\n": "more than once",
        "Id,Target\n0007_1,31\n0007_0,0\n0008_0,5\n": "out of order",
        "Id,Target\n0007_0,0\n0007_1,32\n0008_0,5\n": "not a index class id",
        "Id,Label\n0007_0,0\n": "header",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            check_submission(text, names)
    with pytest.raises(ValueError, match="not a raw class id"):
        check_submission("Id,Target\n0007_0,0\n0007_1,99\n0008_0,5\n", names, "raw")


def test_simplex_grid_and_search() -> None:
    grid = simplex_grid(3, 0.5)
    assert len(grid) == 6 and all(sum(w) == pytest.approx(1.0) for w in grid)
    with pytest.raises(ValueError, match="divide"):
        simplex_grid(2, 0.3)
    labels = torch.tensor([0, 1, 1, 0])
    good = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 3.0], [3.0, 0.0]])
    bad = -good
    weights, reached = search_fusion_weights([bad, good], labels, 2, step=0.5)
    assert weights == (0.0, 1.0) and reached["top1"] == 1.0


def test_fuse_scores_weights_and_space() -> None:
    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
    assert torch.allclose(fuse_scores([a, b], [1.0, 0.5], "logits"), a + 0.5 * b)
    probs = fuse_scores([a, b], None, "probs")
    assert torch.allclose(probs.sum(-1), torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="fusion weights"):
        fuse_scores([a, b], [1.0], "probs")


def test_weight_files_in_the_config_are_needed_only_by_a_fresh_fit(
    tiny_video_release: Path, tiny_video_cache: Path, tmp_path: Path
) -> None:
    """``model.encoder.pretrained=<file>``: a fresh fit loads it; evaluating or resuming the
    run's checkpoint after the file is gone works (the weights come from the checkpoint)."""
    from migalab.models.encoders.mvit import MViTEncoder

    weights = tmp_path / "mvit_xs.pth"
    torch.manual_seed(3)
    src = MViTEncoder("xs", temporal_size=4, spatial_size=32)
    torch.save(src.state_dict(), weights)
    overrides = [
        "experiment=mvit_rgb_synth", "trainer=cpu", "trainer.precision=32-true", "logger=csv",
        *tiny_video_overrides(tiny_video_release, tiny_video_cache), "model.encoder.preset=xs",
        f"model.encoder.pretrained={weights}", "callbacks.progress_bar.refresh_rate=0",
        "test=false",
    ]  # fmt: skip
    run = tmp_path / "run"
    payload, trainer = train(
        compose_config("train", [*overrides, "trainer.max_epochs=1"], output_dir=run)
    )
    weights.unlink()
    result = evaluate(compose_config("eval", [f"ckpt_path={payload['ckpt_path']}", "splits=[val]",
                                              *tiny_eval_overrides(tiny_video_release, tiny_video_cache)],
                                     output_dir=tmp_path / "ev"))  # fmt: skip
    assert result["val"]["top1"] == pytest.approx(payload["val"]["top1"], abs=1e-6)
    _, resumed = train(compose_config("train", [*overrides, "trainer.max_epochs=2",
                                                "ckpt_path=last"], output_dir=run))  # fmt: skip
    assert resumed.current_epoch == 2
    # a fresh fit does need the file, and says which
    with pytest.raises(FileNotFoundError, match=r"mvit_xs\.pth"):
        train(compose_config("train", [*overrides, "trainer.max_epochs=1"],
                             output_dir=tmp_path / "fresh"))  # fmt: skip
