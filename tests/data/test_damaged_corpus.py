"""A release of one good video and one video per damage class, through prepare -> datamodule ->
a training step: every video is either kept (with its clips) or skipped with its file named and
the reason -- nothing silent, no traceback.

The table below lists each defect class and its outcome."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from migalab.data.cache import SkeletonCache
from migalab.data.formats.miga2025 import write_openpose_table
from migalab.data.prepare import prepare_release

FRAMES = 40
GOOD_LABELS = "6,0,9\n12,10,19\n99,20,29\n"


def _table(seed: int, frames: int = FRAMES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    table = rng.uniform(0, 700, (frames, 411))
    table[:, 2::3] = rng.uniform(0, 1, (frames, 137))
    return table


def _csv_text(table: np.ndarray) -> str:
    return "".join(",".join(f"{v:.3f}" for v in row) + "\n" for row in table)


def _bad_cell(value: str) -> str:
    lines = _csv_text(_table(3)).splitlines()
    cells = lines[4].split(",")
    cells[10] = value
    lines[4] = ",".join(cells)
    return "\n".join(lines) + "\n"


#: video id -> (what is damaged, table text or None (good csv table), label text,
#:              expected outcome: ("kept", clips) or ("skipped", file name, reason substring)
#:              or ("warned", file name, reason substring))
CORPUS: dict[str, tuple] = {
    "0001": ("good video", None, GOOD_LABELS, ("kept", 3)),
    "0002": ("empty table", "", GOOD_LABELS, ("skipped", "0002_openpose.csv", "no rows")),
    "0003": (
        "binary table",
        b"\x00\xff\x13binary\x00" * 50,
        GOOD_LABELS,
        ("skipped", "0003_openpose.csv", "unreadable"),
    ),
    "0004": (
        "short rows (410 columns)",
        "\n".join(",".join(["1"] * 410) for _ in range(FRAMES)),
        GOOD_LABELS,
        ("skipped", "0004_openpose.csv", "410 columns"),
    ),
    "0005": (
        "extra columns (412)",
        "\n".join(",".join(["1"] * 412) for _ in range(FRAMES)),
        GOOD_LABELS,
        ("skipped", "0005_openpose.csv", "412 columns"),
    ),
    "0006": ("text cell", _bad_cell("abc"), GOOD_LABELS, ("skipped", "0006_openpose.csv", "row 5")),
    "0007": ("NaN cell", _bad_cell("nan"), GOOD_LABELS, ("skipped", "0007_openpose.csv", "row 5")),
    "0008": ("inf cell", _bad_cell("inf"), GOOD_LABELS, ("skipped", "0008_openpose.csv", "row 5")),
    "0009": (
        "header row",
        ",".join(f"c{i}" for i in range(411)) + "\n" + _csv_text(_table(9)),
        GOOD_LABELS,
        ("skipped", "0009_openpose.csv", "row 1"),
    ),
    "0010": (
        "truncated table (last row cut)",
        _csv_text(_table(10))[:-2000],
        GOOD_LABELS,
        ("skipped", "0010_openpose.csv", f"row {FRAMES}"),
    ),
    "0011": ("end < start", None, "6,9,3\n", ("skipped", "0011_label.csv", "end frame 3 < start")),
    "0012": ("negative start", None, "6,-2,3\n", ("skipped", "0012_label.csv", "negative start")),
    "0013": (
        "interval past the video's end",
        None,
        f"6,0,{FRAMES + 5}\n",
        ("skipped", "0013_label.csv", "past the last frame"),
    ),
    "0014": ("class id 0", None, "0,0,9\n", ("skipped", "0014_label.csv", "class")),
    "0015": ("class id 32", None, "32,0,9\n", ("skipped", "0015_label.csv", "class")),
    "0016": (
        "two-field row in train (no class)",
        None,
        "6,0,9\n10,19\n",
        ("skipped", "0016_label.csv", "without a class"),
    ),
    "0017": (
        "empty class in train",
        None,
        ",0,9\n",
        ("skipped", "0017_label.csv", "without a class"),
    ),
    "0018": ("four-field row", None, "6,0,9,1\n", ("skipped", "0018_label.csv", "4 fields")),
    "0019": ("text frame", None, "6,zero,9\n", ("skipped", "0019_label.csv", "start frame")),
    "0020": (
        "absurd coordinates (1e30)",
        "ABSURD",
        GOOD_LABELS,
        ("skipped", "0020_openpose.csv", "not a pixel"),
    ),
    "0021": ("empty label file", None, "", ("warned", "0021_label.csv", "no intervals")),
    "0022": (
        "non-UTF-8 label bytes",
        None,
        b"6,0,9\n\xff\xfe,1,2\n",
        ("skipped", "0022_label.csv", "unreadable"),
    ),
    "0023": (
        "CRLF + BOM + blank lines (benign)",
        None,
        "\ufeff6,0,9\r\n\r\n12,10,19\r\n",
        ("kept", 2),
    ),
    "0024": ("duplicated label rows (kept as given)", None, "6,0,9\n6,0,9\n", ("kept", 2)),
    "0025": ("overlapping intervals (kept as given)", None, "6,0,19\n12,10,29\n", ("kept", 2)),
    "0026": ("no label file", None, None, ("skipped", "0026_label.csv", "no such file")),
    "0027": ("no table file", "MISSING", GOOD_LABELS, ("skipped", "0027", "no 0027_openpose")),
    "0028": ("symlinked video folder (followed)", "SYMLINK", GOOD_LABELS, ("kept", 3)),
}


def _build(root: Path) -> None:
    split = root / "train"
    for vid, (_, table, labels, _) in CORPUS.items():
        folder = split / vid
        if table == "SYMLINK":
            target = root / "elsewhere" / vid
            target.mkdir(parents=True)
            write_openpose_table(target / f"{vid}_openpose.csv", _table(int(vid)))
            (target / f"{vid}_label.csv").write_text(labels)
            split.mkdir(parents=True, exist_ok=True)
            os.symlink(target, folder)
            continue
        folder.mkdir(parents=True)
        path = folder / f"{vid}_openpose.csv"
        if table is None:
            write_openpose_table(path, _table(int(vid)))
        elif table == "ABSURD":
            t = _table(int(vid))
            t[12, 30] = 1e30
            write_openpose_table(path, t)
        elif isinstance(table, bytes):
            path.write_bytes(table)
        elif table != "MISSING":
            path.write_text(table)
        if isinstance(labels, bytes):
            (folder / f"{vid}_label.csv").write_bytes(labels)
        elif labels is not None:
            (folder / f"{vid}_label.csv").write_text(labels, newline="")
    # a labelled validation split with one good video, so training can validate
    val = root / "validate" / "0100"
    val.mkdir(parents=True)
    write_openpose_table(val / "0100_openpose.csv", _table(100))
    (val / "0100_label.csv").write_text(GOOD_LABELS)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("corpus") / "release"
    _build(root)
    cache = root.parent / "cache"
    result = prepare_release(root, cache, splits=("train", "validate"), progress=False)
    return root, cache, result


@pytest.mark.parametrize("vid", list(CORPUS))
def test_each_damaged_video_is_kept_or_named(corpus, vid: str) -> None:
    root, cache, result = corpus
    what, _, _, expected = CORPUS[vid]
    skipped = [(f, m) for f, m in result.skipped if f"/{vid}/" in f or f.endswith(f"/{vid}")]
    warned = [(f, m) for f, m in result.warnings if f"/{vid}/" in f]
    clips = SkeletonCache(cache).index
    kept = int((clips["video_id"].astype(str).str.zfill(4) == vid).sum())
    if expected[0] == "kept":
        assert not skipped and kept == expected[1], (what, skipped)
    else:
        kind, file, reason = expected
        found = skipped if kind == "skipped" else warned
        assert len(found) == 1, (what, result.skipped, result.warnings)
        ((path, message),) = found
        assert file in path and reason in message, (what, path, message)
        assert "Traceback" not in message
        assert kept == 0


def test_the_corpus_trains(corpus, tmp_path: Path) -> None:
    """The kept videos go through the datamodule and a training step."""
    from migalab.train import train
    from migalab.utils.hydra import compose_config

    root, cache, _ = corpus
    cfg = compose_config(
        "train",
        ["data=imigue", f"data.release_root={root}", f"data.cache_dir={cache}",
         "data.num_workers=0", "data.pin_memory=false",
         "data.persistent_workers=false", "data.batch_size=4", "debug=fdr", "trainer=cpu",
         "logger=csv", "model.encoder.base_channels=8", "test=false"],
        output_dir=tmp_path,
    )  # fmt: skip
    payload, trainer = train(cfg)
    assert trainer.state.finished and payload["val"]["num_samples"] == 3
