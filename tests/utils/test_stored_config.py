"""A checkpoint's stored config is data: plain values, no interpolation, exact target allowlist,
locations from the current run, bounded sizes -- each check at its boundary, and generated
hostile configs under an audit hook."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migalab.scoring.ensemble import load_checkpoint_config
from migalab.utils.stored_config import (
    ALLOWED_TARGETS,
    MAX_DEPTH,
    MAX_NODES,
    SYNTHETIC_LIMITS,
    UnsafeCheckpointError,
    check_config_targets,
    check_plain_tree,
    sanitize_stored_config,
)
from tests.security.audit import RECORDER

DATA_DIR = "/srv/trainer/data"  # the training run's data dir, as stored


def stored_config(**data_extra: Any) -> dict[str, Any]:
    """A stored run config as migalab-train writes it (resolved), CPU-sized AGCN."""
    return {
        "task_name": "train",
        "trainer": {"_target_": "lightning.pytorch.trainer.Trainer", "max_epochs": 1},
        "callbacks": {"ckpt": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint"}},
        "paths": {"data_dir": DATA_DIR, "output_dir": "/srv/trainer/logs/run"},
        "data": {
            "_target_": "migalab.data.datamodule.ClipDataModule",
            "dataset": "synthetic",
            "release_root": f"{DATA_DIR}/synthetic_imigue/release",
            "cache_dir": f"{DATA_DIR}/synthetic_imigue/cache",
            "synthetic": {"seed": 0, "num_videos": {"train": 4, "validate": 2, "test": 2}},
            "video": {"prepared_dir": None, "prepare_workers": 1},
            "num_workers": 0,
            "img_shape": [720, 1280],
            **data_extra,
        },
        "model": {
            "_target_": "migalab.tasks.gesture.GestureModule",
            "encoder": {"_target_": "migalab.models.encoders.agcn.AGCN", "layout": "imigue22",
                        "base_channels": 8, "init": None},
            "head": {"_target_": "migalab.models.heads.ClassificationHead", "_partial_": True,
                     "num_classes": 32},
            "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
            "scheduler": {"_target_": "migalab.utils.schedulers.cosine_with_warmup",
                          "_partial_": True},
            "num_classes": 32,
        },
    }  # fmt: skip


def sanitize(stored: Any, **kw: Any) -> Any:
    kw.setdefault("data_dir", "/home/me/data")
    return sanitize_stored_config(stored, "checkpoint x.ckpt", **kw)


# -- interpolations, resolvers and keys outside data / model --------------------------------------
@pytest.mark.parametrize(
    "where, value",
    [
        ("model.encoder", "${oc.create:{_target_: builtins.open, file: /tmp/pwned, mode: w}}"),
        ("model.num_classes", "${oc.env:HOME}"),
        ("data.release_root", "${paths.output_dir}/../../etc"),
        ("model.encoder.layout", "imigue22${oc.decode:'x'}"),
        ("model.head.num_classes", "${data.num_workers}"),
    ],
)
def test_an_interpolation_anywhere_is_refused(where: str, value: str) -> None:
    stored = stored_config()
    *parents, last = where.split(".")
    node = stored
    for p in parents:
        node = node[p]
    node[last] = value
    with pytest.raises(UnsafeCheckpointError, match=rf"x\.ckpt: refused .*{where}.*interpolation"):
        sanitize(stored)


def test_an_escaped_interpolation_in_a_key_is_refused() -> None:
    stored = stored_config()
    stored["model"]["${oc.create:{}}"] = 1
    with pytest.raises(UnsafeCheckpointError, match="interpolation"):
        sanitize(stored)


def test_sections_other_than_data_and_model_are_never_read() -> None:
    stored = stored_config()
    stored["trainer"] = {"_target_": "os.system", "_args_": ["touch /tmp/pwned"]}
    stored["hydra"] = {"callbacks": {"x": {"_target_": "builtins.exec"}}}
    cfg = sanitize(stored)
    assert set(cfg) == {"data", "model"}


# -- exact target allowlist ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "builtins.exec",
        "torch.hub.load",
        "torch.nn.Linear",  # a library model class: not one our configs name
        "torch.optim.SGD.step",  # a name below an allowed one
        "migalab.tasks.gesture.GestureModule.load_from_checkpoint",
        "migalab.tasks.gesture.subprocess.Popen",  # a module imported by an allowed one
        "migalab.utils.io.atomic_write_text",  # our own function that writes files
        "migalab.tasks.gesture.GestureModule ",  # trailing space: exact strings only
        "Migalab.tasks.gesture.GestureModule",
        "migalab.tasks.gesture.GestureModul",  # one character short
        "tests.security.sideeffect.Anything",  # importing would run code: never imported
    ],
)
def test_targets_outside_the_exact_allowlist_are_refused(target: str) -> None:
    stored = stored_config()
    stored["model"]["encoder"]["_target_"] = target
    with pytest.raises(UnsafeCheckpointError, match=r"model\.encoder\._target_"):
        sanitize(stored)


def test_every_allowed_target_passes_and_trust_is_exact() -> None:
    for target in sorted(ALLOWED_TARGETS):
        check_config_targets({"model": {"_target_": target}}, "test")
    tree = {"model": {"layers": [{"_target_": "migalab.models.heads.ClassificationHead"},
                                 {"_target_": "mylab.nets.MyNet", "_args_": [1]}]}}  # fmt: skip
    with pytest.raises(UnsafeCheckpointError, match=r"model\.layers\[1\]\._target_"):
        check_config_targets(tree, "test")
    check_config_targets(tree, "test", trusted=["mylab.nets.MyNet"])
    with pytest.raises(UnsafeCheckpointError, match="mylab.nets.MyNet"):
        check_config_targets(tree, "test", trusted=["mylab.nets"])  # not a prefix


def test_targets_hidden_in_args_and_lists_are_found() -> None:
    stored = stored_config()
    stored["model"]["encoder"]["_args_"] = [[{"x": {"_target_": "posix.system"}}]]
    with pytest.raises(UnsafeCheckpointError, match=r"_args_\[0\]\[0\]\.x\._target_"):
        sanitize(stored)
    stored = stored_config()
    stored["model"]["head"]["_target_"] = ["torch.nn.Linear"]  # not even a string
    with pytest.raises(UnsafeCheckpointError, match="head._target_"):
        sanitize(stored)


def test_checking_a_target_imports_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module with import-time side effects is judged by its name, never imported."""
    pkg = tmp_path / "sideeffect_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(f"open({str(tmp_path / 'pwned')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    stored = stored_config()
    stored["model"]["encoder"]["_target_"] = "sideeffect_pkg.Net"
    with RECORDER.armed(writable=[]) as events, pytest.raises(UnsafeCheckpointError):
        sanitize(stored)
    assert events == [] and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("dataset", ["evil.module:SPEC", "migalab.data.specs.base:BUILTIN_DATASETS",
                                     "migalab.data.specs.synthetic:SPEC2", "Synthetic"])  # fmt: skip
def test_a_dataset_spec_must_be_one_of_ours_exactly(dataset: str) -> None:
    with pytest.raises(UnsafeCheckpointError, match="data.dataset"):
        sanitize(stored_config(dataset=dataset))
    cfg = sanitize(stored_config(dataset="migalab.data.specs.synthetic:SPEC"))
    assert cfg.data.dataset == "migalab.data.specs.synthetic:SPEC"
    # the user's own spec, given on the command line, is the user's choice
    own = sanitize(stored_config(), user_data={"dataset": "mylab.toy:SPEC"},
                   trusted_targets=["mylab.toy:SPEC"])  # fmt: skip
    assert own.data.dataset == "mylab.toy:SPEC"


# -- plain data, depth, size --------------------------------------------------------------------
def _nested(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = [node]
    return node


def test_depth_is_bounded_without_recursion() -> None:
    check_plain_tree(_nested(MAX_DEPTH), "x")  # exactly at the limit
    with pytest.raises(UnsafeCheckpointError, match="deeper than"):
        check_plain_tree(_nested(MAX_DEPTH + 1), "x")
    with pytest.raises(UnsafeCheckpointError, match="deeper than"):
        check_plain_tree(_nested(100_000), "x")  # no RecursionError


def test_size_is_bounded() -> None:
    check_plain_tree(list(range(MAX_NODES - 1)), "x")  # the list itself + its items
    with pytest.raises(UnsafeCheckpointError, match="more than"):
        check_plain_tree(list(range(MAX_NODES)), "x")


def test_only_plain_values() -> None:
    for bad in ({1: "a"}, {"a": b"bytes"}, {"a": torch.zeros(1)}, {"a": {1, 2}}):
        with pytest.raises(UnsafeCheckpointError):
            check_plain_tree(bad, "x")
    shared = [1]
    with pytest.raises(UnsafeCheckpointError, match="twice"):
        check_plain_tree({"a": shared, "b": shared}, "x")
    check_plain_tree({"a": [1, 2.5, "s", True, None], "b": {"c": []}}, "x")


# -- locations come from the current run -----------------------------------------------------------
def test_folders_under_the_stored_data_dir_are_rerooted_under_this_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = sanitize(stored_config(), data_dir="/home/me/data")
    assert cfg.data.release_root == "/home/me/data/synthetic_imigue/release"
    assert cfg.data.cache_dir == "/home/me/data/synthetic_imigue/cache"
    assert "not taken from the checkpoint" in caplog.text and "release_root" in caplog.text


@pytest.mark.parametrize(
    "release_root",
    [
        "/etc/ssh",  # elsewhere on the disk
        f"{DATA_DIR}/../../../etc",  # escapes the data dir
        DATA_DIR,  # the data dir itself: not a folder under it
        f"{DATA_DIR}x/release",  # a sibling that shares the prefix
        "relative/release",
    ],
)
def test_folders_elsewhere_are_dropped(release_root: str) -> None:
    cfg = sanitize(stored_config(release_root=release_root))
    assert cfg.data.release_root is None


def test_a_release_split_by_split_is_rerooted_or_dropped_as_a_whole() -> None:
    split = {"train": f"{DATA_DIR}/a", "test": f"{DATA_DIR}/b"}
    assert sanitize(stored_config(release_root=split)).data.release_root == {
        "train": "/home/me/data/a", "test": "/home/me/data/b"}  # fmt: skip
    split["test"] = "/elsewhere/b"
    assert sanitize(stored_config(release_root=split)).data.release_root is None
    assert sanitize(stored_config(release_root=[f"{DATA_DIR}/a"])).data.release_root == [
        "/home/me/data/a"]  # fmt: skip


def test_the_users_folders_win() -> None:
    cfg = sanitize(stored_config(release_root="/etc"),
                   user_data={"release_root": "/data/imigue", "cache_dir": None})  # fmt: skip
    assert cfg.data.release_root == "/data/imigue"
    assert cfg.data.cache_dir == "/home/me/data/synthetic_imigue/cache"  # null: not given


def test_model_files_are_dropped_and_caches_rerooted() -> None:
    stored = stored_config()
    stored["model"]["encoder"].update(init="/home/victim/.ssh/id_rsa", pretrained="kinetics400",
                                      cache_dir="/var/lib/elsewhere")  # fmt: skip
    stored["model"]["label_embedding"] = {
        "_target_": "migalab.models.label_embeddings.LabelEmbeddingHead", "_partial_": True,
        "path": "/etc/passwd", "cache_dir": f"{DATA_DIR}/label_embeddings", "source": "npy"}  # fmt: skip
    state = {"label_embedding.targets": torch.ones(32, 4)}
    cfg = sanitize(stored, state_dict=state)
    enc, emb = cfg.model.encoder, cfg.model.label_embedding
    assert enc.init is None and enc.pretrained is None and enc.cache_dir is None
    assert emb.path is None and emb.cache_dir == "/home/me/data/label_embeddings"
    assert len(emb.embeddings) == 32 and emb.embeddings[0] == [1.0] * 4  # from the state dict


def test_worker_counts_are_capped_at_the_cores() -> None:
    cores = os.cpu_count() or 1
    at = sanitize(stored_config(num_workers=cores))
    assert at.data.num_workers == cores
    over = sanitize(stored_config(num_workers=cores + 1))
    assert over.data.num_workers == cores
    assert sanitize(stored_config(num_workers=10**9)).data.video.prepare_workers == 1


@pytest.mark.parametrize(
    "key, ok, too_much",
    [
        ("num_videos", {"train": SYNTHETIC_LIMITS["videos"]},
         {"train": SYNTHETIC_LIMITS["videos"], "test": 1}),
        ("clips_per_video", [1, SYNTHETIC_LIMITS["clips_per_video"]],
         [1, SYNTHETIC_LIMITS["clips_per_video"] + 1]),
        ("min_video_frames", SYNTHETIC_LIMITS["min_video_frames"],
         SYNTHETIC_LIMITS["min_video_frames"] + 1),
        ("frame_size", [SYNTHETIC_LIMITS["frame_side"], 8], [8, SYNTHETIC_LIMITS["frame_side"] + 1]),
    ],
)  # fmt: skip
def test_synthetic_generator_sizes_are_bounded(key: str, ok: Any, too_much: Any) -> None:
    good = stored_config()
    good["data"]["synthetic"][key] = ok
    sanitize(good)
    bad = stored_config()
    bad["data"]["synthetic"][key] = too_much
    with pytest.raises(UnsafeCheckpointError, match=rf"data\.synthetic\.{key}"):
        sanitize(bad)


def test_pseudo_labels_are_a_training_input_only() -> None:
    assert sanitize(stored_config(pseudo_labels="/etc/shadow")).data.pseudo_labels is None


def test_overfit_clips_are_a_training_input_only() -> None:
    """A checkpoint of an overfit check (data.overfit_clips) is evaluated on the real splits."""
    assert sanitize(stored_config(overfit_clips=16)).data.overfit_clips is None
    assert sanitize(stored_config()).data.get("overfit_clips") is None


# -- generated hostile configs ------------------------------------------------------------------
HOSTILE_TARGETS = ["os.system", "builtins.open", "torch.hub.load", "subprocess.Popen",
                   "pathlib.Path.write_text", "migalab.utils.io.atomic_write_text",
                   "torch.nn.Linear", "hydra.utils.instantiate", "omegaconf.OmegaConf.create"]  # fmt: skip
HOSTILE_STRINGS = ["${oc.create:{_target_: os.system}}", "${oc.env:HOME}", "${paths.data_dir}",
                   "${hydra:runtime.cwd}", "a${b}", "${oc.decode:'[1]'}"]  # fmt: skip
_leaf = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                  st.text(max_size=8).filter(lambda s: "${" not in s))  # fmt: skip


def _hostile_node() -> st.SearchStrategy[Any]:
    target = st.sampled_from(HOSTILE_TARGETS)
    node = st.fixed_dictionaries(
        {"_target_": target},
        optional={"_args_": st.lists(_leaf, max_size=2), "_partial_": st.booleans(),
                  "_recursive_": st.booleans(), "_convert_": st.sampled_from(["all", "none"])},
    )  # fmt: skip
    return st.one_of(node, st.sampled_from(HOSTILE_STRINGS))


def _tree_with(payload: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A payload wrapped in 0-4 levels of dicts / lists / _args_."""
    return st.recursive(
        payload,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=2),
            st.dictionaries(st.sampled_from(["a", "b", "_args_", "kwargs"]), inner, min_size=1,
                            max_size=2),
            st.builds(lambda x: {"_target_": "migalab.models.heads.ClassificationHead",
                                 "_args_": [x]}, inner),
        ),
        max_leaves=4,
    )  # fmt: skip


PLACES = ["model.encoder", "model.head", "model.optimizer.params", "model", "data",
          "data.video", "data.synthetic", "model.new_key", "data.augment"]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(place=st.sampled_from(PLACES), key=st.sampled_from(["x", "_target_", "encoder", "init"]),
       payload=_tree_with(_hostile_node()))  # fmt: skip
def test_generated_hostile_configs_are_refused_and_do_nothing(
    place: str, key: str, payload: Any
) -> None:
    """300 stored configs, each with a hostile target or interpolation at 1-5 levels below a
    random place (nested lists / dicts / _args_, _partial_, _recursive_, _convert_): every one is
    refused, and refusing it opens, imports, runs and writes nothing."""
    stored = stored_config()
    node = stored
    for part in place.split("."):
        node = node.setdefault(part, {})
    node[key] = copy.deepcopy(payload)
    with RECORDER.armed(writable=[]) as events, pytest.raises(UnsafeCheckpointError):
        sanitize(stored)
    assert events == []


# -- through the checkpoint file ---------------------------------------------------------------
def test_a_crafted_checkpoint_is_refused_through_load_checkpoint_config(tmp_path: Path) -> None:
    stored = stored_config()
    stored["model"]["encoder"] = "${oc.create:{_target_: builtins.open, file: pwned, mode: w}}"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "migalab_config": stored}, path)
    with RECORDER.armed(writable=[]) as events:
        with pytest.raises(UnsafeCheckpointError, match=r"crafted\.ckpt.*model\.encoder"):
            load_checkpoint_config(path, data_dir=tmp_path)
    assert events == []
    torch.save({"state_dict": [1, 2], "migalab_config": stored_config()}, path)
    with pytest.raises(UnsafeCheckpointError, match="state_dict is not a mapping"):
        load_checkpoint_config(path, data_dir=tmp_path)


# -- exact messages and boundaries (mutation testing: scripts/mutation.py --set security) ---------
def _refusal(call: Any) -> str:
    with pytest.raises(UnsafeCheckpointError) as err:
        call()
    return str(err.value)


def _nested_dicts(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = {"a": node}
    return node


def test_plain_tree_messages_name_the_place() -> None:
    long = "${" + "x" * 100 + "}"
    assert _refusal(lambda: check_plain_tree(long, "src")) == (
        f"src: refused the stored config value at <root> ({long[:80]!r}): an interpolation, "
        "which a config written by migalab-train never holds (it stores its config resolved) "
        "and which could create or resolve nodes nobody checked"
    )
    assert _refusal(lambda: check_plain_tree({"a": {"${x}": 1}}, "src")).startswith(
        "src: refused the stored config value at a.${x} ('${x}')")  # fmt: skip
    assert _refusal(lambda: check_plain_tree({"${x}": 1}, "src")).startswith(
        "src: refused the stored config value at ${x} ('${x}')")  # fmt: skip
    assert _refusal(lambda: check_plain_tree({1: "a"}, "src")) == (
        "src: stored config key 1 at <root> is not a string")  # fmt: skip
    assert _refusal(lambda: check_plain_tree({"a": [{2: 1}]}, "src")) == (
        "src: stored config key 2 at a[0] is not a string")  # fmt: skip
    assert _refusal(lambda: check_plain_tree(b"x", "src")) == (
        "src: stored config value at <root> is a bytes, not plain data")  # fmt: skip
    assert _refusal(lambda: check_plain_tree({"a": {"b": [b"x"]}}, "src")) == (
        "src: stored config value at a.b[0] is a bytes, not plain data")  # fmt: skip
    shared: list[int] = []
    assert _refusal(lambda: check_plain_tree({"a": shared, "b": shared}, "src")) == (
        "src: its stored config refers to one entry twice (at a); refused")  # fmt: skip
    assert _refusal(lambda: check_plain_tree(list(range(MAX_NODES)), "src")) == (
        f"src: its stored config has more than {MAX_NODES} entries; refused")  # fmt: skip


def test_dict_depth_is_bounded_exactly() -> None:
    check_plain_tree(_nested_dicts(MAX_DEPTH), "src")
    where = ".".join(["a"] * (MAX_DEPTH + 1))
    assert _refusal(lambda: check_plain_tree(_nested_dicts(MAX_DEPTH + 1), "src")) == (
        f"src: its stored config is nested deeper than {MAX_DEPTH} levels (at {where}); refused"
    )
    # the target check unwraps OmegaConf containers without recursing past the limit
    for deep in (_nested(100_000), _nested_dicts(100_000)):
        assert "deeper than" in _refusal(lambda d=deep: check_config_targets(d, "src"))


def test_omegaconf_containers_are_checked_unresolved_at_any_depth() -> None:
    from omegaconf import OmegaConf

    for depth in (0, 1, 40, MAX_DEPTH - 2):
        for wrap in (lambda t: {"x": t}, lambda t: [t]):
            tree: Any = OmegaConf.create({"a": "${b}", "b": 1})
            for _ in range(depth):
                tree = wrap(tree)
            assert "interpolation" in _refusal(lambda t=tree: check_config_targets(t, "src"))
    check_config_targets({"x": OmegaConf.create({"b": [1]})}, "src")


def test_target_and_dataset_messages() -> None:
    assert _refusal(lambda: check_config_targets({"_target_": "os.system"}, "src")) == (
        "src: refused to instantiate <root>._target_='os.system': not one of the suite's model "
        "and data classes (a stored config may name only those; add "
        "trusted_targets=[os.system] to the command if you trust the checkpoint's author and "
        "have the class installed)"
    )
    assert _refusal(lambda: check_config_targets(
        {"model": {"enc": {"_target_": "os.system"}}}, "src")).startswith(
        "src: refused to instantiate model.enc._target_='os.system'")  # fmt: skip
    # a data config itself (no data section) has its dataset checked too
    assert _refusal(lambda: check_config_targets({"dataset": "evil:SPEC"}, "src")) == (
        "src: refused data.dataset='evil:SPEC': a config stored in a checkpoint may only name "
        "migalab's own dataset specs (importing 'evil:SPEC' would run its code); give "
        "data.dataset on the command line to use your own"
    )
    check_config_targets({"data": ["not", "a", "mapping"]}, "src")
    check_config_targets({"dataset": "synthetic"}, "src")
    assert _refusal(lambda: check_config_targets({"a": b"x"}, "src")) == (
        "src: stored config value at a is a bytes, not plain data")  # fmt: skip


def test_sanitize_refusals() -> None:
    stored = stored_config()
    stored["model"]["encoder"]["_target_"] = "os.system"
    assert _refusal(lambda: sanitize(stored)).startswith(
        "checkpoint x.ckpt: refused to instantiate model.encoder._target_='os.system'")  # fmt: skip
    assert _refusal(lambda: sanitize([1])) == (
        "checkpoint x.ckpt: its stored config is a list, not a mapping")  # fmt: skip
    stored = stored_config()
    del stored["model"]
    assert _refusal(lambda: sanitize(stored)) == (
        "checkpoint x.ckpt: its stored config has no ['model'] section")  # fmt: skip
    assert _refusal(lambda: sanitize(stored_config(), user_data={"a": b"x"})) == (
        "the data overrides of this run: stored config value at a is a bytes, not plain data"
    )
    bad = stored_config()
    bad["data"]["synthetic"]["frame_size"] = [SYNTHETIC_LIMITS["frame_side"] + 1]
    assert _refusal(lambda: sanitize(bad)) == (
        f"checkpoint x.ckpt: its data.synthetic.frame_size asks for "
        f"{SYNTHETIC_LIMITS['frame_side'] + 1} (limit {SYNTHETIC_LIMITS['frame_side']}); a "
        "checkpoint may not make the suite generate more than that: give "
        "data.synthetic.frame_size=... on the command line"
    )


def test_what_is_not_taken_is_logged_exactly(caplog: pytest.LogCaptureFixture) -> None:
    stored = stored_config(num_workers=10**6, pseudo_labels="/p.json")
    stored["model"]["encoder"]["init"] = "/w.ckpt"
    stored["model"]["encoder"]["cache_dir"] = "/elsewhere"
    stored["model"]["head"]["cache_dir"] = f"{DATA_DIR}/emb"
    cores = os.cpu_count() or 1
    with caplog.at_level("WARNING", logger="migalab.utils.stored_config"):
        cfg = sanitize(stored, user_data={"release_root": "/mine"})
    ignored = sorted([
        f"data.cache_dir={DATA_DIR}/synthetic_imigue/cache (now "
        "/home/me/data/synthetic_imigue/cache)",
        "data.pseudo_labels=/p.json",
        f"data.num_workers=1000000 (capped at {cores}, this machine's cores)",
        "model.encoder.init=/w.ckpt",
        "model.encoder.cache_dir=/elsewhere",
        f"model.head.cache_dir={DATA_DIR}/emb (now /home/me/data/emb)",
    ])  # fmt: skip
    assert caplog.messages == ["checkpoint x.ckpt: not taken from the checkpoint (locations "
                               "come from this run): " + "; ".join(ignored)]  # fmt: skip
    assert cfg.data.release_root == "/mine" and cfg.data.num_workers == cores
    assert cfg.model.encoder.cache_dir is None and cfg.model.head.cache_dir == "/home/me/data/emb"
    caplog.clear()
    with caplog.at_level("WARNING", logger="migalab.utils.stored_config"):
        sanitize(stored_config(num_workers=cores, release_root="/etc"), data_dir=None)
    assert caplog.messages == ["checkpoint x.ckpt: not taken from the checkpoint (locations "
                               "come from this run): " + "; ".join(sorted([
        "data.release_root=/etc (outside the training run's data dir: give "
        "data.release_root=... to read data)",
        f"data.cache_dir={DATA_DIR}/synthetic_imigue/cache (outside the training run's data "
        "dir: give data.cache_dir=... to read data)"]))]  # fmt: skip


def test_nested_locations_and_worker_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = stored_config()
    stored["data"]["video"] = {"prepared_dir": f"{DATA_DIR}/video", "prepare_workers": 10**6}
    cfg = sanitize(stored)
    assert cfg.data.video.prepared_dir == "/home/me/data/video"
    assert cfg.data.video.prepare_workers == (os.cpu_count() or 1)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: one core
    assert sanitize(stored_config(num_workers=2)).data.num_workers == 1
    assert sanitize(stored_config(num_workers=True)).data.num_workers is True  # not a count


@pytest.mark.parametrize(
    ("stored_root", "release_root", "expected"),
    [
        ("/", "/srv/rel", "/home/me/data/srv/rel"),  # the filesystem root as data dir
        ("data", "data/rel", None),  # relative: never re-rooted
        (DATA_DIR, 5, None),  # not a path
        (DATA_DIR, [f"{DATA_DIR}/a", "/etc"], None),  # one item elsewhere: all dropped
        (DATA_DIR, f"{DATA_DIR}//a/./b", "/home/me/data/a/b"),
        ("/srv/X", "/srv/X/rel", "/home/me/data/rel"),  # a data dir ending in X
    ],
)
def test_rebase_edges(stored_root: str, release_root: Any, expected: Any) -> None:
    stored = stored_config(release_root=release_root)
    stored["paths"]["data_dir"] = stored_root
    got = sanitize(stored).data.release_root
    assert got == expected


def test_every_location_is_moved_after_an_empty_one() -> None:
    cfg = sanitize(stored_config(release_root=None))
    assert cfg.data.release_root is None
    assert cfg.data.cache_dir == "/home/me/data/synthetic_imigue/cache"


def test_synthetic_sizes_count_numbers_only() -> None:
    stored = stored_config()
    stored["data"]["synthetic"].update(num_videos={"train": "many", "test": True},
                                       clips_per_video=["x", 5])  # fmt: skip
    assert sanitize(stored).data.synthetic.num_videos.train == "many"  # the generator refuses it


def test_user_overrides_are_merged_key_by_key() -> None:
    user = {"video": {"prepare_workers": 1, "prepared_dir": None}, "cache_dir": None,
            "x": {"y": None}, "new": {"k": [1]}, "synthetic": {"seed": 3}}  # fmt: skip
    cfg = sanitize(stored_config(), user_data=user)
    assert cfg.data.video == {"prepared_dir": None, "prepare_workers": 1}
    assert cfg.data.cache_dir == "/home/me/data/synthetic_imigue/cache" and "x" not in cfg.data
    assert cfg.data.new == {"k": [1]}
    assert cfg.data.synthetic == {"seed": 3, "num_videos": {"train": 4, "validate": 2, "test": 2}}
    over = sanitize(stored_config(), user_data={"video": {"prepared_dir": {"train": "/v"}}})
    assert over.data.video.prepared_dir == {"train": "/v"}  # a dict over a stored null


def test_label_embedding_targets_come_from_the_state_dict() -> None:
    def head(state: dict[str, Any]) -> Any:
        stored = stored_config()
        stored["model"]["label_embedding"] = {
            "_target_": "migalab.models.label_embeddings.LabelEmbeddingHead",
            "source": "npy",
        }
        return sanitize(stored, state_dict=state).model.label_embedding  # fmt: skip

    exact = head({"label_embedding.targets": torch.ones(2, 1),
                  "other.label_embedding.targets": torch.zeros(2, 1)})  # fmt: skip
    assert exact.embeddings == [[1.0], [1.0]] and exact["_convert_"] == "all"
    assert head({"x.label_embedding.targets": torch.full((1, 1), 2.0)}).embeddings == [[2.0]]
    ambiguous = head({"a.label_embedding.targets": torch.ones(1, 1),
                      "b.label_embedding.targets": torch.ones(1, 1)})  # fmt: skip
    assert "embeddings" not in ambiguous and "_convert_" not in ambiguous
    assert "embeddings" not in head({"label_embedding.targets": [[1.0]]})  # not a tensor
