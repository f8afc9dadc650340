"""Classification losses for long-tailed micro-gesture data (iMiGUE: 29 % of clips in one class,
some classes below 0.1 %).

``class_weights`` follows Cui et al. 2019 ("effective number of samples"): w_k ∝ (1-β)/(1-β^n_k),
normalised to mean 1 over classes that occur; ``inverse`` (w ∝ 1/n_k) and ``sqrt_inverse`` are
the usual simpler variants. Focal loss (Lin et al. 2017) is written here because torchvision only
ships the binary sigmoid form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def class_weights(
    counts: Sequence[int] | torch.Tensor, mode: str, beta: float = 0.999
) -> torch.Tensor:
    """Per-class loss weights (K,) from training-set class counts.

    Classes with zero samples get weight 0 (they cannot be learned and must not dominate).
    """
    n = torch.as_tensor(counts, dtype=torch.float64)
    present = n > 0
    if mode == "none":
        w = torch.ones_like(n)
    elif mode == "inverse":
        w = torch.where(present, 1.0 / n.clamp_min(1), 0.0)
    elif mode == "sqrt_inverse":
        w = torch.where(present, n.clamp_min(1).rsqrt(), 0.0)
    elif mode == "effective":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"effective-number beta must be in [0, 1), got {beta}")
        w = torch.where(present, (1.0 - beta) / (1.0 - beta ** n.clamp_min(1)), 0.0)
    else:
        raise ValueError(
            f"unknown class weighting {mode!r} (none, inverse, sqrt_inverse, effective)"
        )
    w = w * present.sum() / w[present].sum().clamp_min(1e-12)
    return w.float()


class ClassificationLoss(nn.Module):
    """Cross-entropy or focal loss with optional class weights and label smoothing.

    Args:
        name: ``ce`` or ``focal``.
        label_smoothing: ε for cross-entropy.
        gamma: focal exponent.
        class_balance: ``none``, ``inverse``, ``sqrt_inverse`` or ``effective``; the weights are
            set from training counts with :meth:`set_class_counts` (the task does this in setup).
        beta: β of the effective-number weighting.
        logit_adjustment: τ of the logit-adjusted loss (Menon et al., ICLR 2021) for the long
            tail: training logits + τ·log(class prior) (priors from the training counts,
            :meth:`set_class_counts`), so rare classes need larger margins; in training mode
            only: predictions and the evaluation loss use the raw logits. 0 (default): off; 1
            is the paper's choice.
    """

    def __init__(
        self,
        name: str = "ce",
        label_smoothing: float = 0.0,
        gamma: float = 2.0,
        class_balance: str = "none",
        beta: float = 0.999,
        logit_adjustment: float = 0.0,
    ) -> None:
        super().__init__()
        if name not in ("ce", "focal"):
            raise ValueError(f"unknown loss {name!r} (ce or focal)")
        self.name, self.label_smoothing, self.gamma = name, label_smoothing, gamma
        self.class_balance, self.beta = class_balance, beta
        # recomputed from the datamodule in setup, so checkpoints do not depend on it
        self.register_buffer("weight", None, persistent=False)
        self.logit_adjustment = float(logit_adjustment)
        self.register_buffer("log_prior", None, persistent=False)

    def set_class_counts(self, counts: Sequence[int] | torch.Tensor) -> None:
        """Derive class weights (K,) from training counts; no-op when ``class_balance`` is none."""
        if self.class_balance != "none":
            self.weight = class_weights(counts, self.class_balance, self.beta)
        if self.logit_adjustment:
            c = torch.as_tensor(counts, dtype=torch.float64).clamp_min(1)  # unseen: one clip
            self.log_prior = (c / c.sum()).log().float()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (N, K), target (N,) int → scalar loss."""
        weight = self.weight.to(logits.dtype) if self.weight is not None else None
        if self.logit_adjustment and self.training:  # the evaluation loss is the plain one
            if self.log_prior is None:
                raise RuntimeError(
                    "logit_adjustment needs the training class counts "
                    "(set_class_counts) before the first loss"
                )
            logits = logits + self.logit_adjustment * self.log_prior.to(logits)
        if self.name == "ce":
            return F.cross_entropy(
                logits, target, weight=weight, label_smoothing=self.label_smoothing
            )
        logp = F.log_softmax(logits.float(), dim=-1)
        logp_t = logp.gather(1, target[:, None]).squeeze(1)
        loss = -((1.0 - logp_t.exp()) ** self.gamma) * logp_t
        if weight is not None:
            w = weight.float()[target]
            return (loss * w).sum() / w.sum().clamp_min(1e-12)
        return loss.mean()


def masked_aux_loss(
    aux: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    present: Mapping[str, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Mean over streams of the auxiliary heads' losses (``aux[name]`` (N, K) logits), each over
    the samples where that stream is present (``present[name]`` (N,) bool; all samples when it
    has no entry); 0 when no stream has a present sample."""
    losses = []
    for name, logits in aux.items():
        mask = present.get(name)
        if mask is None:
            losses.append(loss_fn(logits, labels))
        elif bool(mask.any()):
            mask = mask.bool()
            losses.append(loss_fn(logits[mask], labels[mask]))
    if not losses:
        return labels.new_zeros((), dtype=torch.float32)
    return torch.stack(losses).mean()
