"""A checkpoint's stored run config is data: checked as a string tree, never executed as found.

``migalab-train`` stores the *resolved* run config in every checkpoint, and ``migalab-eval``,
``migalab-predict`` and ``migalab-pseudolabel`` rebuild the model and the data pipeline from it
with ``hydra.utils.instantiate``. A ``_target_`` is as powerful as a pickle, and an OmegaConf
interpolation or resolver turns a plain string into a node nobody checked, so
:func:`sanitize_stored_config` treats the stored tree as untrusted data, in this order:

1. **Plain data only**: dicts with string keys, lists, strings, numbers, booleans and None, at
   most :data:`MAX_DEPTH` levels and :data:`MAX_NODES` nodes (walked without recursion). A
   string holding ``${`` is refused: a config written by ``migalab-train`` is resolved, so an
   interpolation (and with it every resolver, ``oc.create`` included) can only be an attack.
2. **Only ``data`` and ``model`` are kept**; the trainer, callbacks, loggers and the rest of the
   stored run are never read (the current run's own config provides them).
3. **Locations come from the current run** (:func:`relocate`): the data folders, caches and
   label files of ``data`` are the user's overrides, else the stored path re-rooted under the
   current ``paths.data_dir`` when it lay under the training run's data dir, else None (the
   data module then asks for the override); a model's initial-weight files (``init``, ``pretrained``) and
   label-embedding files are dropped (every weight, label-embedding targets included, comes from
   the checkpoint's state dict); embedding caches are re-rooted or dropped; worker counts are
   capped at this machine's cores and the synthetic generator's sizes at
   :data:`SYNTHETIC_LIMITS`. What is ignored is said once in the log.
4. The user's ``data.*`` overrides (resolved in the user's own config) are merged on top.
5. **Every ``_target_`` of the whole resulting tree** must be one of :data:`ALLOWED_TARGETS`
   (exact qualified names, decided from the string before anything is imported), and
   ``data.dataset`` one of migalab's own dataset specs (exact names). ``trusted_targets``
   extends both (``trusted_targets=[mylab.encoders.MyNet]`` on the command line).

Only then is the tree handed to OmegaConf and instantiated.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from migalab.data.specs.base import is_builtin
from migalab.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "ALLOWED_TARGETS",
    "MAX_DEPTH",
    "MAX_NODES",
    "SYNTHETIC_LIMITS",
    "UnsafeCheckpointError",
    "check_config_targets",
    "check_plain_tree",
    "relocate",
    "sanitize_stored_config",
]

#: how deep and how large a stored config may be (real ones: depth ~8, ~400 nodes)
MAX_DEPTH = 64
MAX_NODES = 200_000

#: the exact ``_target_`` values a stored ``data`` / ``model`` config may name: every class and
#: factory that migalab's own model and data configs (``conf/model``, ``conf/data``) select, plus
#: the optimisers a user may pick by override. Extending the suite with a class means adding it
#: here (tests/utils/test_stored_config.py checks every config of conf/ against this set).
ALLOWED_TARGETS: frozenset[str] = frozenset(
    {
        # data
        "migalab.data.datamodule.ClipDataModule",
        # tasks
        "migalab.tasks.gesture.GestureModule",
        "migalab.tasks.emotion.EmotionModule",
        "migalab.tasks.pretrain.PretrainModule",
        "migalab.tasks.losses.ClassificationLoss",
        # encoders, necks, heads, pretext objectives
        "migalab.models.encoders.agcn.AGCN",
        "migalab.models.encoders.posec3d.SlowOnly",
        "migalab.models.encoders.mvit.MViTEncoder",
        "migalab.models.encoders.x3d.X3D",
        "migalab.models.encoders.resnet3d.ResNet3D",
        "migalab.models.encoders.framestack.FrameStack2D",
        "migalab.models.encoders.swinface.SwinFaceEncoder",
        "migalab.models.encoders.skeleton_transformer.SkeletonTransformer",
        "migalab.models.fusion.CrossModalTokenFusion",
        "migalab.models.fusion.InterFusion",
        "migalab.models.heads.ClassificationHead",
        "migalab.models.label_embeddings.LabelEmbeddingHead",
        "migalab.models.pretrain.MaskedMotionPrediction",
        "migalab.models.pretrain.MaskedImageModeling",
        "migalab.models.pretrain.MaskedFeaturePrediction",
        # optimisation
        "migalab.utils.schedulers.cosine_with_warmup",
        "torch.optim.SGD",
        "torch.optim.Adam",
        "torch.optim.AdamW",
        "torch.optim.RMSprop",
        "torch.nn.BCEWithLogitsLoss",
        "torch.nn.CrossEntropyLoss",
    }
)


#: data keys that are folders or files, as dotted paths below ``data``
DATA_LOCATIONS = (
    "release_root",
    "cache_dir",
    "video.prepared_dir",
    "face.prepared_dir",
    "emotion_labels",
    "subjects",
)
#: data keys a checkpoint's evaluation never needs (training inputs): always dropped
#: (``overfit_clips``: an overfit check's checkpoint is evaluated on the real splits)
DATA_TRAINING_ONLY = ("pseudo_labels", "overfit_clips")
#: data keys that are worker / process counts: capped at this machine's cores
DATA_WORKER_KEYS = (
    "num_workers",
    "prepare_workers",
    "video.prepare_workers",
    "face.prepare_workers",
    "synthetic.workers",
)
#: model keys (at any depth) naming weight files or embedding sources: the state dict supersedes
#: them, so they are dropped
MODEL_FILE_KEYS = ("init", "pretrained", "path")
#: model keys (at any depth) naming caches: re-rooted under the current data dir, else dropped
MODEL_CACHE_KEYS = ("cache_dir",)
#: largest synthetic release a stored config may make the suite generate (make train's default
#: run is 60 videos; these leave a wide margin and stop a checkpoint filling the disk)
SYNTHETIC_LIMITS = {
    "videos": 2_000,
    "clips_per_video": 1_000,
    "min_video_frames": 200_000,
    "frame_side": 8_192,
}


class UnsafeCheckpointError(UserError, RuntimeError):
    """A checkpoint (or its stored config) would run code that is not the suite's own."""


