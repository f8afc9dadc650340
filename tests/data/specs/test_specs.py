"""Dataset specs: lookup, the clip-level releases (2023 npy, pyskl) through prepare, the cache and
the datamodule, and a dataset of one's own added as one spec + one yaml."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import hydra
import numpy as np
import pytest

from migalab.data.cache import SkeletonCache
from migalab.data.formats.npy2023 import read_npy2023_split, split_paths, write_npy2023
from migalab.data.formats.pyskl import read_pyskl, write_pyskl
from migalab.data.prepare import main as prepare_main
from migalab.data.specs import BUILTIN_DATASETS, get_dataset
from migalab.data.specs.base import is_builtin
from migalab.utils.hydra import compose_config
from tests.conftest import tiny_data_overrides
from tests.test_console_scripts import _ok, run_script


def _records(cache: Path, split: str, layout: str, n: int = 6) -> list:
    c = SkeletonCache(cache).subset(split)
    return [c.load_clip(i, layout) for i in range(min(n, len(c)))]


def test_builtin_specs() -> None:
    for name in BUILTIN_DATASETS:
        spec = get_dataset(name)
        assert spec.name == name and spec.num_classes == 32 == len(spec.class_names)
        assert set(spec.splits) == {"train", "val", "test"}
        assert is_builtin(name)
    assert get_dataset("miga2025").raw_label(31) == 99
    assert get_dataset("miga2023_npy").raw_label(31) == 31  # 0-based release
    with pytest.raises(ValueError, match="outside"):
        get_dataset("miga2025").raw_label(32)
    with pytest.raises(KeyError, match="miga2025"):
        get_dataset("imigue2099")
    with pytest.raises(TypeError, match="not a DatasetSpec"):
        get_dataset("migalab.data.specs.base:BUILTIN_DATASETS")
    assert not is_builtin("evil.module:SPEC")
    assert is_builtin("migalab.data.specs.synthetic:SPEC")
    assert not is_builtin("migalab.data.specs.base:BUILTIN_DATASETS")  # exact, not a prefix


def test_npy2023_release_prepares_into_the_cache(tiny_cache: Path, tmp_path: Path) -> None:
    """<split>_data.npy + <split>_label.pkl -> migalab-prepare --dataset miga2023_npy -> a
    cache whose clips are the reader's, value for value, in the release's joint layout."""
    root = tmp_path / "release"
    root.mkdir()
    for split, src in (("train", "train"), ("val", "validate")):
        recs = [r.replace(keypoint=r.keypoint[:, :20], keypoint_score=r.keypoint_score[:, :20],
                          end=r.start + 19) for r in _records(tiny_cache, src, "imigue22")]  # fmt: skip
        write_npy2023(*split_paths(root, split), recs)
    out = tmp_path / "cache"
    assert prepare_main([str(root), str(out), "--dataset", "miga2023_npy", "--quiet"]) == 0
    cache = SkeletonCache(out)
    assert cache.layout == "imigue22" and cache.splits == ["train", "val"]
    want = read_npy2023_split(root, "val")
    got = list(cache.subset("val").records())
    assert [r.name for r in got] == [r.name for r in want]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.keypoint, b.keypoint)
        np.testing.assert_array_equal(a.keypoint_score, b.keypoint_score)
        assert a.label == b.label and a.img_shape == (1080, 1920)
    with pytest.raises(ValueError, match="holds imigue22 joints"):
        cache.load_clip(0, "mg36")
    assert get_dataset("miga2023_npy").is_current(root, out)
    # a missing test split is noted, not an error; the cache is current until a file changes
    assert prepare_main([str(root), str(out), "--dataset", "miga2023_npy", "--quiet"]) == 0
    os.utime(split_paths(root, "val")[0], ns=(1, 1))
    assert not get_dataset("miga2023_npy").is_current(root, out)


def test_pyskl_pickle_trains_through_the_datamodule(tiny_cache: Path, tmp_path: Path) -> None:
    """A pyskl pickle with clips of 1 and 2 persons: persons are padded with score 0 in the
    cache (as pyskl pads them) and batches come out of data=pyskl."""
    train = _records(tiny_cache, "train", "imigue22", 8)
    two = train[0].replace(
        name="two_people", keypoint=np.concatenate([train[0].keypoint] * 2),
        keypoint_score=np.concatenate([train[0].keypoint_score] * 2),
    )  # fmt: skip
    pkl = write_pyskl(tmp_path / "imigue.pkl", {
        "train": [*train, two], "val": _records(tiny_cache, "validate", "imigue22"),
    })  # fmt: skip
    out = tmp_path / "cache"
    cfg = compose_config("train", [
        "data=pyskl", f"data.release_root={pkl}", f"data.cache_dir={out}",
        "data.splits={train:train,val:val}", "data.num_workers=0",
        "data.persistent_workers=false", "data.batch_size=4", "data.num_persons=2",
    ], output_dir=tmp_path)  # fmt: skip
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    cache = SkeletonCache(out)
    assert cache.layout == "imigue22"
    one, both = cache.subset("train").load_clip(0), cache.subset("train").load_clip(len(train))
    assert one.keypoint.shape[0] == 2 and not one.keypoint_score[1].any()  # padded person
    np.testing.assert_array_equal(both.keypoint, read_pyskl(pkl)["train"][-1].keypoint)
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["x"].shape) == (4, 3, 32, 22, 2)
    assert dm.num_classes == 32 and dm.class_names[31] == "illustrative"


TOY_SPEC = '''
"""A toy release: <root>/<split>.npz with keypoint (N, T, 22, 3) and label (N,), 3 classes."""
from pathlib import Path
from functools import partial

import numpy as np

from migalab.data.prepare.clip_release import is_clip_cache_current, prepare_clip_release
from migalab.data.record import ClipRecord
from migalab.data.specs import DatasetSpec


def files(root, splits):
    return [Path(root) / f"{s}.npz" for s in splits if (Path(root) / f"{s}.npz").is_file()]


def read(root, split):
    data = np.load(Path(root) / f"{split}.npz")
    kp, labels = data["keypoint"], data["label"]
    return [
        ClipRecord(name=f"{split}_{i}", video_id=f"{split}_{i}", start=0, end=kp.shape[1] - 1,
                   label=int(labels[i]), keypoint=kp[i][None, ..., :2].copy(),
                   keypoint_score=kp[i][None, ..., 2].copy(), img_shape=(100, 100),
                   layout="imigue22")
        for i in range(len(kp))
    ]


SPEC = DatasetSpec(
    name="toy", description="toy npz release", class_names=("wave", "nod", "shrug"),
    prepare=partial(prepare_clip_release, read=read, files=files),
    is_current=partial(is_clip_cache_current, files=files),
    splits={"train": "train", "val": "val", "test": "test"}, layout="imigue22",
    img_shape=(100, 100),
)
'''

TOY_YAML = """
defaults:
  - imigue
  - _self_
