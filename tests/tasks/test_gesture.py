"""GestureModule: forward shape, lr scaling with the global batch, param groups, channels-last
and torch.compile switches."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from migalab.models.encoders import AGCN
from migalab.models.heads import ClassificationHead
from migalab.tasks.gesture import GestureModule, lr_scale_factor
from migalab.tasks.losses import masked_aux_loss
from migalab.utils.schedulers import cosine_with_warmup

N, C, T, V, M, K = 2, 3, 16, 22, 1, 32


def _module(**kw: object) -> GestureModule:
    args: dict = dict(
        encoder=AGCN("imigue22", in_channels=C, num_persons=M, base_channels=8, num_units=4),
        head=functools.partial(ClassificationHead, num_classes=K),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        num_classes=K,
    )
    args.update(kw)
    return GestureModule(**args)


def _attach(module: GestureModule, batch_size: int, world_size: int, accumulate: int) -> None:
    """A stand-in for the trainer fields configure_optimizers reads."""
    module._trainer = SimpleNamespace(  # type: ignore[assignment]
        datamodule=SimpleNamespace(batch_size=batch_size),
        world_size=world_size,
        accumulate_grad_batches=accumulate,
        estimated_stepping_batches=100,
    )


def test_forward_gives_logits() -> None:
    module = _module().eval()
    with torch.no_grad():
        logits = module(torch.randn(N, C, T, V, M))
    assert logits.shape == (N, K)
    assert torch.isfinite(logits).all()


def test_lr_scale_factor_arithmetic() -> None:
    assert lr_scale_factor(256, 256) == 1.0
    assert lr_scale_factor(64 * 4 * 2, 128) == pytest.approx(4.0)
    assert lr_scale_factor(512, 128, "sqrt") == pytest.approx(2.0)
    assert lr_scale_factor(16, 64) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="rule"):
        lr_scale_factor(64, 32, "cubic")
    with pytest.raises(ValueError, match="positive"):
        lr_scale_factor(64, 0)


def test_configure_optimizers_scales_lr_with_global_batch() -> None:
    # per-device batch 8 x 4 processes x 2 accumulation = 64 = 2 x the base batch of 32
    module = _module(
        lr_scaling={"base_batch_size": 32},
        scheduler=functools.partial(cosine_with_warmup, warmup_fraction=0.0),
    )
    _attach(module, batch_size=8, world_size=4, accumulate=2)
    out = module.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert module.global_batch_size() == 64
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.2])
    assert sched.base_lrs == pytest.approx([0.2])  # the schedule starts from the scaled lr
    assert module.lr_info == {
        "global_batch": 64,
        "base_batch_size": 32,
        "factor": pytest.approx(2.0),
        "lrs": pytest.approx([0.2]),
    }


@pytest.mark.parametrize("lr_scaling", [None, {"base_batch_size": None}])
def test_lr_scaling_off_keeps_lr(lr_scaling: dict | None) -> None:
    module = _module(lr_scaling=lr_scaling)
    _attach(module, batch_size=8, world_size=4, accumulate=1)
    opt = module.configure_optimizers()
    assert [g["lr"] for g in opt.param_groups] == [0.1]
    assert module.lr_info == {}


def test_backbone_lr_mult_param_groups_and_scaling() -> None:
    module = _module(backbone_lr_mult=0.1, lr_scaling={"base_batch_size": 16, "rule": "linear"})
    _attach(module, batch_size=16, world_size=2, accumulate=1)  # x2
    opt = module.configure_optimizers()
    head, enc = opt.param_groups
    assert head["lr"] == pytest.approx(0.2)
    assert enc["lr"] == pytest.approx(0.02)
    enc_ids = {id(p) for p in module.encoder.parameters()}
    assert {id(p) for p in enc["params"]} == enc_ids
    assert not enc_ids & {id(p) for p in head["params"]}
    all_ids = {id(p) for p in module.parameters() if p.requires_grad}
    assert {id(p) for g in opt.param_groups for p in g["params"]} == all_ids


def test_bad_lr_scaling_rule_is_rejected() -> None:
    with pytest.raises(ValueError, match="lr_scaling.rule"):
        _module(lr_scaling={"base_batch_size": 32, "rule": "log"})


def test_channels_last_converts_convs_and_keeps_outputs() -> None:
    x = torch.randn(N, C, T, V, M)
    ref = _module().eval()
    module = _module(channels_last=True).eval()
    module.load_state_dict(ref.state_dict())
    module.setup("fit")
    conv = module.encoder.units[0].tcn.conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.allclose(module(x), ref(x), atol=1e-5)


def test_compile_keeps_parameter_names() -> None:
    """torch.compile in place (aot_eager: the compile path without generating C++; the default
    inductor backend works on CPU too but compiles for minutes, see the slow test)."""
    module = _module(compile={"backend": "aot_eager"}).eval()
    keys = list(module.state_dict())
    module.setup("fit")
    assert list(module.state_dict()) == keys  # checkpoints stay loadable without compile
    x = torch.randn(N, C, T, V, M)
    with torch.no_grad():
        assert module(x).shape == (N, K)


@pytest.mark.slow
def test_compile_inductor_on_cpu() -> None:
    module = _module(compile=True).eval()
    ref = _module().eval()
    ref.load_state_dict(module.state_dict())
    module.setup("fit")
    x = torch.randn(N, C, T, V, M)
    with torch.no_grad():
        assert torch.allclose(module(x), ref(x), atol=1e-4)


def test_multi_view_batch_averages_view_probabilities() -> None:
    module = _module().eval()
    views = torch.randn(N, 4, C, T, V, M)
    with torch.no_grad():
        out = module.predict_logits({"x": views, "views": torch.full((N,), 4)})
        per_view = torch.stack([module(views[:, k]) for k in range(4)], 1)
    assert out.shape == (N, K)
    expected = per_view.softmax(-1).mean(1)
    torch.testing.assert_close(out.softmax(-1), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.exp(), expected, atol=1e-5, rtol=1e-4)


def test_training_step_rejects_multi_view_batches() -> None:
    module = _module()
    batch = {"x": torch.randn(N, 2, C, T, V, M), "views": torch.full((N,), 2),
             "label": torch.zeros(N, dtype=torch.long)}  # fmt: skip
    with pytest.raises(ValueError, match="one view"):
        module.training_step(batch, 0)


class _AuxHead(torch.nn.Module):
    """Minimal label-embedding head: the interface GestureModule relies on."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(in_channels, 5)
        self.register_buffer("targets", torch.randn(K, 5))
        self.reg_calls = 0

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.proj(pooled)

    def loss(self, pred: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 20.0 * torch.nn.functional.mse_loss(pred, self.targets[labels])

    def classifier_regulariser(self, weight: torch.Tensor) -> torch.Tensor:
        self.reg_calls += 1
        return weight.sum() * 0.0


def test_label_embedding_adds_its_loss_and_gets_gradients() -> None:
    torch.manual_seed(0)
    module = _module(label_embedding=functools.partial(_AuxHead))
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    x, labels = torch.randn(N, C, T, V, M), torch.tensor([3, 7])
    loss = module.training_step({"x": x, "label": labels}, 0)
    with torch.no_grad():
        pooled = module.features(x)
        cls = module.loss_fn(module.head(pooled), labels)
        aux = module.label_embedding.loss(module.label_embedding(pooled), labels)
    torch.testing.assert_close(loss.detach(), cls + aux)
    loss.backward()
    assert module.label_embedding.proj.weight.grad is not None
    assert module.label_embedding.reg_calls == 1
    # evaluation ignores the auxiliary head
    with torch.no_grad():
        assert module.predict_logits({"x": x}).shape == (N, K)


def _fusion_module(**kw: object) -> GestureModule:
    """A GestureModule over a tiny joint + bone token fusion (aux heads on)."""
    from migalab.models.fusion import CrossModalTokenFusion

    def agcn() -> AGCN:
        return AGCN("imigue22", in_channels=C, num_persons=M, base_channels=4, num_units=4)

    neck = functools.partial(CrossModalTokenFusion, num_classes=K, dim=16, heads=2, depth=1)
    return _module(encoder=None, encoders={"joint": agcn(), "bone": agcn()}, neck=neck,
                   aux_loss_weight=0.5, backbone_lr_mult=0.1, **kw)  # fmt: skip


def test_dict_input_with_input_key_feeds_one_modality() -> None:
    module = _module(input_key="joint").eval()
    x = torch.randn(N, C, T, V, M)
    with torch.no_grad():
        a = module({"joint": x, "rgb": torch.zeros(N, 3, 4, 32, 32)})
        b = module(x)
    torch.testing.assert_close(a, b)
    with pytest.raises(KeyError, match="input_key"):
        module({"bone": x})


def test_fusion_predicts_with_a_missing_modality() -> None:
    module = _fusion_module().eval()
    x = torch.randn(N, C, T, V, M)
    with torch.no_grad():
        both = module({"joint": x, "bone": x})
        joint_only = module({"joint": x})
        logits = module.predict_logits({"x": {"bone": x}, "label": torch.zeros(N).long()})
    for out in (both, joint_only, logits):
        assert out.shape == (N, K) and torch.isfinite(out).all()
    assert not torch.allclose(both, joint_only)


def test_fusion_training_step_adds_masked_aux_loss() -> None:
    module = _fusion_module()
    logged: dict[str, float] = {}

    def log(name: str, value: object, **kw: object) -> None:
        if isinstance(value, torch.Tensor):
            logged[name] = float(value.detach())

    module.log = log  # type: ignore[method-assign]
    labels = torch.randint(0, K, (N,))
    x = {"joint": torch.randn(N, C, T, V, M), "bone": torch.randn(N, C, T, V, M),
         "present": {"bone": torch.tensor([True, False])}}  # fmt: skip
    loss = module.training_step({"x": x, "label": labels}, 0)
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(logged["train/main_loss"] + 0.5 * logged["train/aux_loss"],
                                        rel=1e-5)  # fmt: skip
    # the bone aux loss only counts the sample whose bone stream is present
    pooled, aux = module.encode(x)
    expected = (
        module.loss_fn(aux["joint"], labels) + module.loss_fn(aux["bone"][:1], labels[:1])
    ) / 2
    got = masked_aux_loss(aux, labels, module.present_flags(x), module.loss_fn)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    for name in ("joint", "bone"):
        assert all(p.grad is not None for p in module.neck.aux_heads[name].parameters())


def test_backbone_lr_mult_applies_to_fusion_backbones_only() -> None:
    module = _fusion_module()
    _attach(module, batch_size=8, world_size=1, accumulate=1)
    module.scheduler_factory = None
    opt = module.configure_optimizers()
    rest, backbones = opt.param_groups
    backbone_ids = {id(p) for p in module.encoders.parameters()}
    assert {id(p) for p in backbones["params"]} == backbone_ids
    assert backbones["lr"] == pytest.approx(0.1 * rest["lr"])
    neck_ids = {id(p) for p in module.neck.parameters()}
    assert neck_ids and neck_ids <= {id(p) for p in rest["params"]}
    assert module.backbone_prefix() == "encoders."
    assert _module().backbone_prefix() == "encoder."


def test_initial_weights_checkpoint_after_own_loading(tmp_path) -> None:
    """An encoder's ``checkpoint`` overrides what the encoder loaded itself (pretrained)."""
    from migalab.models.finetune import load_initial_weights
    from migalab.models.fusion import CrossModalTokenFusion

    def agcn(**kwargs: Any) -> AGCN:
        return AGCN("imigue22", in_channels=C, num_persons=M, base_channels=4, num_units=4,
                    **kwargs)  # fmt: skip

    calls: list[str] = []

    class SelfLoading(AGCN):
        def load_initial_weights(self) -> list[str]:
            calls.append("encoder")
            with torch.no_grad():
                for p in self.parameters():
                    p.fill_(-1.0)
            return ["encoder pretrained"]

    trained = agcn()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    path = tmp_path / "joint.ckpt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in trained.state_dict().items()}}, path)
    enc = SelfLoading("imigue22", in_channels=C, num_persons=M, base_channels=4, num_units=4,
                      init=str(path))  # fmt: skip
    neck = functools.partial(CrossModalTokenFusion, num_classes=K, dim=16, heads=2)
    module = _module(encoder=None, encoders={"joint": enc, "bone": agcn()}, neck=neck)
    assert load_initial_weights(module) == [
        "encoder pretrained",
        f"encoders.joint <- {path}",
    ]
    assert calls == ["encoder"]
    w = module.encoders["joint"].units[0].tcn.conv.weight
    assert torch.equal(w, trained.units[0].tcn.conv.weight)
    module.setup("fit")  # setup never loads initial weights (train.py decides: fresh fits only)
    assert calls == ["encoder"]


def test_class_count_from_class_names_and_old_datamodule_state() -> None:
    names = [f"c{k}" for k in range(K)]
    assert _module(num_classes=None, class_names=names).num_classes == K
    with pytest.raises(ValueError, match="num_classes or class_names"):
        _module(num_classes=None)
    # a checkpoint written before the datamodule's rename keeps its training-loader position
    ckpt = {"SkeletonDataModule": {"train_position": {"epoch": 1, "batches": 3}}}
    _module().on_load_checkpoint(ckpt)
    assert ckpt == {"ClipDataModule": {"train_position": {"epoch": 1, "batches": 3}}}


def test_channels_last_handles_3d_convs() -> None:
    """A model with 3D convolutions (PoseC3D, ResNet3D, X3D, MViT's patch embedding): its 5-D
    weights go channels_last_3d (Module.to(memory_format=channels_last) raises on them), its
    2-D ones channels_last, and the outputs do not change."""
    from migalab.models.encoders.resnet3d import ResNet3D

    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 32, 32)
    kw = dict(encoder=ResNet3D("xs", temporal_size=4, spatial_size=32), num_classes=K)
    ref = _module(**kw).eval()
    module = _module(**{**kw, "encoder": ResNet3D("xs", temporal_size=4, spatial_size=32)})
    module = module.eval()
    module.channels_last = True
    module.load_state_dict(ref.state_dict())
    module.setup("fit")
    stem = module.encoder.stem[0].weight
    assert stem.dim() == 5 and stem.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        assert torch.allclose(module(x), ref(x), atol=1e-5)


