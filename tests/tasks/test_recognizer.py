"""The routing and auxiliary loss every supervised task shares (migalab.tasks.recognizer)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from migalab.models.encoders.output import EncoderOutput
from migalab.tasks.recognizer import Recognizer


class Echo(nn.Module):
    """Records what it was called with; pooled = zeros (N, 4)."""

    out_channels = 4

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def forward(self, x: Any, **kwargs: Any) -> EncoderOutput:
        self.calls.append((x, kwargs))
        n = next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]
        pooled = torch.zeros(n, 4)
        return EncoderOutput(pooled=pooled, tokens=pooled[:, None], time=-torch.ones(1),
                             space=-torch.ones(1, dtype=torch.long))  # fmt: skip


class Task(Recognizer):
    def __init__(self, input_key: str | None = None, inputs: dict | None = None,
                 aux_loss_weight: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.save_hyperparameters()
        self.inputs = inputs
        self.channels_last = False
        self.build_model(Echo(), lambda in_channels: nn.Linear(in_channels, 3))


def test_routing_of_tensors_keys_and_streams() -> None:
    x = torch.zeros(2, 3)
    task = Task()
    task.encode(x)
    assert task.encoder.calls[-1][0] is x and task.head.in_features == 4
    face, vis = torch.zeros(2, 4, 3, 8, 8), torch.ones(2, 4, dtype=torch.bool)
    batch = {"face": face, "face_visible": vis, "rgb": torch.zeros(2, 3)}
    keyed = Task(input_key="face")
    keyed.encode(batch)
    got, kwargs = keyed.encoder.calls[-1]
    assert got is face and kwargs["visible"] is vis
    with pytest.raises(KeyError, match="input_key 'joint' missing"):
        Task(input_key="joint").encode(batch)
    present = {"face": torch.tensor([True, False]), "rgb": torch.tensor([True, True])}
    streams = Task(inputs={"face": "face", "context": "rgb"})
    streams.encode({**batch, "present": present})
    routed, _ = streams.encoder.calls[-1]
    assert routed["face"] is face and routed["context"] is batch["rgb"]
    assert routed["present"] == {"face": present["face"], "context": present["rgb"]}
    assert routed["visible"] == {"face": vis}
    assert streams.present_flags({**batch, "present": present})["context"] is present["rgb"]
    with pytest.raises(KeyError, match=r"inputs need \['depth'\]"):
        Task(inputs={"face": "depth"}).encode(batch)
    whole = Task()
    whole.encode(batch)
    assert whole.encoder.calls[-1][0] is batch and whole.present_flags(batch) == {}


def test_aux_loss_is_added_only_with_a_positive_weight() -> None:
    labels = torch.tensor([0, 1])
    aux = {"joint": torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])}
    loss = torch.tensor(1.0)
    ce = nn.functional.cross_entropy
    off = Task(aux_loss_weight=0.0)
    assert off.add_aux_loss(loss, aux, labels, {}, ce) is loss  # the boundary: weight 0
    assert Task(aux_loss_weight=0.5).add_aux_loss(loss, None, labels, {}, ce) is loss
    on = Task(aux_loss_weight=0.5)
    want = 1.0 + 0.5 * ce(aux["joint"], labels).item()
    assert on.add_aux_loss(loss, aux, labels, {}, ce).item() == pytest.approx(want)
