from functools import partial

import pytest
import torch
from torch import nn

from migalab.models.encoders import AGCN
from migalab.models.encoders.mvit import MViTEncoder
from migalab.models.finetune import (
    FINETUNE_MODES,
    FinetuneMixin,
    apply_finetune,
    keep_frozen_in_eval,
    load_initial_weights,
)
from migalab.models.fusion import CrossModalTokenFusion
from migalab.models.fusion.streams import FusedEncoders


class Toy(FinetuneMixin, nn.Module):
    """stem BN -> 3 blocks (linear + dropout) -> final norm, plus a free parameter."""

    def __init__(self, mode: str = "full", trainable_blocks: int = 0) -> None:
        super().__init__()
        self.stem = nn.BatchNorm1d(4)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5)) for _ in range(3)
        )
        self.norm = nn.LayerNorm(4)
        self.extra = nn.Sequential(nn.BatchNorm1d(4))  # outside blocks: frozen by "partial"
        self.configure_finetune(mode, [self.stem, *self.blocks], trainable_blocks, [self.norm])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.extra(self.norm(x))


def trainable_names(m: nn.Module) -> set[str]:
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_modes_and_validation():
    assert FINETUNE_MODES == ("full", "frozen", "partial")
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="must be one of"):
        apply_finetune(m, "linear_probe", list(m))
    with pytest.raises(ValueError, match=r"in \[0, 2\]"):
        apply_finetune(m, "partial", list(m), trainable_blocks=3)
    with pytest.raises(ValueError, match=r"in \[0, 2\]"):
        apply_finetune(m, "partial", list(m), trainable_blocks=-1)
    with pytest.raises(ValueError, match="only applies to finetune='partial'"):
        apply_finetune(m, "full", list(m), trainable_blocks=1)
    with pytest.raises(ValueError, match="not part of the module"):
        apply_finetune(m, "partial", [nn.Linear(2, 2)], trainable_blocks=1)
    with pytest.raises(ValueError, match="always_trainable"):
        apply_finetune(m, "partial", list(m), 1, always_trainable=[nn.LayerNorm(2)])


def test_full_and_frozen():
    toy = Toy("full")
    assert trainable_names(toy) == {n for n, _ in toy.named_parameters()}
    assert toy.frozen_modules == ()
    toy = Toy("frozen").train()
    assert trainable_names(toy) == set()
    assert toy.frozen_modules == (toy,)
    assert not any(m.training for m in toy.modules())  # no recursion through train()
    before = toy.stem.running_mean.clone()
    x = torch.randn(8, 4) + 3
    y1, y2 = toy(x), toy(x)
    torch.testing.assert_close(y1, y2)  # dropout off
    assert torch.equal(toy.stem.running_mean, before)  # BN statistics kept


def test_partial():
    toy = Toy("partial", trainable_blocks=1)
    assert trainable_names(toy) == {
        "blocks.2.0.weight",
        "blocks.2.0.bias",
        "norm.weight",
        "norm.bias",
    }
    frozen = toy.frozen_modules
    assert frozen == (toy.stem, toy.blocks[0], toy.blocks[1], toy.extra)
    toy.eval()
    toy.train()
    assert not toy.stem.training and not toy.blocks[1][1].training and not toy.extra[0].training
    assert toy.training and toy.blocks[2].training and toy.blocks[2][1].training
    assert toy.norm.training
    before = toy.stem.running_mean.clone()
    toy(torch.randn(8, 4) + 3).sum().backward()
    assert torch.equal(toy.stem.running_mean, before)
    assert toy.blocks[2][0].weight.grad is not None and toy.blocks[0][0].weight.grad is None
    toy.eval()
    assert not any(m.training for m in toy.modules())

    toy = Toy("partial", trainable_blocks=4)  # every block (stem included) + norm
    assert trainable_names(toy) == {
        n for n, _ in toy.named_parameters() if not n.startswith("extra")
    }
    toy = Toy("partial", trainable_blocks=0)  # only the always-trainable norm
    assert trainable_names(toy) == {"norm.weight", "norm.bias"}


def test_keep_frozen_in_eval_helper():
    m = nn.Sequential(nn.BatchNorm1d(2), nn.Dropout(0.1))
    keep_frozen_in_eval([m[0]])
    assert not m[0].training and m[1].training and m.training


def test_agcn_finetune():
    torch.manual_seed(0)
    model = AGCN(base_channels=4, num_units=4, dropout=0.2)
    assert model.frozen_modules == () and all(p.requires_grad for p in model.parameters())

    model = AGCN(base_channels=4, num_units=4, dropout=0.2, finetune="partial", trainable_blocks=2)
    model.train()
    names = trainable_names(model)
    assert names and all(n.startswith(("units.2.", "units.3.")) for n in names)
    assert names == {
        n for n, _ in model.named_parameters() if n.startswith(("units.2.", "units.3."))
    }
    assert not model.data_bn.weight.requires_grad
    assert not model.data_bn.training and not model.units[1].training
    assert model.units[2].training and model.units[3].dropout.training
    before = model.data_bn.running_mean.clone()
    pooled = model(torch.randn(2, 3, 12, 22, 1) + 2).pooled
    pooled.sum().backward()
    assert torch.equal(model.data_bn.running_mean, before)
    assert model.units[3].tcn.conv.weight.grad is not None
    assert model.units[0].tcn.conv.weight.grad is None

    frozen = AGCN(base_channels=4, num_units=2, finetune="frozen").train()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not any(m.training for m in frozen.modules())
    with pytest.raises(ValueError, match=r"in \[0, 3\]"):
        AGCN(base_channels=4, num_units=2, finetune="partial", trainable_blocks=4)