def test_fusion_evaluation_reports_each_streams_accuracy() -> None:
    """The neck's auxiliary heads are scored per stream in validation / test, each on the
    samples where its stream is present; the fused logits and loss are those of predict_logits.
    A single-encoder model has no stream metrics."""
    module = _fusion_module().eval()
    logged: dict[str, float] = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, float(value))  # type: ignore[method-assign]
    torch.manual_seed(0)
    x = {"joint": torch.randn(N, C, T, V, M), "bone": torch.randn(N, C, T, V, M),
         "present": {"bone": torch.tensor([True, False])}}  # fmt: skip
    with torch.no_grad():
        _, aux = module.encode(x)
        labels = torch.stack([aux["joint"][0].argmax(), aux["bone"][1].argmax()])  # bone 1 absent
        logits = module._eval_step({"x": x, "label": labels}, module.val_metrics, "val")
        torch.testing.assert_close(logits, module.predict_logits({"x": x, "label": labels}))
    module._log_epoch(module.val_metrics, "val")
    joint = float((aux["joint"].argmax(1) == labels).float().mean())
    bone = float(aux["bone"][0].argmax() == labels[0])  # only the present sample counts
    assert module.last_summaries["val"]["stream_top1"] == pytest.approx(
        {"joint": joint, "bone": bone}
    )
    assert logged["val/stream_top1/joint"] == pytest.approx(joint)
    # an epoch without a stream: NaN, logged on every process alike (no DDP hang)
    with torch.no_grad():
        module._eval_step({"x": {"joint": x["joint"]}, "label": labels}, module.val_metrics, "val")
    module._log_epoch(module.val_metrics, "val")
    summary = module.last_summaries["val"]["stream_top1"]
    assert summary["joint"] == pytest.approx(joint) and math.isnan(summary["bone"])
    assert math.isnan(logged["val/stream_top1/bone"])
    single = _module().eval()
    assert len(single.val_stream_top1) == 0
    single.log = lambda *a, **k: None  # type: ignore[method-assign]
    with torch.no_grad():
        single._eval_step(
            {"x": torch.randn(N, C, T, V, M), "label": labels}, single.val_metrics, "val"
        )
    single._log_epoch(single.val_metrics, "val")
    assert "stream_top1" not in single.last_summaries["val"]


