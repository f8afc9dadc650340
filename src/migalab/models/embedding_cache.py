"""On-disk cache of per-frame embeddings of a frozen encoder (SwinFace face crops first).

A frozen encoder maps a crop to the same embedding in every run, so embeddings are computed once
and read back later. An entry is keyed by

* the **fingerprint** of the encoder (:func:`module_fingerprint`: a SHA-256 of its configuration
  string and every parameter and buffer): other weights (another checkpoint, a fine-tuned
  encoder) use another folder, so a stale embedding is never returned;
* the **crop identity**: a string the caller chooses that determines the pixels, e.g.
  ``"<video>:<frame>:<x0>,<y0>,<x1>,<y1>:112"`` (video id, frame index, crop box, size) for
  crops taken from a video, or the path + mtime of a prepared crop file.

Layout: ``<root>/<fingerprint[:24]>/<sha1(key)[:2]>/<sha1(key)>.npy`` (one float16 / float32
array per key; any shape ending in ``dim``, so a caller may also store a whole clip's (T, dim)
embeddings under one key) and ``<root>/<fingerprint[:24]>/meta.json``. Every file is written
to a temporary name and moved into place (``os.replace``), so concurrent writers (DDP ranks,
loader workers) and interrupted runs leave only whole files; a file that cannot be read counts
as a miss and is rewritten.

Interface for a datamodule (or any caller)::

    cache = EmbeddingCache(root, encoder.fingerprint(), dim=encoder.out_channels)
    emb = cache.get_or_compute(keys, lambda idx: encoder.embed_images(crops[idx]))  # (N, dim)
    cache.get(key) / cache.put(key, array) / key in cache / cache.hits, cache.misses

:class:`migalab.models.encoders.swinface.SwinFaceEncoder` does this itself when built with
``cache_dir`` and called with ``keys`` (frozen mode); a dataset that reads cached embeddings
feeds them to the encoder as (B, T, dim) instead of the crops.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from migalab.utils.io import atomic_write, atomic_write_json

__all__ = ["EmbeddingCache", "module_fingerprint"]

_DTYPES = ("float16", "float32")


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def module_fingerprint(module: nn.Module, extra: str = "") -> str:
    """SHA-256 hex digest of ``extra`` and every parameter and buffer of ``module`` (name,
    dtype, shape, bytes).

    The digest is memoised on the module and recomputed only when a tensor changed: in-place
    updates (``load_state_dict``, an optimiser step, ``copy_``) bump a tensor's version counter,
    a replaced tensor has a new storage, and both are part of the memo key. Hashing Swin-T's
    ~110 MB takes a fraction of a second; a memo hit costs a walk over the tensors.
    """
    tensors = [*module.named_parameters(), *module.named_buffers()]
    stamp = (extra, tuple((n, t._version, t.data_ptr(), tuple(t.shape)) for n, t in tensors))
    memo = getattr(module, "_fingerprint_memo", None)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    h = hashlib.sha256(extra.encode())
    for name, t in tensors:
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(_tensor_bytes(t))
    digest = h.hexdigest()
    object.__setattr__(module, "_fingerprint_memo", (stamp, digest))  # not a submodule/buffer
    return digest


class EmbeddingCache:
    """Embeddings of crops under ``root``, for one encoder ``fingerprint``.

    Args:
        root: the cache folder (shared by all fingerprints).
        fingerprint: the encoder's :func:`module_fingerprint` (hex string, >= 24 characters).
        dim: embedding width; stored arrays must end in it.
        dtype: ``"float16"`` (default, half the disk; ~1e-3 relative error) or ``"float32"``.

    Attributes:
        dir: this fingerprint's folder.
        hits, misses: lookups answered from disk / computed, since construction.
    """

    def __init__(
        self, root: str | Path, fingerprint: str, dim: int, dtype: str = "float16"
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"cache dtype must be one of {_DTYPES}, got {dtype!r}")
        if len(fingerprint) < 24:
            raise ValueError(f"fingerprint {fingerprint!r} is too short (a hex digest expected)")
        self.root, self.fingerprint = Path(root), fingerprint
        self.dim, self.dtype = int(dim), dtype
        self.dir = self.root / fingerprint[:24]
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        """The file of ``key``."""
        h = hashlib.sha1(str(key).encode()).hexdigest()
        return self.dir / h[:2] / f"{h}.npy"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> np.ndarray | None:
        """The stored array of ``key`` (float32), or None (absent, unreadable or of another
        width)."""
        try:
            arr = np.load(self.path(key), allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            return None
        return arr.astype(np.float32)

    def put(self, key: str, value: np.ndarray | torch.Tensor) -> Path:
        """Store ``value`` (..., dim) under ``key`` atomically; returns its path."""
        if isinstance(value, torch.Tensor):
            value = value.detach().float().cpu().numpy()
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.shape[-1] != self.dim:
            raise ValueError(f"embedding of {key!r} must end in {self.dim}, got {arr.shape}")
        if not (self.dir / "meta.json").is_file():
            self.write_meta()
        return atomic_write(self.path(key), lambda f: np.save(f, arr.astype(self.dtype)))

    def write_meta(self, **info: Any) -> Path:
        """``meta.json``: fingerprint, width, dtype and ``info``."""
        meta = {"fingerprint": self.fingerprint, "dim": self.dim, "dtype": self.dtype, **info}
        return atomic_write_json(self.dir / "meta.json", meta)

    def meta(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.dir / "meta.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def get_or_compute(
        self,
        keys: Sequence[str],
        compute: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Embeddings (N, dim) float32 of the N ``keys``: stored ones are read, the misses are
        computed with one call ``compute(idx)`` (``idx``: (M,) long indices into ``keys``,
        returning (M, dim)) and stored. Repeated keys are computed once."""
        out = torch.empty(len(keys), self.dim, dtype=torch.float32)
        missing: list[int] = []
        first: dict[str, int] = {}
        dup: list[tuple[int, int]] = []
        for i, key in enumerate(keys):
            if key in first:
                dup.append((i, first[key]))
                continue
            first[key] = i
            arr = self.get(key)
            if arr is None or arr.shape != (self.dim,):
                missing.append(i)
            else:
                out[i] = torch.from_numpy(arr)
        self.hits += len(first) - len(missing)
        self.misses += len(missing)
        if missing:
            idx = torch.tensor(missing, dtype=torch.long, device=device)
            with torch.no_grad():
                emb = compute(idx).detach().float().cpu()
            if tuple(emb.shape) != (len(missing), self.dim):
                raise ValueError(
                    f"compute returned {tuple(emb.shape)}, expected ({len(missing)}, {self.dim})"
                )
            for row, i in enumerate(missing):
                self.put(keys[i], emb[row])
            # what later runs will read (float16 rounding included): every run sees the same
            out[missing] = emb.to(getattr(torch, self.dtype)).float()
        for i, j in dup:
            out[i] = out[j]
        return out if device is None else out.to(device)
