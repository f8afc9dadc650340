"""Checkpoints from elsewhere run no code: weights-only reading, stored-config target allowlist."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from migalab.models.finetune import load_encoder_weights
from migalab.scoring.ensemble import load_checkpoint_config
from migalab.utils.checkpoints import (
    UnsafeCheckpointError,
    check_config_targets,
    load_checkpoint,
)


class _RunsCode:
    """Unpickling this object runs ``touch <marker>`` (a shell command) -- the attack."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A Lightning-looking checkpoint whose pickle creates ``marker`` when fully unpickled."""
    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "migalab_config": {"data": {}, "model": {}},
         "payload": _RunsCode(marker)},
        path,
    )  # fmt: skip
    return path


def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = malicious_checkpoint(tmp_path / "shared.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load checkpoint .*shared\.ckpt"):
        load_checkpoint(ckpt)
    with pytest.raises(UnsafeCheckpointError, match="unsafe_unpickle_checkpoints=true"):
        load_checkpoint_config(ckpt)
    with pytest.raises(UnsafeCheckpointError):
        load_encoder_weights(torch.nn.Linear(2, 2), ckpt, "rgb")
    assert not marker.exists()


def test_unsafe_opt_in_reads_a_trusted_legacy_file(tmp_path: Path) -> None:
    # legacy Lightning checkpoints often pickled an argparse.Namespace of hyper-parameters
    path = tmp_path / "legacy.ckpt"
    torch.save({"hparams": argparse.Namespace(lr=0.1), "state_dict": {}}, path)
    with pytest.raises(UnsafeCheckpointError, match="argparse"):
        load_checkpoint(path)
    assert load_checkpoint(path, unsafe_unpickle=True)["hparams"].lr == 0.1


def test_plain_checkpoints_load_and_bad_files_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}, "epoch": 2, "meta": {"a": [1, "x"]}}, good)
    ckpt = load_checkpoint(good)
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(3)) and ckpt["epoch"] == 2
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_checkpoint(tmp_path / "missing.ckpt")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"truncated\.ckpt is not a readable torch checkpoint"):
        load_checkpoint(truncated)
    with pytest.raises(ValueError, match="has no 'migalab_config'"):
        load_checkpoint_config(good)


@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "builtins.exec",
        "subprocess.Popen",
        "torch.hub.load",  # a torch function: downloads and runs a repo's hubconf
        "torch.utils.cpp_extension.load_inline",  # compiles and loads C++
        "migalab.utils.io.atomic_write_text",  # our own function: writes any file
        "torchvision.datasets.MNIST",  # a library class that is not a model (downloads)
        "lightning.pytorch.loggers.WandbLogger",  # network access
        "torch.nn.Linear; import os",
    ],
)
def test_stored_config_targets_outside_the_allowlist_are_refused(
    target: str, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    cfg = {
        "data": {"_target_": "migalab.data.datamodule.ClipDataModule"},
        "model": {"_target_": "migalab.tasks.gesture.GestureModule",
                  "encoder": {"_target_": target, "_args_": [f"touch {marker}"]}},
    }  # fmt: skip
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "migalab_config": cfg}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"model\.encoder\._target_"):
        load_checkpoint_config(path)
    assert not marker.exists()


def test_allowed_targets_are_exact_names() -> None:
    check_config_targets(
        {"model": {"_target_": "migalab.tasks.gesture.GestureModule",
                   "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True},
                   "scheduler": {"_target_": "migalab.utils.schedulers.cosine_with_warmup"},
                   "layers": [{"_target_": "migalab.models.heads.ClassificationHead"}]}},
        "test",
    )  # fmt: skip
    # library classes are no longer allowed by kind (any nn.Module): only by exact name
    for target in ("torch.nn.Linear", "timm.layers.Mlp", "posix.system"):
        with pytest.raises(UnsafeCheckpointError, match=r"layers\[1\]\._target_"):
            check_config_targets({"layers": [{"_target_": "torch.optim.SGD"},
                                             {"_target_": target}]}, "test")  # fmt: skip


