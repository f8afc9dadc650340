"""target=emotion: video-level labels, label-file overrides, the no-leakage check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from migalab.data.datamodule import ClipDataModule
from migalab.data.formats.errors import FormatError
from migalab.data.formats.miga2025 import (
    read_emotion_labels,
    read_video_labels,
    read_video_subjects,
)
from migalab.data.splits import check_disjoint_splits, label_balance
from tests.conftest import TINY_SYNTH


def _dm(release: Path, cache: Path, **kw: object) -> ClipDataModule:
    args = dict(release_root=str(release), cache_dir=str(cache), synthetic=TINY_SYNTH,
                num_frames=16, batch_size=4, num_workers=0, target="emotion")  # fmt: skip
    args.update(kw)
    return ClipDataModule(**args)


def _copy_cache(cache: Path, tmp_path: Path, edit) -> Path:  # noqa: ANN001
    out = tmp_path / "cache"
    shutil.copytree(cache, out)
    index = pd.read_csv(out / "index.csv", dtype={"video_id": str})
    edit(index)
    index.to_csv(out / "index.csv", index=False)
    return out


def test_emotion_batches_carry_video_labels(tiny_release: Path, tiny_cache: Path) -> None:
    dm = _dm(tiny_release, tiny_cache)
    dm.setup("fit")
    assert dm.num_classes == 2
    truth = read_emotion_labels(tiny_release / "emotion_labels.csv")
    ds = dm.datasets["train"]
    for i in range(len(ds)):
        assert ds.labels[i] == truth[ds.video_ids[ds.videos[i]]]
    batch = next(iter(dm.val_dataloader()))
    assert set(batch["label"].tolist()) <= {0, 1}
    assert batch["video"].dtype == torch.long and batch["video"].shape == batch["label"].shape
    vds = dm.datasets["val"]
    for i, v in zip(batch["index"].tolist(), batch["video"].tolist(), strict=True):
        assert vds.clip_name(i).startswith(vds.video_ids[v])
    bal = dm.emotion_balance["train"]
    assert bal["clips"] == len(ds) and bal["videos"] == len(ds.video_ids)
    assert bal["videos_win"] + bal["videos_lose"] == bal["videos"]
    # the gesture target is unchanged: no `video` entry, class labels
    g = ClipDataModule(release_root=str(tiny_release), cache_dir=str(tiny_cache),
                       synthetic=TINY_SYNTH, num_frames=16, batch_size=4)  # fmt: skip
    g.setup("fit")
    assert "video" not in g.datasets["val"][0] and g.num_classes == 32


def test_emotion_label_file_overrides(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_release, tiny_cache)
    dm.setup("fit")
    vid = dm.datasets["train"].video_ids[0]
    old = int(dm.datasets["train"].labels[dm.datasets["train"].videos == 0][0])
    csv = tmp_path / "labels.csv"
    csv.write_text(f"video_id,label\n{vid},{'lose' if old else 'win'}\n")
    dm2 = _dm(tiny_release, tiny_cache, emotion_labels=str(csv))
    dm2.setup("fit")
    ds = dm2.datasets["train"]
    assert (ds.labels[ds.videos == 0] == 1 - old).all()
    assert (ds.labels[ds.videos != 0] == dm.datasets["train"].labels[ds.videos != 0]).all()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("video_id,emotion\n0001,win\n", r"header must be video_id,label; missing \['label'\]"),
        ("video_id,label\n0001,draw\n", r"row 2.*label 'draw' is not win or lose or 1 or 0"),
        ("video_id,label\n0001,win\n0002,0\n0001,0\n", r"row 4.*video 0001 listed again"),
    ],
)
def test_bad_video_label_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=match):
        read_video_labels(path)


def test_video_label_values(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("video_id,label,note\n0001,WIN,x\n0002,lose,\n0003,1,\n0004,0,\n0001,1,\n")
    assert read_video_labels(path) == {"0001": 1, "0002": 0, "0003": 1, "0004": 0}


def test_unknown_emotion_is_refused_in_training(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    def edit(index: pd.DataFrame) -> None:
        vid = index.loc[index["split"] == "train", "video_id"].iloc[0]
        index.loc[index["video_id"] == vid, "emotion"] = -1
        edit.vid = vid

    cache = _copy_cache(tiny_cache, tmp_path, edit)
    with pytest.raises(
        ValueError, match=rf"train clip\(s\).*no emotion label \(videos {edit.vid}\)"
    ):
        _dm(tiny_release, cache).setup("fit")


def test_no_leakage_check() -> None:
    check_disjoint_splits({"train": ["0001", "0001", "0002"], "val": ["0003"], "test": []})
    with pytest.raises(ValueError, match=r"1 video\(s\).*0002 \(train and test\)"):
        check_disjoint_splits({"train": ["0001", "0002"], "val": ["0003"], "test": ["0002"]})
    with pytest.raises(ValueError, match=r"subject\(s\).*p7 \(train and val\)"):
        check_disjoint_splits({"train": ["p7"], "val": ["p7"]}, kind="subject")
    assert label_balance([1, 1, 0, -1], [0, 0, 1, 2]) == {
        "clips": 4, "videos": 3, "videos_win": 1, "videos_lose": 1, "videos_unknown": 1}  # fmt: skip


def test_leaking_video_is_refused(tiny_release: Path, tiny_cache: Path, tmp_path: Path) -> None:
    def edit(index: pd.DataFrame) -> None:
        vid = index.loc[index["split"] == "validate", "video_id"].iloc[0]
        row = index.index[index["video_id"] == vid][0]
        index.loc[row, "split"] = "train"  # one clip of a validation video moved to train
        edit.vid = vid

    cache = _copy_cache(tiny_cache, tmp_path, edit)
    with pytest.raises(ValueError, match=rf"{edit.vid} \(train and val\)"):
        _dm(tiny_release, cache).setup("fit")


def test_subjects_are_checked_for_leakage(
    tiny_release: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    # the synthetic release knows its subjects (synth_meta.json) and never splits one
    dm = _dm(tiny_release, tiny_cache)
    dm.setup("fit")  # no error: video- and subject-disjoint
    ids = [v for ds in dm.datasets.values() for v in ds.video_ids]
    synth = dm.video_subjects()
    assert set(synth) >= set(ids)
    split_of = {v: key for key, ds in dm.datasets.items() for v in ds.video_ids}
    assert all(
        split_of[a] == split_of[b] for a in ids for b in ids if synth[a] == synth[b]
    )  # the check has something to check: some subjects have several videos
    assert len({synth[v] for v in ids}) < len(ids)
    # a subjects file (here a labels file with a subject column) where a train video and a
    # val video show the same player is refused, naming the subject and the splits
    train_vid, val_vid = dm.datasets["train"].video_ids[0], dm.datasets["val"].video_ids[0]
    rows = [
        f"{v},win,{'same' if v in (train_vid, val_vid) else f'p{i}'}" for i, v in enumerate(ids)
    ]
    path = _write(tmp_path / "labels.csv", "video_id,label,subject\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"1 subject\(s\).*same \(train and val\)"):
        _dm(tiny_release, tiny_cache, subjects=str(path)).setup("fit")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("video_id,label\n0001,win\n", r"missing \['subject'\]"),
        ("video_id,subject\n0001,\n", "row 2.*empty"),
        ("video_id,subject\n0001,a\n0001,b\n", "row 3.*0001 listed again"),
    ],
)
def test_bad_subject_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "subjects.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=match):
        read_video_subjects(path)
    assert read_video_subjects(_write(tmp_path / "ok.csv", "video_id,subject,x\n0001,p1,9\n")) == {
        "0001": "p1"
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
