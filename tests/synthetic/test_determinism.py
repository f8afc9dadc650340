"""Same seed -> byte-identical files (whatever the number of workers); new seed -> new data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from migalab.synthetic import SynthConfig, VideoSpec, generate_release, generate_video


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


def test_hand_miss_only_removes_hand_points():
    """SynthConfig.hand_miss: body and face untouched, hands gone in whole videos or in bursts
    covering about the asked share of frames, confidences of the rest lowered (>= 0.05)."""
    from migalab.synthetic.release import plan_release
    from migalab.synthetic.sequence import miss_hands

    cfg = SynthConfig(seed=3, num_videos={"train": 1, "validate": 0, "test": 0},
                      clips_per_video=(30, 30))  # fmt: skip
    spec = plan_release(cfg)[0]
    table = generate_video(spec, cfg).table
    assert miss_hands(table, cfg.seed, spec.vid, (0.0, 0.0)) is table
    every = miss_hands(table, cfg.seed, spec.vid, (1.0, 0.0)).reshape(-1, 137, 3)
    assert not every[:, 95:].any()
    np.testing.assert_array_equal(every[:, :95], table.reshape(-1, 137, 3)[:, :95])
    assert not miss_hands(table, cfg.seed, spec.vid, (0.0, 1.0)).reshape(-1, 137, 3)[:, 95:].any()
    before = table.reshape(-1, 137, 3)
    after = miss_hands(table, cfg.seed, spec.vid, (0.0, 0.4)).reshape(-1, 137, 3)
    np.testing.assert_array_equal(after[:, :95], before[:, :95])
    for hand in (slice(95, 116), slice(116, 137)):
        seen_before = (before[:, hand, 2] > 0).any(1)
        lost = 1.0 - (after[:, hand, 2] > 0).any(1).sum() / seen_before.sum()
        assert 0.2 < lost < 0.6, lost  # ~0.4 of the frames, Poisson bursts
        kept = after[:, hand, 2][after[:, hand, 2] > 0]
        assert kept.min() >= 0.05 - 1e-6
        assert kept.mean() < before[:, hand, 2][before[:, hand, 2] > 0].mean()
    # the same video always loses the same frames (its own stream)
    again = miss_hands(table, cfg.seed, spec.vid, (0.0, 0.4))
    np.testing.assert_array_equal(again.reshape(-1, 137, 3), after)
