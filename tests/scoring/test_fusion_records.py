"""Fusion records (``fusion.from``: a ``fusion.json`` or a ``metrics.json``) and the fusion
options (``fusion.weights``, ``fusion.temperature``): strict reading and checking, every check
at its boundary, one :class:`FusionRecordError` (a user error naming the file) for each way a
record can be wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

import migalab.scoring.records as fr
from migalab.errors import UserError
from migalab.scoring.emotion import _fusion_weights
from migalab.scoring.ensemble import (
    CheckpointScores,
    SplitScores,
    fusion_weights_from_file,
    resolve_fusion_weights,
    resolve_temperatures,
)
from migalab.scoring.records import (
    FusionRecordError,
    check_temperatures,
    check_weights,
    read_fusion_record,
)


def _write(path: Path, data: Any) -> Path:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _refused(path: Path, match: str, n: int | None = None) -> FusionRecordError:
    with pytest.raises(FusionRecordError, match=match) as info:
        read_fusion_record(path, n)
    assert str(path) in str(info.value)  # the message names the file
    return info.value


def _entries(n: int) -> list[CheckpointScores]:
    out = []
    for i in range(n):
        e = CheckpointScores(path=f"{i}.ckpt", name=str(i), num_classes=2, class_names=None)
        e.splits["val"] = SplitScores(torch.zeros(2, 2), torch.tensor([0, 1]), ["a", "b"], True)
        out.append(e)
    return out


def test_the_error_is_a_user_error_and_a_value_error() -> None:
    assert issubclass(FusionRecordError, UserError) and issubclass(FusionRecordError, ValueError)


def test_reads_fusion_json_and_the_fusion_entry_of_metrics_json(tmp_path: Path) -> None:
    record = read_fusion_record(_write(tmp_path / "f.json", {"weights": [1, 2], "space": "x"}))
    assert record == {"weights": [1.0, 2.0], "temperatures": None, "space": "x"}
    assert all(type(w) is float for w in record["weights"])
    metrics = _write(tmp_path / "m.json", {"val": {"top1": 0.5}, "fusion": {
        "weights": [0.25, 0.75], "temperatures": [2, 0.5]}})  # fmt: skip
    record = read_fusion_record(metrics, 2)
    assert record["weights"] == [0.25, 0.75] and record["temperatures"] == [2.0, 0.5]
    assert fusion_weights_from_file(metrics) == [0.25, 0.75]
    # a record with weights at the top is read as it is, even with a fusion key
    both = _write(tmp_path / "b.json", {"weights": [1], "fusion": {"weights": [2]}})
    assert read_fusion_record(both)["weights"] == [1.0]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([1, 2], "must hold a JSON object, got list"),
        ("12", "must hold a JSON object, got str"),
        (12, "must hold a JSON object, got int"),
        ({"val": {}}, "holds no fusion weights"),
        ({"weights": None}, "holds no fusion weights"),
        ({"fusion": None, "val": {}}, r"holds no fusion weights \(its evaluation had one"),
        ({"fusion": [0.5, 0.5]}, "its fusion entry must be a JSON object"),
        ({"fusion": {"space": "probs"}}, "holds no fusion weights"),
        ({"weights": "12"}, r"weights must be a list of non-negative weights.*'12'"),
        ({"weights": 12}, "weights must be a list"),
        ({"weights": {"a": 1}}, "weights must be a list"),
        ({"weights": []}, "weights must not be empty"),
        ({"weights": [True, 1]}, r"weights\[0\] must be a number, got True"),
        ({"weights": [1, "2"]}, r"weights\[1\] must be a number, got '2'"),
        ({"weights": [1, None]}, r"weights\[1\] must be a number, got None"),
        ({"weights": [1, [2]]}, r"weights\[1\] must be a number"),
        ({"weights": [1, -0.5]}, r"weights\[1\] must be non-negative"),
        ({"weights": [0, 0]}, "must have a positive sum"),
        ({"weights": [1], "temperatures": "1"}, "temperatures must be a list"),
        ({"weights": [1], "temperatures": []}, "temperatures must not be empty"),
        ({"weights": [1], "temperatures": [0]}, r"temperatures\[0\] must be positive"),
        ({"weights": [1], "temperatures": [False]}, r"temperatures\[0\] must be a number"),
    ],
)
def test_malformed_records_are_refused_naming_the_file(
    tmp_path: Path, data: Any, match: str
) -> None:
    path = tmp_path / "fusion.json"
    path.write_text(json.dumps(data))
    _refused(path, match)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"weights": [NaN, 1]}', r"weights\[0\] must be finite"),
        ('{"weights": [1e400]}', r"weights\[0\] must be finite"),  # overflows to inf
        ('{"weights": [1, -Infinity]}', r"weights\[1\] must be finite"),
        ('{"weights": [1' + "0" * 400 + "]}", r"weights\[0\] must be finite"),  # a huge int
        ('{"weights": [1], "temperatures": [Infinity]}', r"temperatures\[0\] must be finite"),
        ('{"weights": [1, 2]', "not valid UTF-8 JSON"),
        ("", "not valid UTF-8 JSON"),
        ('{"weights": [1], "weights": [2]}', "duplicate key 'weights'"),
    ],
)
def test_non_json_and_non_finite_numbers_are_refused(tmp_path: Path, text: str, match: str) -> None:
    _refused(_write(tmp_path / "fusion.json", text), match)


def test_unreadable_and_binary_files_are_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "nope.json", "no such file")
    _refused(tmp_path, r"cannot be read \(Is a directory\)")  # a folder
    (tmp_path / "bin.json").write_bytes(b'{"weights": [1]}\xff')
    _refused(tmp_path / "bin.json", "not valid UTF-8 JSON")


def test_the_byte_limit_at_its_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fr.MAX_RECORD_BYTES == 4 * 1024 * 1024
    monkeypatch.setattr(fr, "MAX_RECORD_BYTES", 64)
    text = '{"weights": [1]}'
    path = _write(tmp_path / "f.json", text + " " * (64 - len(text)))  # exactly the limit
    assert read_fusion_record(path)["weights"] == [1.0]
    _write(path, text + " " * (65 - len(text)))
    _refused(path, "larger than 64 bytes")


def test_the_depth_limit_at_its_boundary(tmp_path: Path) -> None:
    assert fr.MAX_DEPTH == 32

    def nested(levels: int) -> str:  # the record object is level 1, "x"'s lists the rest
        return '{"weights": [1], "x": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"

    assert read_fusion_record(_write(tmp_path / "f.json", nested(32)))["weights"] == [1.0]
    _refused(_write(tmp_path / "f.json", nested(33)), "nested too deeply")
    # deeper than the parser's recursion limit: no RecursionError escapes
    _refused(_write(tmp_path / "f.json", "[" * 100_000 + "]" * 100_000), "nested too deeply")


def test_the_count_of_weights_and_temperatures(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.json", {"weights": [1, 2], "temperatures": [1, 2]})
    assert read_fusion_record(path, 2)["weights"] == [1.0, 2.0]
    for n in (1, 3):
        _refused(path, f"weights has 2 values for {n} checkpoints", n)
    _write(path, {"weights": [1, 2], "temperatures": [1, 2, 3]})
    _refused(path, "temperatures has 3 values for 2 checkpoints", 2)
    assert read_fusion_record(path)["temperatures"] == [1.0, 2.0, 3.0]  # count unknown


def test_messages_show_the_value_shortened() -> None:
    for value, match in (([float("nan")], "must be finite, got nan"),
                         ([-2.5], "must be non-negative, got -2.5"),
                         ([0, 0], r"positive sum, got \[0.0, 0.0\]")):  # fmt: skip
        with pytest.raises(FusionRecordError, match=match):
            check_weights(value)
    with pytest.raises(
        FusionRecordError, match=r"fusion.temperature\[0\] must be positive, got -3"
    ):
        check_temperatures([-3])
    with pytest.raises(FusionRecordError, match="must be a list of positive temperatures, one per"):
        check_temperatures("x")
    with pytest.raises(FusionRecordError, match="must be a list of non-negative weights, one per"):
        check_weights("x")
    # a repr of up to 60 characters is shown whole, a longer one as its first 57 and "..."
    with pytest.raises(FusionRecordError) as info:
        check_weights("a" * 58)  # repr: 60 characters
    assert str(info.value).endswith("got '" + "a" * 58 + "'")
    with pytest.raises(FusionRecordError) as info:
        check_weights("a" * 59)  # repr: 61 characters
    assert str(info.value).endswith("got '" + "a" * 56 + "...")


def test_interpolated_options_are_resolved() -> None:
    cfg = OmegaConf.create({"w": 0.25, "fusion": {"weights": ["${w}", 0.75]}})
    assert check_weights(cfg.fusion.weights, 2) == [0.25, 0.75]


def test_check_weights_boundaries() -> None:
    assert check_weights([0, 1]) == [0.0, 1.0]  # zero is allowed
    assert check_weights([0.0, 5e-324]) == [0.0, 5e-324]  # the smallest positive sum
    assert check_weights([-0.0, 1]) == [0.0, 1.0]
    with pytest.raises(FusionRecordError, match=r"fusion.weights\[0\] must be non-negative"):
        check_weights([-5e-324, 1])
    with pytest.raises(FusionRecordError, match="positive sum"):
        check_weights([0.0, -0.0])
    assert check_weights((1, 2), 2) == [1.0, 2.0]
    with pytest.raises(FusionRecordError, match="fusion.weights has 2 values for 3 checkpoints"):
        check_weights([1, 2], 3)


def test_check_temperatures_boundaries() -> None:
    assert check_temperatures(None, 2) is None
    assert check_temperatures([5e-324, 1e300], 2) == [5e-324, 1e300]
    for bad in (0.0, -0.0, -1.0):
        with pytest.raises(FusionRecordError, match=r"fusion.temperature\[1\] must be positive"):
            check_temperatures([1.0, bad])
    with pytest.raises(FusionRecordError, match="fusion.temperature has 1 values for 2"):
        check_temperatures([1.0], 2)


def test_command_line_options_go_through_the_same_checks() -> None:
    entries = _entries(2)
    fusion = OmegaConf.create({"weights": [1, 3], "space": "probs", "search": False})
    assert resolve_fusion_weights(fusion, entries)[0] == [1.0, 3.0]  # a ListConfig
    for bad, match in (("12", "must be a list"), (12, "must be a list"),
                       ([1, 2, 3], "3 values for 2 checkpoints"), ([True, 1], "a number"),
                       (["0.5", 0.5], "a number"), ([1, -1], "non-negative"),
                       ([0, 0], "positive sum"), ([float("nan"), 1], "finite")):  # fmt: skip
        fusion.weights = bad
        with pytest.raises(FusionRecordError, match=f"^fusion.weights.*{match}"):
            resolve_fusion_weights(fusion, entries)
    fusion.weights = None
    assert resolve_fusion_weights(fusion, entries)[0] is None  # equal weights
    for bad, match in (("hot", "null, fit or a list"), ([1.0], "1 values for 2"),
                       ([1.0, 0.0], "positive"), ([1.0, "2"], "a number"),
                       ([1.0, float("inf")], "finite")):  # fmt: skip
        with pytest.raises(FusionRecordError, match=f"^fusion.temperature.*{match}"):
            resolve_temperatures(OmegaConf.create({"temperature": bad}), entries)
    assert resolve_temperatures(OmegaConf.create({"temperature": [2, 0.5]}), entries) == [2, 0.5]


def test_fusion_from_checks_the_count_of_checkpoints(tmp_path: Path) -> None:
    path = _write(tmp_path / "fusion.json", {"weights": [0.2, 0.3, 0.5], "temperatures": None})
    fusion = OmegaConf.create({"from": str(path), "space": "probs"})
    with pytest.raises(FusionRecordError, match=f"{path}: weights has 3 values for 2"):
        resolve_fusion_weights(fusion, _entries(2))
    with pytest.raises(FusionRecordError, match=f"{path}: weights has 3 values for 2"):
        resolve_temperatures(fusion, _entries(2))
    weights, info = resolve_fusion_weights(fusion, _entries(3))
    assert weights == [0.2, 0.3, 0.5] and info["temperatures"] is None
    _write(path, {"weights": "12"})  # once read as [1, 2]
    with pytest.raises(FusionRecordError, match="must be a list"):
        resolve_fusion_weights(fusion, _entries(2))


def test_emotion_fusion_reads_and_checks_the_same_way(tmp_path: Path) -> None:
    path = _write(tmp_path / "fusion.json", {"weights": [0.2, 0.8]})
    fusion = OmegaConf.create({"from": str(path), "space": "logits", "weights": None})
    assert _fusion_weights(fusion, _entries(2), {})[0] == [0.2, 0.8]
    with pytest.raises(FusionRecordError, match="2 values for 3 checkpoints"):
        _fusion_weights(fusion, _entries(3), {})
    given = OmegaConf.create({"space": "logits", "weights": "12", "search": False})
    with pytest.raises(FusionRecordError, match="fusion.weights must be a list"):
        _fusion_weights(given, _entries(2), {})
    given.weights = [1, 1]
    assert _fusion_weights(given, _entries(2), {})[0] == [1.0, 1.0]


def test_fusion_from_record_and_defaults_of_the_search(tmp_path: Path) -> None:
    path = _write(tmp_path / "fusion.json", {"weights": [1, 3]})
    weights, info = resolve_fusion_weights(
        OmegaConf.create({"from": str(path), "space": "logits"}), _entries(2)
    )
    assert info == {"weights": [1.0, 3.0], "temperatures": None, "from": str(path),
                    "space": "logits", "checkpoints": ["0.ckpt", "1.ckpt"]}  # fmt: skip
    # no search key: given weights; search without grid_step / search_split: 0.05 on val
    weights, info = resolve_fusion_weights(OmegaConf.create({"space": "probs"}), _entries(2))
    assert weights is None and info == {"space": "probs", "temperatures": None, "weights": None,
                                        "checkpoints": ["0.ckpt", "1.ckpt"], "searched": False}  # fmt: skip
    weights, info = resolve_fusion_weights(
        OmegaConf.create({"space": "probs", "search": True}), _entries(2)
    )
    assert info["searched"] is True and info["grid_step"] == 0.05
    assert info["search_split"] == "val" and len(weights) == 2


def test_fit_needs_labelled_scores_of_the_default_split() -> None:
    entries = _entries(2)
    entries[1].splits["test"] = entries[1].splits.pop("val")
    with pytest.raises(ValueError, match="fusion.temperature=fit needs labelled val scores"):
        resolve_temperatures(OmegaConf.create({"temperature": "fit"}), entries)
    entries = _entries(2)
    entries[0].splits["val"].has_labels = False
    with pytest.raises(ValueError, match="needs labelled val scores"):
        resolve_temperatures(OmegaConf.create({"temperature": "fit"}), entries)