class _Batches(L.LightningDataModule):
    """Fixed predict batches (a stand-in datamodule for ``predict_split``)."""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        super().__init__()
        self.batches = batches

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)  # each item is a batch


def _predict(module: GestureModule, batches: list[dict[str, Any]]) -> dict[str, Any]:
    from migalab.scoring.ensemble import predict_split

    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    return predict_split(module, _Batches(batches), "test", trainer)


def test_evaluation_scores_each_stream_as_the_test_pass_does() -> None:
    """``migalab-eval``'s scoring of a fusion: ``predict_step`` gives each stream's class (-1
    where the stream is absent), ``predict_split`` puts them in dataset order, and
    ``evaluate_scores`` reports ``stream_top1`` equal to the training run's test pass on the
    same clips; a single-encoder model gives none."""
    from migalab.scoring.ensemble import CheckpointScores, SplitScores, evaluate_scores

    module = _fusion_module().eval()
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    torch.manual_seed(0)
    batches = []
    for index, bone in (([3, 1], [True, False]), ([0, 2], [False, True])):  # out of order
        x = {"joint": torch.randn(N, C, T, V, M), "bone": torch.randn(N, C, T, V, M),
             "present": {"bone": torch.tensor(bone)}}  # fmt: skip
        with torch.no_grad():
            _, aux = module.encode(x)
        # every clip's label is the absent-or-not bone head's class: bone is right on all four
        # clips, but only its two present clips may count
        labels = aux["bone"].argmax(1)
        batches.append({"x": x, "label": labels, "index": torch.tensor(index)})
    out = _predict(module, batches)
    preds = out["stream_preds"]
    assert set(preds) == {"joint", "bone"} and out["labels"].shape == (4,)
    assert (preds["bone"] >= 0).tolist() == [False, False, True, True]  # clips 0..3
    with torch.no_grad():
        for b in batches:
            module._eval_step(b, module.test_metrics, "test")
            fused = module.predict_logits(b)
            torch.testing.assert_close(out["logits"][b["index"]], fused)
    module._log_epoch(module.test_metrics, "test")
    entry = CheckpointScores("a.ckpt", "a", K, None)
    entry.splits["test"] = SplitScores(out["logits"], out["labels"], list("abcd"), True,
                                       stream_preds=preds)  # fmt: skip
    metrics, _ = evaluate_scores([entry], ["test"])
    expected = module.last_summaries["test"]["stream_top1"]
    assert metrics["test"]["stream_top1"] == pytest.approx(expected)
    assert metrics["test"]["top1"] == pytest.approx(module.last_summaries["test"]["top1"])
    assert metrics["test"]["stream_top1"]["bone"] == 1.0  # on its two present clips
    single = _module().eval()
    plain = [{"x": torch.randn(N, C, T, V, M), "label": torch.zeros(N, dtype=torch.long),
              "index": torch.arange(N)}]  # fmt: skip
    assert _predict(single, plain)["stream_preds"] is None
    entry.splits["test"] = SplitScores(out["logits"], out["labels"], list("abcd"), True)
    assert "stream_top1" not in evaluate_scores([entry], ["test"])[0]["test"]
