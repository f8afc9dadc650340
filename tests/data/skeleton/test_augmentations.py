"""Tests for ``resolve_augment`` (the public resolver of a config's ``augment`` options)."""

from __future__ import annotations

import pytest

from migalab.data.skeleton.transforms import DEFAULT_AUGMENT, RandomAffine, resolve_augment


def test_resolve_augment_defaults_switches_and_merges() -> None:
    assert resolve_augment(None) == DEFAULT_AUGMENT
    out = resolve_augment({"flip": False, "affine": {"rotate_deg": 5.0, "scale": [0.8, 1.2]}})
    assert out["flip"] is None
    assert out["affine"] == {**DEFAULT_AUGMENT["affine"], "rotate_deg": 5.0, "scale": (0.8, 1.2)}
    assert resolve_augment({"flip": True, "affine": None}) == {"flip": {"p": 0.5}, "affine": None}
    assert isinstance(RandomAffine(**out["affine"], seed=0), RandomAffine)  # valid kwargs
    resolve_augment({})["flip"]["p"] = 0.0  # a copy: the defaults stay as they are
    assert DEFAULT_AUGMENT["flip"] == {"p": 0.5}


@pytest.mark.parametrize(
    ("augment", "message"),
    [({"jitter": {}}, "unknown augment keys"), ({"flip": {"q": 1}}, "unknown flip augment options"),
     ({"flip": 0.5}, "must be a mapping, bool or None")],
)  # fmt: skip
def test_resolve_augment_rejects_unknown_options(augment: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_augment(augment)
