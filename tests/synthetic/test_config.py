"""SynthConfig: validation, class prior, hash."""

from __future__ import annotations

import numpy as np
import pytest

from migalab.synthetic import CLASS_NAMES, SynthConfig
from migalab.synthetic.config import IMIGUE_TRAIN_FREQ


def test_class_names():
    assert len(CLASS_NAMES) == 32
    assert CLASS_NAMES[0] == "turtle neck" and CLASS_NAMES[31] == "illustrative"


def test_prior_keeps_long_tail_and_rare_classes():
    cfg = SynthConfig()
    p = cfg.class_prior()
    assert p.sum() == pytest.approx(1.0)
    assert p.min() >= cfg.tail_mix / 32 - 1e-12
    assert np.argmax(p) == 31 and np.argsort(p)[-2] == 30  # iMiGUE's head stays on top
    assert np.corrcoef(p, IMIGUE_TRAIN_FREQ)[0, 1] > 0.99
    pure = SynthConfig(tail_mix=0.0).class_prior()
    np.testing.assert_allclose(pure, IMIGUE_TRAIN_FREQ / IMIGUE_TRAIN_FREQ.sum())


def test_emotion_priors_average_to_base():
    cfg = SynthConfig()
    lose, win = cfg.class_prior(0), cfg.class_prior(1)
    np.testing.assert_allclose((lose + win) / 2, cfg.class_prior(), atol=1e-3)
    assert lose[[3, 7, 10, 28]].sum() > win[[3, 7, 10, 28]].sum()  # losers touch their face more
    assert win[31] > lose[31]
    flat = SynthConfig(emotion_effect=0.0)
    np.testing.assert_allclose(flat.class_prior(0), flat.class_prior(1))


def test_hash_ignores_workers_only():
    a = SynthConfig()
    assert a.config_hash() == SynthConfig(workers=8).config_hash()
    assert a.config_hash() != SynthConfig(seed=1).config_hash()
    assert a.config_hash() != SynthConfig(table_format="csv").config_hash()
    assert SynthConfig.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    "kw",
    [
        {"table_format": "json"},
        {"clip_frames": (50, 20)},
        {"num_videos": {"train": -1}},
        {"num_videos": {"val": 3}},
        {"tail_mix": 1.5},
        {"clip_classes": (32,)},
        {"noise": -1.0},
        {"hand_miss": (-0.01, 0.0)},
        {"hand_miss": (0.0, 1.01)},
        {"hand_miss": (0.5,)},
        {"hand_miss": "often"},
    ],
)
def test_invalid(kw):
    with pytest.raises(ValueError):
        SynthConfig(**kw)


def test_hand_miss_hashed_only_when_set():
    # the default leaves the hash of every existing release unchanged (pinned value)
    assert SynthConfig().config_hash() == "cdb887ffcb5b88fc"
    assert SynthConfig(hand_miss=(0.0, 0.0)).config_hash() == SynthConfig().config_hash()
    assert SynthConfig(hand_miss=(0.0, 0.01)).config_hash() != SynthConfig().config_hash()
    for edge in ((0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0)):
        assert SynthConfig(hand_miss=edge).hand_miss == edge
    cfg = SynthConfig(hand_miss=[0.3, 0.2])
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
