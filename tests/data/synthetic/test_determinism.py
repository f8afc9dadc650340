"""Same seed -> byte-identical files (whatever the number of workers); new seed -> new data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from migalab.data.synthetic import SynthConfig, VideoSpec, generate_release, generate_video


def cfg(**kw) -> SynthConfig:
    base = dict(
        seed=5,
        num_videos={"train": 2, "validate": 1, "test": 1},
        clips_per_video=(2, 4),
        clip_frames=(16, 30),
        gap_frames=(4, 10),
        table_format="csv",
    )
    base.update(kw)
    return SynthConfig(**base)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "synth_meta.json" and not p.name.startswith(".")
    }


def test_same_seed_identical_bytes(tmp_path):
    generate_release(tmp_path / "a", cfg(), progress=False)
    generate_release(tmp_path / "b", cfg(workers=2), progress=False)
    fa, fb = files(tmp_path / "a"), files(tmp_path / "b")
    assert fa.keys() == fb.keys() and len(fa) == 9
    assert fa == fb


def test_different_seed_differs(tmp_path):
    generate_release(tmp_path / "a", cfg(), progress=False)
    generate_release(tmp_path / "b", cfg(seed=6), progress=False)
    fa, fb = files(tmp_path / "a"), files(tmp_path / "b")
    assert fa != fb
    ta = [v for k, v in fa.items() if k.endswith("_openpose.csv")]
    tb = [v for k, v in fb.items() if k.endswith("_openpose.csv")]
    assert not set(ta) & set(tb)


def test_video_is_independent_of_the_rest():
    spec = VideoSpec("0042", "train", 3, 1)
    a = generate_video(spec, cfg())
    b = generate_video(spec, cfg(num_videos={"train": 9, "validate": 0, "test": 0}))
    np.testing.assert_array_equal(a.table, b.table)
    assert a.clips == b.clips
    c = generate_video(VideoSpec("0043", "train", 3, 1), cfg())
    assert a.table.shape != c.table.shape or not np.array_equal(a.table, c.table)