def test_mvit_finetune():
    torch.manual_seed(0)
    enc = MViTEncoder("xs", drop_path=0.5, finetune="partial", trainable_blocks=2).train()
    names = trainable_names(enc)
    assert names == {
        n for n, _ in enc.named_parameters() if n.startswith(("blocks.3.", "blocks.4.", "norm."))
    }
    assert not enc.conv_proj.weight.requires_grad
    assert not enc.pos_encoding.class_token.requires_grad
    assert not enc.conv_proj.training and not enc.pos_encoding.training
    assert not enc.blocks[2].training and not enc.blocks[2].stochastic_depth.training
    assert enc.blocks[3].training and enc.norm.training
    # checkpointing works with a frozen prefix (inputs that need no grad)
    enc.grad_checkpointing = True
    enc(torch.randn(2, 3, 8, 64, 64)).pooled.sum().backward()
    assert enc.blocks[4].attn.qkv.weight.grad is not None
    assert enc.blocks[1].attn.qkv.weight.grad is None

    stem_only = MViTEncoder("xs", finetune="partial", trainable_blocks=6)  # stem + 5 blocks
    assert all(p.requires_grad for p in stem_only.parameters())

    frozen = MViTEncoder("xs", drop_path=0.5, finetune="frozen").train()
    assert not any(p.requires_grad for p in frozen.parameters())
    x = torch.randn(2, 3, 8, 64, 64)
    torch.testing.assert_close(frozen(x).tokens, frozen(x).tokens)  # drop path off


def _agcn(**kwargs) -> AGCN:
    return AGCN(layout="imigue22", base_channels=4, num_units=5, **kwargs)


class _Model(nn.Module):
    """A task stand-in: the encoder under the name ``encoder`` (as GestureModule)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder


def test_encoder_checkpoint(tmp_path):
    """An encoder's ``init`` initialises it from a single-encoder checkpoint ("encoder." keys),
    from a checkpoint of the same fusion model ("encoders.joint." keys, other modalities too)
    or from one saved before the neck split ("encoder.encoders.joint."), only when
    load_initial_weights runs."""
    src = _agcn()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    single = tmp_path / "single.ckpt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in src.state_dict().items()}}, single)
    neck = partial(CrossModalTokenFusion, num_classes=5, dim=16, heads=2)
    fused = FusedEncoders({"joint": _agcn(), "bone": _agcn()}, neck)
    fused.encoders["joint"].load_state_dict(src.state_dict())
    fusion_ckpt = tmp_path / "fusion.ckpt"
    torch.save({"state_dict": dict(fused.state_dict())}, fusion_ckpt)  # encoders.*, neck.*
    old_ckpt = tmp_path / "fusion_before_the_neck_split.ckpt"
    old = {
        ("encoder." + k if k.startswith("encoders.") else "encoder." + k[len("neck.") :]): v
        for k, v in fused.state_dict().items()
    }
    torch.save({"state_dict": old}, old_ckpt)
    for path in (single, fusion_ckpt, old_ckpt):
        # encoders + neck at the top level, as in a recognizer
        fusion = FusedEncoders({"joint": _agcn(init=str(path)), "bone": _agcn()}, neck)
        assert load_initial_weights(fusion) == [f"encoders.joint <- {path}"]
        for k, v in src.state_dict().items():
            torch.testing.assert_close(fusion.encoders["joint"].state_dict()[k], v)
    # a single-encoder model: its own checkpoint, or an encoder's bare state dict
    bare = tmp_path / "bare.pt"
    torch.save(src.state_dict(), bare)
    for path in (single, bare):
        model = _Model(_agcn(init=str(path)))
        assert load_initial_weights(model) == [f"encoder <- {path}"]
        torch.testing.assert_close(
            model.encoder.units[0].tcn.conv.weight, src.units[0].tcn.conv.weight
        )
    # the file is only needed when a fresh fit loads it (not to rebuild the model for eval)
    model = _Model(_agcn(init=str(tmp_path / "nope.ckpt")))
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_initial_weights(model)


def test_crt_recipe_freezes_the_encoder_and_retrains_a_fresh_head(tmp_path) -> None:  # noqa: ANN001
    """recipe=crt: encoder from the stage-1 checkpoint and frozen (BN statistics too), the head
    freshly initialised and the only trainable part, class-balanced sampling."""
    import hydra

    from migalab.models.finetune import load_initial_weights
    from migalab.utils.hydra import compose_config

    stage1 = hydra.utils.instantiate(compose_config("train", [], output_dir=tmp_path).model)
    with torch.no_grad():
        for p in stage1.parameters():
            p.add_(0.01)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage1.state_dict()}, path)
    cfg = compose_config("train", ["recipe=crt", f"model.encoder.init={path}"], output_dir=tmp_path)
    assert cfg.data.sampler == "class_balanced" and cfg.model.encoder.finetune == "frozen"
    model = hydra.utils.instantiate(cfg.model)
    assert load_initial_weights(model) == [f"encoder <- {path}"]
    for k, v in stage1.encoder.state_dict().items():
        torch.testing.assert_close(model.encoder.state_dict()[k], v)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head"}
    assert not torch.equal(model.head.fc.weight, stage1.head.fc.weight)  # a fresh classifier
    model.train()
    assert not model.encoder.training  # frozen BatchNorm keeps its running statistics
    # without the stage-1 encoder, migalab-train refuses before building anything
    from migalab.train import train

    with pytest.raises(ValueError, match=r"model.encoder.init=<checkpoint"):
        train(compose_config("train", ["recipe=crt"], output_dir=tmp_path))