def _deflated_checkpoint(path: Path, payload_bytes: int) -> Path:
    """A torch zip checkpoint whose data entry is re-packed with deflate (torch.save stores
    entries uncompressed): ``payload_bytes`` of zeros inflate from a few KB."""
    import zipfile

    plain = path.with_suffix(".plain")
    torch.save({"state_dict": {"w": torch.zeros(payload_bytes // 4)}}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    plain.unlink()
    return path


def test_a_decompression_bomb_checkpoint_is_refused_before_reading(tmp_path: Path) -> None:
    from migalab.utils.checkpoints import INFLATION_FLOOR, MAX_INFLATION

    bomb = _deflated_checkpoint(tmp_path / "bomb.ckpt", INFLATION_FLOOR + 2**20)
    ratio = (INFLATION_FLOOR + 2**20) / bomb.stat().st_size
    assert ratio > MAX_INFLATION
    with pytest.raises(UnsafeCheckpointError, match=r"bomb\.ckpt.*decompression bomb"):
        load_checkpoint(bomb)
    # at the floor: small enough to read whatever its ratio
    small = _deflated_checkpoint(tmp_path / "small.ckpt", INFLATION_FLOOR - 2**16)
    assert load_checkpoint(small)["state_dict"]["w"].numel() == (INFLATION_FLOOR - 2**16) // 4


def test_inflation_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly MAX_INFLATION times the file's size is accepted, a byte more is refused."""
    import migalab.utils.checkpoints as ck

    path = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
    import zipfile

    with zipfile.ZipFile(path) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    monkeypatch.setattr(ck, "INFLATION_FLOOR", 0)
    monkeypatch.setattr(ck, "MAX_INFLATION", declared / path.stat().st_size)
    ck.check_inflation(path)  # equal: accepted
    monkeypatch.setattr(ck, "MAX_INFLATION", (declared - 1) / path.stat().st_size)
    with pytest.raises(UnsafeCheckpointError, match="decompression bomb"):
        ck.check_inflation(path)
    monkeypatch.setattr(ck, "MAX_INFLATION", 0.0)
    monkeypatch.setattr(ck, "INFLATION_FLOOR", declared)  # at the floor: not checked
    ck.check_inflation(path)


def test_atomic_checkpoint_io_keeps_the_old_file_when_a_write_dies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job killed while writing last.ckpt (simulated: torch.save dies half way) leaves the
    previous checkpoint readable and no partial file under the real name."""
    from migalab.utils.checkpoints import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)

    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs) -> None:
        real_save(obj, f, *args, **kwargs)
        f.truncate(64)  # what is on disk when the process is killed mid-write
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_train_uses_atomic_checkpoint_io() -> None:
    from omegaconf import OmegaConf

    from migalab.train import trainer_plugins
    from migalab.utils.checkpoints import AtomicCheckpointIO

    (plugin,) = trainer_plugins(OmegaConf.create({"max_epochs": 1}))
    assert isinstance(plugin, AtomicCheckpointIO)
    mine = {"plugins": [{"_target_": "lightning.pytorch.plugins.io.TorchCheckpointIO"}]}
    (plugin,) = trainer_plugins(OmegaConf.create(mine))  # a configured IO plugin is kept
    assert type(plugin).__name__ == "TorchCheckpointIO"


def test_renamed_targets_are_upgraded() -> None:
    """A checkpoint written before the datamodule's rename names its old class: it maps to the
    new one (and nothing else changes)."""
    from migalab.utils.checkpoints import upgrade_targets

    old = {"data": {"_target_": "migalab.data.datamodules.SkeletonDataModule", "layout": "x"},
           "model": {"_target_": "migalab.tasks.gesture.GestureModule", "l": [{"a": 1}]}}  # fmt: skip
    new = upgrade_targets(old)
    assert new["data"] == {"_target_": "migalab.data.datamodule.ClipDataModule", "layout": "x"}
    assert new["model"] == old["model"]
    assert old["data"]["_target_"].endswith("SkeletonDataModule")  # the input is not changed


def test_old_token_fusion_entries_are_upgraded() -> None:
    """Before EncoderOutput, a fusion entry named its token layout (kind, input_size) and its
    initial checkpoint; today the encoder knows both."""
    from migalab.models.fusion import CrossModalTokenFusion
    from migalab.utils.checkpoints import upgrade_targets

    old = {"_target_": "migalab.models.fusion.CrossModalTokenFusion", "num_classes": 4, "dim": 16,
           "depth": 1, "heads": 2, "modalities": {"joint": {
               "kind": "graph", "pool": "none", "checkpoint": None,
               "encoder": {"_target_": "migalab.models.encoders.agcn.AGCN", "layout": "imigue22",
                           "base_channels": 8}}}}  # fmt: skip
    new = upgrade_targets(old)
    assert new["modalities"]["joint"] == {
        "pool": "none",
        "encoder": {"_target_": "migalab.models.encoders.agcn.AGCN", "layout": "imigue22",
                    "base_channels": 8, "init": None},
    }  # fmt: skip
    import hydra

    from migalab.models.fusion.streams import FusedEncoders

    # in a model config, the fusion is then split into encoders + neck (test_neck_upgrade.py)
    model = upgrade_targets({"encoder": old})
    encoders = hydra.utils.instantiate(model["encoders"])
    fused = FusedEncoders(encoders, hydra.utils.instantiate(model["neck"]))
    assert isinstance(fused.neck, CrossModalTokenFusion)


# -- exact messages and edges (mutation testing: scripts/mutation.py --set security) --------------
def test_first_reason_picks_the_line_naming_the_global() -> None:
    from migalab.utils.checkpoints import _first_reason

    assert _first_reason("Weights only load failed.\n\n  GLOBAL os.system was not allowed\n") == (
        "GLOBAL os.system was not allowed")  # fmt: skip
    assert _first_reason("failed\nUnsupported operand 149\n") == "Unsupported operand 149"
    assert _first_reason("failed\nglobal and unsupported, lower case\n") == "failed"
    assert _first_reason("\n  \n") == "unknown reason"


def test_refusal_and_read_error_messages(tmp_path: Path) -> None:
    path = malicious_checkpoint(tmp_path / "m.ckpt", tmp_path / "pwned")
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (  # torch's line naming the global (its wording may change)
        f"refused to load checkpoint {path}: it holds Python objects beyond tensors and plain "
        "data (Trying to load unsupported GLOBAL posix.system whose module posix is blocked.), "
        "and unpickling them could run arbitrary code. Checkpoints written by migalab-train "
        "never need this. If you wrote this file yourself or trust its author, opt in with "
        "unsafe_unpickle_checkpoints=true."
    )
    bad_zip = tmp_path / "cd.ckpt"  # an end record pointing at no central directory
    bad_zip.write_bytes(b"x" * 46 + b"PK\x05\x06" + bytes(4) + b"\x01\x00\x01\x00"
                        + (46).to_bytes(4, "little") + bytes(4) + bytes(2))  # fmt: skip
    with pytest.raises(ValueError) as err:
        load_checkpoint(bad_zip)
    assert str(err.value) == (
        f"checkpoint {bad_zip} is not a readable torch checkpoint (Bad magic number for central "
        "directory)")  # fmt: skip
    torch.save({"w": torch.ones(3)}, tmp_path / "good.ckpt")
    truncated = tmp_path / "t.ckpt"
    truncated.write_bytes((tmp_path / "good.ckpt").read_bytes()[:100])
    with pytest.raises(ValueError) as err:
        load_checkpoint(truncated)
    cause = err.value.__cause__
    assert str(err.value) == (f"checkpoint {truncated} is not a readable torch checkpoint "
                              f"({type(cause).__name__}: {str(cause).strip().splitlines()[0]})")  # fmt: skip


def test_unsafe_reads_are_logged_and_everything_lands_on_the_cpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint saved on a GPU is read onto the CPU (map_location), both ways."""
    import zipfile

    good = tmp_path / "gpu.ckpt"
    torch.save({"w": torch.ones(2)}, tmp_path / "cpu.ckpt")
    with zipfile.ZipFile(tmp_path / "cpu.ckpt") as src, zipfile.ZipFile(good, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):  # the storage's location: BINUNICODE
                assert b"X\x03\x00\x00\x00cpu" in data
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(info, data)
    assert torch.equal(load_checkpoint(good)["w"], torch.ones(2))
    with caplog.at_level("WARNING", logger="migalab.utils.checkpoints"):
        assert torch.equal(load_checkpoint(good, unsafe_unpickle=True)["w"], torch.ones(2))
    assert caplog.messages == [
        f"UNSAFE: unpickling {good} with weights_only=False; any code it holds runs now"
    ]


def test_the_bomb_message(tmp_path: Path) -> None:
    from migalab.utils.checkpoints import INFLATION_FLOOR

    bomb = _deflated_checkpoint(tmp_path / "bomb.ckpt", INFLATION_FLOOR + 2**20)
    import zipfile

    with zipfile.ZipFile(bomb) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    size = bomb.stat().st_size
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(bomb)
    assert str(err.value) == (
        f"refused to load checkpoint {bomb}: its entries inflate to {declared / 2**20:.0f} MiB "
        f"from a {size / 2**20:.1f} MiB file ({declared / size:.0f}x; torch.save writes them "
        "uncompressed), a decompression bomb"
    )


def test_upgrade_edges() -> None:
    from omegaconf import OmegaConf

    from migalab.utils.checkpoints import upgrade_targets

    old = "migalab.data.datamodules.SkeletonDataModule"
    cfg = OmegaConf.create({"_target_": old, "a": "${b}", "b": 1, "note": old})
    assert upgrade_targets(cfg) == {"_target_": "migalab.data.datamodule.ClipDataModule",
                                    "a": "${b}", "b": 1, "note": old}  # fmt: skip
    fusion = {"_target_": "migalab.models.fusion.CrossModalTokenFusion",
              "modalities": {"a": None, "b": {"kind": "graph", "encoder": "not a dict"},
                             "c": {"kind": "graph", "checkpoint": "/c.ckpt", "encoder": {}}}}  # fmt: skip
    new = upgrade_targets(fusion)["modalities"]
    assert new == {"a": None, "b": {"kind": "graph", "encoder": "not a dict"},
                   "c": {"encoder": {"init": "/c.ckpt"}}}  # fmt: skip
