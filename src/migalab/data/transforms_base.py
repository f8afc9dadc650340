"""Base classes shared by the skeleton and the RGB transforms: ``Compose`` and ``RandomTransform``.

Transforms are small callables over a clip record (``migalab.data.skeleton.transforms``) or over
decoded frames (``migalab.data.video.transforms``); a pipeline is a ``Compose`` of them.

Randomness and reproducibility
------------------------------
Random transforms derive from ``RandomTransform`` and take
``seed: int | np.random.SeedSequence | np.random.Generator | None`` (``SeedLike``).

* ``None`` (use this for training): the transform lazily builds
  ``np.random.default_rng([torch.initial_seed(), crc32(class name)])`` and rebuilds it whenever
  ``torch.initial_seed()`` changes. Inside a DataLoader worker ``torch.initial_seed()`` is
  ``base_seed + worker_id`` (``base_seed`` is drawn from the main process' torch RNG each time an
  iterator is created), so every worker and every epoch gets its own stream, and the whole run is
  reproducible once torch is seeded (``torch.manual_seed`` / Lightning ``seed_everything``). No
  ``worker_init_fn`` is needed. The stream depends on the class *name*, not on its module.
* An int / SeedSequence / Generator gives one fixed stream (tests, one-off deterministic use).
  NOTE: a fixed stream is copied into every DataLoader worker and re-copied every epoch with
  non-persistent workers, so augmentations would repeat; do not use a fixed seed for training.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["Compose", "RandomTransform", "SeedLike"]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None


class Compose:
    """Apply transforms in order. The last one may be terminal (``FormatGCNInput`` -> ndarray)."""

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, record: Any) -> Any:
        out: Any = record
        for t in self.transforms:
            out = t(out)
        return out

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, i: int) -> Callable[[Any], Any]:
        return self.transforms[i]

    def __repr__(self) -> str:
        inner = "".join(f"\n  {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class RandomTransform:
    """Base class owning the numpy Generator of a random transform (see the module docstring)."""

    def __init__(self, seed: SeedLike = None) -> None:
        self._fixed = seed is not None
        self._rng: np.random.Generator | None = (
            None if seed is None else np.random.default_rng(seed)
        )
        self._torch_seed: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        """The generator for the next draw (re-seeded from torch when not fixed)."""
        if self._fixed:
            assert self._rng is not None
            return self._rng
        s = torch.initial_seed()
        if self._rng is None or s != self._torch_seed:
            salt = zlib.crc32(type(self).__name__.encode())
            self._rng = np.random.default_rng([s, salt])
            self._torch_seed = s
        return self._rng

    def rng_state(self) -> dict[str, Any] | None:
        """Where this transform's training stream stands (for mid-epoch checkpoints): the torch
        seed it was built from and the generator state; None for a fixed seed or an unused
        stream."""
        if self._fixed or self._rng is None:
            return None
        return {"seed": self._torch_seed, "state": self._rng.bit_generator.state}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`rng_state` (ignored for a fixed seed). The stream
        is rebuilt as usual once ``torch.initial_seed()`` differs from the saved seed."""
        if self._fixed:
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = state["state"]
        self._rng, self._torch_seed = rng, state["seed"]