dataset: toy_dataset:SPEC
release_root: {root}
cache_dir: {cache}
layout: imigue22
img_shape: [100, 100]
num_workers: 0
num_frames: 8
batch_size: 4
eval_batch_size: 4
"""


@pytest.mark.slow  # a migalab-train subprocess (~6 s)
def test_a_new_dataset_is_one_spec_and_one_yaml(tmp_path: Path) -> None:
    """The toy dataset (its own file format, 3 classes) trains through migalab-train by name
    with --config-dir: one module with a DatasetSpec + one data yaml, no suite code changes."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "toy_dataset.py").write_text(textwrap.dedent(TOY_SPEC))
    rng = np.random.default_rng(0)
    root = tmp_path / "release"
    root.mkdir()
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        kp = rng.uniform(10, 90, (n, 20, 22, 3)).astype(np.float32)
        kp[..., 2] = 1.0
        np.savez(root / f"{split}.npz", keypoint=kp, label=np.arange(n) % 3)
    conf = tmp_path / "conf"
    (conf / "data").mkdir(parents=True)
    (conf / "data" / "toy.yaml").write_text(TOY_YAML.format(root=root, cache=tmp_path / "c"))
    env = {"PYTHONPATH": os.pathsep.join([str(pkg), *sys.path])}
    out = _ok(run_script([
        "migalab-train", f"--config-dir={conf}", "data=toy", "model.encoder.base_channels=8",
        "debug=fdr", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}",
    ], cwd=tmp_path, env=env))  # fmt: skip
    assert "Traceback" not in out
    assert SkeletonCache(tmp_path / "c").layout == "imigue22"
    resolved = (tmp_path / "run" / "config_resolved.yaml").read_text()
    assert "num_classes: 3" in resolved and "- shrug" in resolved


def test_a_spec_name_from_a_checkpoint_must_be_migalab(tiny_release: Path, tiny_cache: Path):
    from migalab.utils.checkpoints import UnsafeCheckpointError, check_config_targets
    from migalab.utils.hydra import resolved_container

    data = resolved_container(
        compose_config("train", tiny_data_overrides(tiny_release, tiny_cache))
    )["data"]
    check_config_targets({"data": data}, "ckpt")  # stored configs are resolved
    with pytest.raises(UnsafeCheckpointError, match="evil"):
        check_config_targets({"data": {**data, "dataset": "evil:SPEC"}}, "ckpt")
