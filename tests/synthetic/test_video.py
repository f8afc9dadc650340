"""``migalab-synth --video``: ``<vid>.mp4`` renders the same motion as the table, frame for frame."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from migalab.synthetic import (
    SynthConfig,
    generate_release,
    generate_video,
    plan_release,
    release_is_current,
)
from migalab.synthetic.cli import build_parser, config_from_args, main
from migalab.synthetic.video import VideoRenderer, subject_look

av = pytest.importorskip("av")

#: ``SynthConfig().config_hash()`` and the hash of :func:`_hash_probe` observed before the
#: video fields existed: configs without video must keep them (existing releases stay current).
DEFAULT_HASH = "cdb887ffcb5b88fc"
PROBE_HASH = "c68a0482aeab0950"


def _hash_probe(**kw) -> SynthConfig:
    return SynthConfig(seed=3, num_videos={"train": 1, "validate": 0, "test": 0},
                       clips_per_video=(2, 3), table_format="csv", frame_size=(360, 640), **kw)  # fmt: skip


def tiny(**kw) -> SynthConfig:
    base = dict(
        seed=3,
        num_videos={"train": 1, "validate": 1, "test": 0},
        clips_per_video=(2, 3),
        clip_frames=(16, 40),
        gap_frames=(8, 20),
        table_format="csv",
        video=True,
        video_scale=0.5,  # 640x360: hands are large enough to check their pixels
    )
    base.update(kw)
    return SynthConfig(**base)


def decode(path: Path) -> tuple[np.ndarray, dict]:
    """All frames (T, H, W, 3) uint8 of an mp4 and its stream info (PyAV)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {"rate": s.average_rate, "size": (s.codec_context.height, s.codec_context.width)}
        frames, keys = [], []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            keys.append(bool(f.key_frame))
    info["keyframes"] = np.flatnonzero(keys)
    return np.stack(frames), info


def table_rows(path: Path) -> int:
    return len(np.loadtxt(path, delimiter=",", ndmin=2))


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> tuple[Path, SynthConfig, list]:
    """A tiny release with video, and per video (spec, result, decoded frames)."""
    root = tmp_path_factory.mktemp("synth_video") / "rel"
    cfg = tiny()
    generate_release(root, cfg, progress=False)
    videos = []
    for spec in plan_release(cfg):
        frames, _ = decode(root / spec.split / spec.vid / f"{spec.vid}.mp4")
        videos.append((spec, generate_video(spec, cfg), frames))
    return root, cfg, videos


def _video_px(res, cfg: SynthConfig) -> tuple[np.ndarray, float]:
    """Clean keypoints scaled to the video (T, 137, 2) and video pixels per cm."""
    (h, w), (fh, fw) = cfg.video_size, cfg.frame_size
    s = np.array([w / fw, h / fh])
    return (res.xy + 0.5) * s - 0.5, float(res.camera.scale * s.mean())


