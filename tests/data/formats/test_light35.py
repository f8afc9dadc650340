"""MiGA 2024-2026 35-joint tables: reading into the 137-point layout, hand sides from the data,
errors naming file and row, and prepare -> training on a synthetic release in this format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from migalab.data.formats.errors import FormatError
from migalab.data.formats.light35 import LIGHT35_OPENPOSE, read_light_table, write_light_table
from migalab.data.formats.miga2025 import read_openpose_table, video_files
from migalab.data.skeleton.layouts import LHAND_OFFSET, RHAND_OFFSET, get_layout


def _table137(frames: int = 12, seed: int = 0) -> np.ndarray:
    """A 137-point table with hands near their own wrists (fingertips 20 px from the wrist)."""
    rng = np.random.default_rng(seed)
    t = np.zeros((frames, 137, 3))
    t[:, :25, :2] = rng.uniform(100, 600, (frames, 25, 2))
    t[:, :25, 2] = rng.uniform(0.3, 1, (frames, 25))
    for offset, wrist in ((RHAND_OFFSET, 4), (LHAND_OFFSET, 7)):
        for k in (4, 8, 12, 16, 20):
            t[:, offset + k, :2] = t[:, wrist, :2] + rng.uniform(-20, 20, (frames, 2))
            t[:, offset + k, 2] = 0.8
    return t.reshape(frames, 411)


def test_round_trip_places_joints_at_their_137_positions(tmp_path: Path) -> None:
    table = _table137()
    path = write_light_table(tmp_path / "0001_light_hand.csv", table)
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 106 and first[0] == "0"
    got = read_openpose_table(path).reshape(-1, 137, 3)
    want = table.reshape(-1, 137, 3)
    kept = list(LIGHT35_OPENPOSE)
    np.testing.assert_allclose(got[:, kept], want[:, kept], atol=6e-3)
    others = np.setdiff1d(np.arange(137), kept)
    assert not got[:, others].any()  # face and other hand points: missing
    assert get_layout("light35").indices == LIGHT35_OPENPOSE


def test_hand_side_is_taken_from_the_data(tmp_path: Path) -> None:
    """A file whose 'right' fingertips sit at the left wrist is read with the hands swapped."""
    table = _table137()
    mirrored = table.reshape(-1, 137, 3).copy()
    for k in (4, 8, 12, 16, 20):  # exchange the hands' positions in the source
        r, left = RHAND_OFFSET + k, LHAND_OFFSET + k
        mirrored[:, [r, left]] = mirrored[:, [left, r]]
    path = write_light_table(tmp_path / "0002_light_hand.csv", mirrored.reshape(-1, 411))
    got = read_light_table(path).reshape(-1, 137, 3)
    for offset, wrist in ((RHAND_OFFSET, 4), (LHAND_OFFSET, 7)):
        d = np.linalg.norm(got[:, offset + 8, :2] - got[:, wrist, :2], axis=-1)
        assert (d < 30).all()  # every fingertip group is at its own wrist again


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "table has no rows"),
        ("0," + ",".join(["1"] * 104) + "\n", "row 1: 105 columns, expected 106"),
        ("0," + ",".join(["1"] * 104) + ",x\n", "row 1: non-numeric cell 'x'"),
        ("0," + ",".join(["1"] * 104) + ",nan\n", "row 1: column 106: value is nan"),
        ("1.5," + ",".join(["1"] * 105) + "\n", "row 1: frame index 1.5 is not a frame"),
        ("3," + ",".join(["1"] * 105) + "\n3," + ",".join(["1"] * 105) + "\n",
         "row 2: frame 3 appears twice"),
    ],
)  # fmt: skip
def test_bad_tables_name_file_and_row(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "0003_light_hand.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=rf"0003_light_hand\.csv: {message}"):
        read_light_table(path)


def test_video_folder_finds_the_light_table(tmp_path: Path) -> None:
    folder = tmp_path / "0005"
    write_light_table(folder / "0005_light_hand.csv", _table137())
    assert video_files(folder, "train").table == folder / "0005_light_hand.csv"


def test_gaps_in_frame_indices_stay_missing(tmp_path: Path) -> None:
    path = tmp_path / "0004_light.csv"
    row = ",".join(["5"] * 105)
    path.write_text(f"0,{row}\n2,{row}\n")
    got = read_openpose_table(path).reshape(-1, 137, 3)
    assert len(got) == 3 and got[0, 0, 2] == 5 and not got[1].any()


def test_prepare_and_train_on_a_35_joint_release(tmp_path: Path) -> None:
    """migalab-synth --format light -> prepare -> fast_dev_run with the light35 layout."""
    from migalab.synthetic import SynthConfig, generate_release
    from migalab.train import train
    from migalab.utils.hydra import compose_config
    from tests.conftest import TINY_SYNTH

    release = tmp_path / "release"
    generate_release(
        release, SynthConfig(**{**TINY_SYNTH, "table_format": "light"}), progress=False
    )
    assert list(release.glob("train/*/*_light_hand.csv"))
    assert not list(release.glob("train/*/*_openpose.*"))
    cfg = compose_config(
        "train",
        ["data=imigue", f"data.release_root={release}", f"data.cache_dir={tmp_path / 'cache'}",
         "data.num_workers=0", "data.pin_memory=false", "data.batch_size=8", "debug=fdr",
         "trainer=cpu", "logger=csv", "model.encoder.base_channels=8", "data.layout=light35"],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    payload, trainer = train(cfg)
    assert trainer.state.finished and payload["val"]["num_samples"] > 0
    assert trainer.lightning_module.encoder.num_nodes == 35