# -- 1. plain data ------------------------------------------------------------------------------
_SCALARS = (str, int, float, bool, type(None))


def check_plain_tree(tree: Any, source: str) -> None:
    """Raise :class:`UnsafeCheckpointError` unless ``tree`` is plain data: dicts with string keys,
    lists / tuples, strings, ints, floats, booleans, None; no string holding an interpolation
    (``${``); at most :data:`MAX_DEPTH` deep and :data:`MAX_NODES` nodes. Iterative: a deeply
    nested file cannot exhaust the interpreter's stack."""
    stack: list[tuple[Any, str, int]] = [(tree, "", 0)]
    seen_containers: set[int] = set()
    nodes = 0
    while stack:
        node, where, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise UnsafeCheckpointError(
                f"{source}: its stored config has more than {MAX_NODES} entries; refused"
            )
        if depth > MAX_DEPTH:
            raise UnsafeCheckpointError(
                f"{source}: its stored config is nested deeper than "
                f"{MAX_DEPTH} levels (at {where}); refused"
            )
        if isinstance(node, Mapping | list | tuple):
            if id(node) in seen_containers:  # shared or cyclic references: not a stored config
                raise UnsafeCheckpointError(
                    f"{source}: its stored config refers to one entry "
                    f"twice (at {where or '<root>'}); refused"
                )
            seen_containers.add(id(node))
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise UnsafeCheckpointError(
                        f"{source}: stored config key {key!r} at "
                        f"{where or '<root>'} is not a string"
                    )
                _check_string(key, f"{where}.{key}" if where else key, source)
                stack.append((value, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(node, list | tuple):
            for i, value in enumerate(node):
                stack.append((value, f"{where}[{i}]", depth + 1))
        elif isinstance(node, str):
            _check_string(node, where, source)
        elif not isinstance(node, _SCALARS):
            raise UnsafeCheckpointError(
                f"{source}: stored config value at {where or '<root>'} is a "
                f"{type(node).__name__}, not plain data"
            )


def _check_string(value: str, where: str, source: str) -> None:
    if "${" in value:
        raise UnsafeCheckpointError(
            f"{source}: refused the stored config value at {where or '<root>'} ({value[:80]!r}): "
            f"an interpolation, which a config written by migalab-train never holds (it stores "
            f"its config resolved) and which could create or resolve nodes nobody checked"
        )


# -- 5. targets ---------------------------------------------------------------------------------
def check_config_targets(cfg: Any, source: str, trusted: Iterable[str] = ()) -> None:
    """Raise :class:`UnsafeCheckpointError` unless every ``_target_`` in ``cfg`` (the whole tree,
    lists and ``_args_`` included) is one of :data:`ALLOWED_TARGETS` or ``trusted``, compared as
    exact strings (nothing is imported to decide), and ``data.dataset`` (when ``cfg`` has a
    ``data`` section, or is a data config itself) names one of migalab's dataset specs or a
    ``trusted`` one. ``source`` names where the config came from (for the message)."""
    cfg = _unwrap(cfg)
    trusted = frozenset(str(t) for t in trusted)
    check_plain_tree(cfg, source)
    allowed = ALLOWED_TARGETS | trusted
    for keypath, target in _targets(cfg):
        if not isinstance(target, str) or target not in allowed:
            raise UnsafeCheckpointError(
                f"{source}: refused to instantiate {keypath or '<root>'}._target_={target!r}: "
                f"not one of the suite's model and data classes (a stored config may name only "
                f"those; add trusted_targets=[{target}] to the command if you trust the "
                f"checkpoint's author and have the class installed)"
            )
    data = cfg.get("data") if isinstance(cfg, Mapping) and "data" in cfg else cfg
    dataset = data.get("dataset") if isinstance(data, Mapping) else None
    allowed = isinstance(dataset, str) and (is_builtin(dataset) or dataset in trusted)
    if dataset is not None and not allowed:
        raise UnsafeCheckpointError(
            f"{source}: refused data.dataset={dataset!r}: a config stored in a checkpoint may "
            f"only name migalab's own dataset specs (importing {dataset!r} would run its "
            f"code); give data.dataset on the command line to use your own"
        )


def _unwrap(tree: Any, depth: int = 0) -> Any:
    """OmegaConf containers anywhere in ``tree`` as plain ones (unresolved: an interpolation
    stays a string, which :func:`check_plain_tree` refuses); deeper than :data:`MAX_DEPTH` is
    left as it is for :func:`check_plain_tree` to refuse."""
    if depth > MAX_DEPTH:
        return tree
    if isinstance(tree, DictConfig | ListConfig):
        return OmegaConf.to_container(tree, resolve=False)
    if isinstance(tree, Mapping):
        return {k: _unwrap(v, depth + 1) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_unwrap(v, depth + 1) for v in tree]
    return tree


def _targets(tree: Any) -> list[tuple[str, Any]]:
    """Every ``(keypath, _target_ value)`` of a plain tree, without recursion."""
    out: list[tuple[str, Any]] = []
    stack: list[tuple[Any, str]] = [(tree, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, Mapping):
            if "_target_" in node:
                out.append((path, node["_target_"]))
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in node.items())
        elif isinstance(node, list | tuple):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
    return sorted(out)


# -- 3. locations -------------------------------------------------------------------------------
def _get(tree: Mapping[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    if last in node:
        node[last] = value


def _rebase_any(stored: Any, stored_root: str | None, new_root: str | None) -> Any:
    """:func:`_rebase` of a path, or of every path of a list / mapping (a release given split by
    split); None when any of them cannot be re-rooted."""
    if new_root is None:
        return None
    if isinstance(stored, Mapping):
        moved = {k: _rebase(v, stored_root, new_root) for k, v in stored.items()}
        return None if any(v is None for v in moved.values()) else moved
    if isinstance(stored, list | tuple):
        items = [_rebase(v, stored_root, new_root) for v in stored]
        return None if any(v is None for v in items) else items
    return _rebase(stored, stored_root, new_root)


def _rebase(stored: Any, stored_root: str | None, new_root: str) -> str | None:
    """``stored`` re-rooted from ``stored_root`` to ``new_root`` when it lies under it (as a
    normalised path, no ``..`` escaping it); None otherwise."""
    if not isinstance(stored, str) or not stored_root or not os.path.isabs(stored):
        return None
    norm, root = posixpath.normpath(stored), posixpath.normpath(stored_root)
    if norm == root or not norm.startswith(root.rstrip("/") + "/"):
        return None
    rel = PurePosixPath(norm).relative_to(root)
    if any(part in ("..", "") for part in rel.parts):
        return None
    return str(PurePosixPath(new_root, rel))


def relocate(
    stored: dict[str, Any],
    source: str,
    user_data: Mapping[str, Any] | None,
    data_dir: str | os.PathLike | None,
    state_dict: Mapping[str, Any] | None = None,
    stored_data_dir: str | None = None,
) -> list[str]:
    """Replace, in place, every location of a stored ``{"data", "model"}`` tree by the current
    run's (see the module doc); ``stored_data_dir`` is the training run's ``paths.data_dir``
    (what stored folders may be re-rooted from). Returns what was ignored (``key=value``
    strings, for the log).

    A data folder that the stored run kept outside its data dir, and that the user did not
    give, becomes None: the data module then refuses to read data, naming the override to give
    (a model alone, e.g. for online recognition, needs no folder).
    """
    ignored: list[str] = []
    data, model = stored.get("data"), stored.get("model")
    user_data = user_data or {}
    stored_root = stored_data_dir
    new_root = str(data_dir) if data_dir is not None else None
    if isinstance(data, dict):
        for key in DATA_LOCATIONS:
            value = _get(data, key)
            if value is None:
                continue
            if _get(user_data, key) is not None:  # the user's own: merged later
                continue
            moved = _rebase_any(value, stored_root, new_root)
            if moved is None:
                ignored.append(
                    f"data.{key}={value} (outside the training run's data dir: give "
                    f"data.{key}=... to read data)"
                )
            elif moved != value:
                ignored.append(f"data.{key}={value} (now {moved})")
            _set(data, key, moved)
        for key in DATA_TRAINING_ONLY:
            if _get(data, key) is not None:
                ignored.append(f"data.{key}={_get(data, key)}")
                _set(data, key, None)
        cores = os.cpu_count() or 1
        for key in DATA_WORKER_KEYS:
            value = _get(data, key)
            if isinstance(value, int) and not isinstance(value, bool) and value > cores:
                ignored.append(f"data.{key}={value} (capped at {cores}, this machine's cores)")
                _set(data, key, cores)
        _check_synthetic(data.get("synthetic"), source)
    if isinstance(model, dict):
        ignored += _relocate_model(model, "model", stored_root, new_root, state_dict or {})
    return ignored


def _relocate_model(
    node: Any,
    where: str,
    stored_root: str | None,
    new_root: str | None,
    state_dict: Mapping[str, Any],
) -> list[str]:
    ignored: list[str] = []
    stack: list[tuple[Any, str]] = [(node, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key in list(item):
                value = item[key]
                if key in MODEL_FILE_KEYS and isinstance(value, str):
                    ignored.append(f"{path}.{key}={value}")
                    item[key] = None
                elif key in MODEL_CACHE_KEYS and isinstance(value, str):
                    moved = _rebase_any(value, stored_root, new_root)
                    if moved != value:
                        ignored.append(
                            f"{path}.{key}={value}" + (f" (now {moved})" if moved else "")
                        )
                    item[key] = moved
                else:
                    stack.append((value, f"{path}.{key}"))
            if str(item.get("_target_", "")).endswith("LabelEmbeddingHead"):
                _label_embeddings_from_state(item, path, state_dict)
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))
    return ignored


def _label_embeddings_from_state(
    node: dict[str, Any], path: str, state_dict: Mapping[str, Any]
) -> None:
    """A label-embedding head rebuilt from a checkpoint takes its (K, D) targets from the state
    dict (``<module>.targets``) instead of computing or reading them (no file, no model)."""
    prefix = path.removeprefix("model.")
    targets = state_dict.get(f"{prefix}.targets")
    if targets is None:
        candidates = [k for k in state_dict if k.endswith("label_embedding.targets")]
        targets = state_dict[candidates[0]] if len(candidates) == 1 else None
    if targets is not None and hasattr(targets, "tolist"):
        node["embeddings"] = targets.float().tolist()
        node["_convert_"] = "all"  # plain lists for the constructor, not a ListConfig


def _check_synthetic(synth: Any, source: str) -> None:
    """Refuse a synthetic-generator block asking for more than :data:`SYNTHETIC_LIMITS`."""
    if not isinstance(synth, Mapping):
        return

    def numbers(value: Any) -> list[float]:
        items = value.values() if isinstance(value, Mapping) else value
        items = items if isinstance(items, list | tuple) or isinstance(value, Mapping) else [items]
        return [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]

    checks = {
        "num_videos": (sum(numbers(synth.get("num_videos", {}) or {})), "videos"),
        "clips_per_video": (
            max(numbers(synth.get("clips_per_video") or [0]) or [0]),
            "clips_per_video",
        ),
        "min_video_frames": (
            max(numbers(synth.get("min_video_frames") or 0) or [0]),
            "min_video_frames",
        ),
        "frame_size": (max(numbers(synth.get("frame_size") or [0]) or [0]), "frame_side"),
    }
    for key, (value, limit_name) in checks.items():
        limit = SYNTHETIC_LIMITS[limit_name]
        if value > limit:
            raise UnsafeCheckpointError(
                f"{source}: its data.synthetic.{key} asks for {value:g} (limit {limit}); a "
                f"checkpoint may not make the suite generate more than that: give "
                f"data.synthetic.{key}=... on the command line"
            )


# -- the whole procedure ------------------------------------------------------------------------
def sanitize_stored_config(
    stored: Any,
    source: str,
    *,
    user_data: Mapping[str, Any] | None = None,
    data_dir: str | os.PathLike | None = None,
    state_dict: Mapping[str, Any] | None = None,
    trusted_targets: Iterable[str] = (),
    upgrade: Any = None,
) -> DictConfig:
    """The ``{"data", "model"}`` config to rebuild a checkpoint's model and data from: steps 1-5
    of the module doc on ``stored`` (a checkpoint's stored run config, plain containers).

    Args:
        stored: the checkpoint's stored config.
        source: what to call it in messages (``checkpoint <path>``).
        user_data: the current run's ``data`` overrides, already resolved (plain containers).
        data_dir: the current run's ``paths.data_dir``.
        state_dict: the checkpoint's weights (label-embedding targets come from there).
        trusted_targets: extra exact ``_target_`` names (and dataset specs) the user trusts.
        upgrade: a function mapping an old stored tree to today's shape (renamed classes).

    Raises:
        UnsafeCheckpointError: any refusal (names ``source`` and the offending key).
    """
    if not isinstance(stored, Mapping):
        raise UnsafeCheckpointError(
            f"{source}: its stored config is a {type(stored).__name__}, not a mapping"
        )
    check_plain_tree(stored, source)
    missing = [part for part in ("data", "model") if not isinstance(stored.get(part), Mapping)]
    if missing:
        raise UnsafeCheckpointError(f"{source}: its stored config has no {missing} section")
    tree: dict[str, Any] = {"data": stored["data"], "model": stored["model"]}
    if upgrade is not None:
        tree = upgrade(tree)
    tree = _copy(tree)
    paths = stored.get("paths")
    stored_data_dir = paths.get("data_dir") if isinstance(paths, Mapping) else None
    user = _drop_none(_copy(dict(user_data or {})))
    check_plain_tree(user, "the data overrides of this run")
    ignored = relocate(tree, source, user, data_dir, state_dict, stored_data_dir)
    if ignored:
        log.warning(
            "%s: not taken from the checkpoint (locations come from this run): %s",
            source,
            "; ".join(sorted(ignored)),
        )
    if user:
        tree["data"] = _merge(tree["data"], user)
    check_config_targets(tree, source, trusted_targets)
    return OmegaConf.create(tree)


def _copy(tree: Any) -> Any:
    """A deep copy of a plain tree (already checked: bounded depth)."""
    if isinstance(tree, Mapping):
        return {k: _copy(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [_copy(v) for v in tree]
    return tree


def _drop_none(tree: dict[str, Any]) -> dict[str, Any]:
    """The user's overrides without their null entries (null = not given: the entry point's
    config declares ``data.release_root: null`` so that it can be set without a ``+``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


def _merge(base: Any, over: Any) -> Any:
    """``over`` merged into ``base`` (dicts key by key, anything else replaced)."""
    if isinstance(base, dict) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v) if k in base else _copy(v)
        return out
    return _copy(over)