def _segment(xy: np.ndarray, a: int, b: int, n: int = 8) -> np.ndarray:
    f = np.linspace(0.0, 1.0, n)[None, :, None]
    return xy[:, a, None] + f * (xy[:, b, None] - xy[:, a, None])


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion (a pixel stays when it and its 8 neighbours are set)."""
    out = mask.copy()
    out[0, :] = out[-1, :] = out[:, 0] = out[:, -1] = False
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out[1:-1, 1:-1] &= mask[
                1 + dy : mask.shape[0] - 1 + dy, 1 + dx : mask.shape[1] - 1 + dx
            ]
    return out


def _skin_distance(window: np.ndarray, skin: np.ndarray) -> float:
    """Smallest L1 distance of the window's pixels to the subject's skin shades (k x skin)."""
    c = window.reshape(-1, 3).astype(float)
    k = np.clip(c @ skin / (skin @ skin), 0.55, 1.05)
    return float(np.abs(c - k[:, None] * skin).sum(1).min())


# ---------------------------------------------------------------------------------------
# Config, hash, CLI
# ---------------------------------------------------------------------------------------


def test_hash_unchanged_without_video():
    assert SynthConfig().config_hash() == DEFAULT_HASH
    assert _hash_probe().config_hash() == PROBE_HASH
    # video settings do not matter while video is off ...
    off = SynthConfig(video_scale=1.0, video_gop=25, video_crf=30)
    assert off.config_hash() == DEFAULT_HASH
    # ... and do when it is on
    on = SynthConfig(video=True)
    assert on.config_hash() != DEFAULT_HASH
    assert SynthConfig(video=True, video_scale=1.0).config_hash() != on.config_hash()
    assert SynthConfig(video=True, video_gop=25).config_hash() != on.config_hash()
    assert SynthConfig.from_dict(on.to_dict()) == on


def test_video_size_and_validation():
    assert SynthConfig().video_size == (180, 320)
    assert SynthConfig(video_scale=1.0).video_size == (720, 1280)
    assert SynthConfig(frame_size=(360, 640), video_scale=0.15).video_size == (54, 96)
    assert all(v % 2 == 0 for v in SynthConfig(frame_size=(361, 643), video_scale=0.33).video_size)
    for bad in ({"video_scale": 0.0}, {"video_scale": -1}, {"video_scale": 5.0},
                {"video_scale": 0.01}, {"video_gop": 0}, {"video_crf": 52}):  # fmt: skip
        with pytest.raises(ValueError):
            SynthConfig(**bad)


def test_cli_video(tmp_path):
    root = tmp_path / "rel"
    args = [str(root), "--format", "csv", "--videos-train", "1", "--videos-val", "0",
            "--videos-test", "0", "--clips-per-video", "2", "2", "--clip-frames", "16", "24",
            "--gap-frames", "4", "8", "--seed", "4", "--video", "--video-gop", "12",
            "--video-crf", "28", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    cfg = config_from_args(build_parser().parse_args(args))
    assert cfg.video and cfg.video_gop == 12 and cfg.video_crf == 28 and cfg.video_scale == 0.25
    assert release_is_current(root, cfg)
    meta = json.loads((root / "synth_meta.json").read_text())
    assert meta["video"]["size"] == [180, 320] and meta["video"]["gop"] == 12
    assert meta["video"]["fps"] == 25
    (vdir,) = (root / "train").iterdir()
    frames, info = decode(vdir / f"{vdir.name}.mp4")
    assert len(frames) == table_rows(vdir / f"{vdir.name}_openpose.csv")
    assert info["size"] == (180, 320) and frames.shape[1:] == (180, 320, 3)
    assert info["rate"] == 25
    np.testing.assert_array_equal(info["keyframes"], np.arange(0, len(frames), 12))
    assert not config_from_args(build_parser().parse_args([str(root)])).video


# ---------------------------------------------------------------------------------------
# The mp4 files
# ---------------------------------------------------------------------------------------


def test_mp4_frames_match_table(release):
    root, cfg, videos = release
    meta = json.loads((root / "synth_meta.json").read_text())
    assert meta["video"]["size"] == list(cfg.video_size) == [360, 640]
    for spec, res, frames in videos:
        d = root / spec.split / spec.vid
        rows = table_rows(d / f"{spec.vid}_openpose.csv")
        assert rows == len(res.table) == len(frames)
        _, info = decode(d / f"{spec.vid}.mp4")
        assert info["size"] == cfg.video_size and info["rate"] == 25
        assert info["keyframes"][0] == 0
    decord = pytest.importorskip("decord")
    spec, res, _ = videos[0]
    vr = decord.VideoReader(str(root / spec.split / spec.vid / f"{spec.vid}.mp4"))
    assert len(vr) == len(res.table) and vr.get_avg_fps() == pytest.approx(25.0)
    assert vr[0].shape == (360, 640, 3)


def test_subject_drawn_where_the_skeleton_is(release):
    """Body keypoints land on drawn pixels; the drawn silhouette above the table spans the
    keypoints (left, right, top) and is centred on them."""
    _, cfg, videos = release
    for spec, res, frames in videos:
        xy, ppc = _video_px(res, cfg)
        r = VideoRenderer(res, cfg)
        bg = r.background.astype(np.int16)
        table_row = int(r.table_row) - 2
        body = [0, 1, 3, 4, 6, 7]  # nose, neck, elbows, wrists
        for t in range(0, len(frames), 3):
            diff = np.abs(frames[t].astype(np.int16) - bg).sum(-1)
            p = np.round(xy[t, body]).astype(int)
            assert (diff[p[:, 1], p[:, 0]] > 40).all(), (spec.vid, t)
            ys, xs = np.nonzero(_erode(diff[:table_row] > 60))  # no stray edge pixels
            pts = xy[t, list(range(8)) + list(range(15, 137))]
            pts = pts[pts[:, 1] < table_row]
            left, right, top = xs.min() - 1, xs.max() + 1, ys.min() - 1
            assert -20 * ppc < left - pts[:, 0].min() < 2, (spec.vid, t)
            assert -2 < right - pts[:, 0].max() < 20 * ppc, (spec.vid, t)
            assert -16 * ppc < top - xy[t, 25:95, 1].min() < 0, (spec.vid, t)
            assert abs(xs.mean() - pts[:, 0].mean()) < 6 * ppc, (spec.vid, t)


def test_hand_pixels_follow_the_hand(release):
    """Where a visible hand is away from the body, the pixels at its palm are skin; at the
    same place in frames where no skin part is near, they are not."""
    _, cfg, videos = release
    checked = 0
    for spec, res, frames in videos:
        xy, ppc = _video_px(res, cfg)
        skin = np.array(subject_look(cfg.seed, spec.subject_id).skin, float)
        conf = res.table.reshape(-1, 137, 3)[..., 2]
        near = 6 * ppc + 3
        arm = {95: np.concatenate([_segment(xy, 5, 6), _segment(xy, 6, 7)], 1),
               116: np.concatenate([_segment(xy, 2, 3), _segment(xy, 3, 4)], 1)}  # fmt: skip
        head = np.concatenate([xy[:, 25:95], xy[:, [0, 1, 17, 18]], _segment(xy, 1, 33)], 1)
        all_skin = np.concatenate([xy[:, 95:137], head, arm[95], arm[116]], 1)
        for off, other in ((95, 116), (116, 95)):
            palm = xy[:, off + np.array([0, 5, 9, 13, 17])].mean(1)
            visible = (conf[:, off : off + 21] > 0).mean(1) >= 0.8
            others = np.concatenate([head, xy[:, other : other + 21], arm[other]], 1)
            clear = np.linalg.norm(others - palm[:, None], axis=-1).min(1) > near
            disp = np.linalg.norm(palm - np.median(palm, 0), axis=-1) * visible * clear
            a = int(np.argmax(disp))
            if disp[a] == 0:
                continue
            x, y = np.round(palm[a]).astype(int)
            empty = np.flatnonzero(np.linalg.norm(all_skin - palm[a], axis=-1).min(1) > near)
            if len(empty) == 0:
                continue
            d_a = _skin_distance(frames[a, y - 2 : y + 3, x - 2 : x + 3], skin)
            d_b = min(_skin_distance(frames[b, y - 2 : y + 3, x - 2 : x + 3], skin) for b in empty)
            assert d_a < 45, (spec.vid, off, a, d_a)
            assert d_b > d_a + 30, (spec.vid, off, a, d_a, d_b)
            checked += 1
    assert checked >= 2


def test_frames_in_table_order(release):
    """Decoded frame t is the rendering of table row t (not a neighbour)."""
    _, cfg, videos = release
    for spec, res, frames in videos:
        r = VideoRenderer(res, cfg)
        motion = np.abs(np.diff(res.xy[:, [4, 7]], axis=0)).sum((1, 2))
        motion = np.convolve(motion, np.ones(4), "valid")  # movement over t-2..t+2
        t = int(np.argmax(motion[:-1])) + 2
        clean = {k: np.asarray(r.draw(t + k), dtype=np.int16) for k in (-2, 0, 2)}
        moved = np.zeros(cfg.video_size, dtype=bool)  # pixels that change around t
        for k in (-2, 2):
            moved |= np.abs(clean[k] - clean[0]).sum(-1) > 30
        assert moved.sum() > 50, (spec.vid, t)
        err = {k: np.abs(frames[t][moved] - clean[k][moved]).mean() for k in clean}
        assert err[0] < 0.6 * min(err[-2], err[2]), (spec.vid, t, err)


def test_renderer_chunks_and_determinism(release):
    _, cfg, videos = release
    spec, res, _ = videos[0]
    r1, r2 = VideoRenderer(res, cfg), VideoRenderer(generate_video(spec, cfg), cfg)
    n = min(60, len(r1))
    a = r1.frames(0, n)
    b = np.concatenate([c for c, _ in zip(r2.chunks(size=25), range(3), strict=False)])[:n]
    assert a.shape == (n, 360, 640, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert sum(len(c) for c in r1.chunks(size=50)) == len(res.table)


# ---------------------------------------------------------------------------------------
# Tables untouched, currency, stale files
# ---------------------------------------------------------------------------------------


def _release_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix == ".csv"
    }


def test_tables_identical_with_and_without_video(release, tmp_path):
    root, cfg, _ = release
    plain = tmp_path / "plain"
    generate_release(plain, tiny(video=False), progress=False)
    fa, fb = _release_files(root), _release_files(plain)
    assert len(fa) == 5 and fa == fb  # 2 tables, 2 label files, emotion labels
    assert not list(plain.rglob("*.mp4"))
    assert len(list(root.rglob("*.mp4"))) == 2


def test_current_needs_mp4_and_stale_mp4_removed(release, tmp_path):
    root, cfg, _ = release
    copy = tmp_path / "rel"
    shutil.copytree(root, copy)
    assert release_is_current(copy, cfg)
    mp4s = sorted(copy.rglob("*.mp4"))
    mp4s[0].unlink()
    assert not release_is_current(copy, cfg)
    # a stale video folder of ours (with its mp4) that the new plan lacks is removed
    stale = copy / "test" / "0001"
    stale.mkdir(parents=True)
    for src in mp4s[1].parent.iterdir():
        shutil.copy(src, stale / src.name.replace(mp4s[1].parent.name, "0001"))
    # regenerating without video leaves no mp4 that could disagree with its table
    no_video = tiny(video=False)
    generate_release(copy, no_video, progress=False)
    assert not list(copy.rglob("*.mp4")) and not stale.exists()
    assert release_is_current(copy, no_video) and not release_is_current(copy, cfg)
    assert json.loads((copy / "synth_meta.json").read_text())["video"] is None


def test_smile_shows_teeth(release):
    """A smile parts the drawn lips and shows the upper teeth (bright pixels between the mouth
    corners); without a smile there are none."""
    import dataclasses

    from migalab.synthetic.video import _TEETH

    _, cfg, videos = release
    spec, res, _ = videos[0]
    t = len(res.table)
    smile = np.zeros(t)
    smile[t // 2 :] = 1.0
    r = VideoRenderer(dataclasses.replace(res, smile=smile), cfg)
    xy, _ = _video_px(res, cfg)
    counts = []
    for i in range(0, t, max(1, t // 24)):
        mouth = xy[i, 25 + 48 : 25 + 68]
        (x0, y0), (x1, y1) = np.floor(mouth.min(0)).astype(int), np.ceil(mouth.max(0)).astype(int)
        face_h = xy[i, 25 + 8, 1] - xy[i, 25 + 27, 1]
        box = r.frame(i)[y0 - 1 : y1 + int(0.4 * face_h) + 2, x0 - 1 : x1 + 2].astype(int)
        teeth = np.abs(box - np.array(_TEETH)).sum(-1) < 45
        counts.append((smile[i], int(teeth.sum())))
    assert all(n == 0 for s, n in counts if s == 0), counts
    shown = [n >= 2 for s, n in counts if s == 1]  # (a hand over the mouth may hide them)
    assert np.mean(shown) >= 0.8, counts


def test_render_version_in_hash_only_with_video(monkeypatch):
    import migalab.synthetic.config as config

    on, off = SynthConfig(video=True).config_hash(), SynthConfig().config_hash()
    monkeypatch.setattr(config, "RENDER_VERSION", config.RENDER_VERSION + 1)
    assert SynthConfig(video=True).config_hash() != on
    assert SynthConfig().config_hash() == off == DEFAULT_HASH
