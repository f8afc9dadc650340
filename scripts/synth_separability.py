#!/usr/bin/env python
"""Are the synthetic iMiGUE classes learnable but not trivially? (sanity check, not a test)

Generates (or reuses) a synthetic release, cuts its labelled clips, builds simple normalised
per-clip features -- joints of a layout centred on the neck, scaled by the shoulder width,
missing points linearly interpolated over time, resampled to 32 frames, plus each joint's
visibility -- and fits, with torch only:

* nearest centroid (standardised features),
* multinomial logistic regression (linear),
* an MLP (one hidden layer),
* a small temporal CNN over the (32, V, C) sequence (a stand-in for the stronger models),

on ``train``, reporting top-1 / mean-class accuracy on ``validate`` and ``test``, per-class
validation accuracy of the linear model and its most frequent confusions.

Example::

    python scripts/synth_separability.py --root data/synth_sep --layout mg36 --workers 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from migalab.data.formats.miga2025 import read_release
from migalab.data.skeleton.layouts import get_layout
from migalab.synthetic import CLASS_NAMES, SynthConfig, generate_release, release_is_current

NUM_CLASSES = len(CLASS_NAMES)


def clip_features(kp: np.ndarray, score: np.ndarray, joints: np.ndarray, frames: int) -> np.ndarray:
    """(frames, V, 3) features of one clip: normalised (x, y) and visibility."""
    t = len(kp)
    valid = score > 0
    neck = kp[:, 1]
    nv = valid[:, 1]
    if nv.any():
        neck = np.stack(
            [np.interp(np.arange(t), np.flatnonzero(nv), neck[nv, d]) for d in (0, 1)], -1
        )
    else:
        neck = np.zeros((t, 2))
    both = valid[:, 2] & valid[:, 5]
    sw = np.median(np.linalg.norm(kp[both, 2] - kp[both, 5], axis=-1)) if both.any() else 100.0
    sel = kp[:, joints]
    vis = valid[:, joints].astype(np.float32)
    x = (sel - neck[:, None]) / max(sw, 1.0)
    # linear interpolation of missing points over time, zero when a joint is never seen
    for j in range(len(joints)):
        ok = vis[:, j] > 0
        if ok.all():
            continue
        if not ok.any():
            x[:, j] = 0.0
            continue
        idx = np.flatnonzero(ok)
        for d in (0, 1):
            x[:, j, d] = np.interp(np.arange(t), idx, x[idx, j, d])
    feat = np.concatenate([x, vis[..., None]], -1)
    src = np.linspace(0, t - 1, frames)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    f = (src - lo)[:, None, None]
    return (feat[lo] * (1 - f) + feat[hi] * f).astype(np.float32)


def load_split(root: Path, split: str, joints: np.ndarray, frames: int):
    xs, ys = [], []
    for rec in read_release(root, splits=(split,)):
        xs.append(clip_features(rec.keypoint[0], rec.keypoint_score[0], joints, frames))
        ys.append(rec.label)
    return np.stack(xs), np.array(ys)


def accuracy(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    top1 = float((pred == y).mean())
    per = [float((pred[y == k] == k).mean()) for k in np.unique(y)]
    return top1, float(np.mean(per))


def fit_torch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, wd: float,
              lr: float = 1e-3, batch: int = 128, seed: int = 0) -> nn.Module:  # fmt: skip
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    counts = torch.bincount(y, minlength=NUM_CLASSES).float()
    weight = (counts.sum() / (counts + 1.0)) ** 0.5  # mild re-weighting of rare classes
    weight = weight / weight[counts > 0].mean()
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            b = perm[i : i + batch]
            opt.zero_grad()
            loss_fn(model(x[b]), y[b]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


class TemporalCNN(nn.Module):
    """Conv1d over time with joints x channels as input channels (a light stronger baseline)."""

    def __init__(self, in_ch: int, num_classes: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(in_ch, width, 5, padding=2), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(0.2),
            nn.Conv1d(width, width, 5, padding=2, stride=2), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Dropout(0.2),
            nn.Conv1d(width, width, 3, padding=1), nn.BatchNorm1d(width), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (N, T, V, C)
        n, t = x.shape[:2]
        h = self.net(x.reshape(n, t, -1).transpose(1, 2))
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], -1))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--root", default="data/synth_sep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layout", default="mg36", help="imigue22, mg36 or openpose137")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--videos", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument("--amplitude", type=float, default=None)
    p.add_argument("--noise", type=float, default=None)
    p.add_argument("--no-cnn", action="store_true")
    args = p.parse_args()

    kw: dict = {"seed": args.seed, "table_format": "csv", "workers": args.workers}
    if args.videos:
        kw["num_videos"] = dict(zip(("train", "validate", "test"), args.videos, strict=True))
    if args.amplitude is not None:
        kw["amplitude"] = args.amplitude
    if args.noise is not None:
        kw["noise"] = args.noise
    cfg = SynthConfig(**kw)
    root = Path(args.root)
    if not release_is_current(root, cfg):
        t0 = time.perf_counter()
        generate_release(root, cfg)
        print(f"generated {root} in {time.perf_counter() - t0:.1f} s")
    joints = np.asarray(get_layout(args.layout).indices)
    data = {s: load_split(root, s, joints, args.frames) for s in ("train", "validate", "test")}
    xtr, ytr = data["train"]
    print(f"layout {args.layout} ({len(joints)} joints), clips: "
          + ", ".join(f"{s} {len(v[1])}" for s, v in data.items()))  # fmt: skip
    present = np.unique(ytr)
    flat = {s: v[0].reshape(len(v[0]), -1) for s, v in data.items()}
    mu, sd = flat["train"].mean(0), flat["train"].std(0) + 1e-3
    z = {s: torch.tensor((f - mu) / sd, dtype=torch.float32) for s, f in flat.items()}
    y = {s: torch.tensor(v[1]) for s, v in data.items()}
    majority = np.bincount(ytr, minlength=NUM_CLASSES).argmax()
    results: dict[str, dict[str, tuple[float, float]]] = {}
    preds: dict[str, np.ndarray] = {}

    def record(name: str, predict) -> None:
        results[name] = {}
        for s in ("validate", "test"):
            pr = predict(s)
            results[name][s] = accuracy(pr, data[s][1])
            if s == "validate":
                preds[name] = pr

    record("majority class", lambda s: np.full(len(data[s][1]), majority))
    cent = torch.stack([z["train"][y["train"] == k].mean(0) for k in present])
    record("nearest centroid",
           lambda s: present[torch.cdist(z[s], cent).argmin(1).numpy()])  # fmt: skip
    d = z["train"].shape[1]
    lin = fit_torch(nn.Linear(d, NUM_CLASSES), z["train"], y["train"], args.epochs, wd=0.05)
    with torch.no_grad():
        record("logistic regression", lambda s: lin(z[s]).argmax(1).numpy())
    mlp = fit_torch(nn.Sequential(nn.Dropout(0.2), nn.Linear(d, 256), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(256, NUM_CLASSES)),
                    z["train"], y["train"], args.epochs, wd=0.05)  # fmt: skip
    with torch.no_grad():
        record("MLP (256)", lambda s: mlp(z[s]).argmax(1).numpy())
    if not args.no_cnn:
        shape = data["train"][0].shape[1:]
        seq = {s: t.reshape(len(t), *shape) for s, t in z.items()}
        cnn = fit_torch(TemporalCNN(shape[1] * shape[2], NUM_CLASSES), seq["train"], y["train"],
                        args.epochs, wd=0.01)  # fmt: skip
        with torch.no_grad():
            record("temporal CNN", lambda s: cnn(seq[s]).argmax(1).numpy())

    print(
        f"\n{'model':22s} {'val top1':>9s} {'val mean-cls':>13s} {'test top1':>10s} {'test mean-cls':>14s}"
    )
    for name, r in results.items():
        (v1, vm), (t1, tm) = r["validate"], r["test"]
        print(f"{name:22s} {v1:9.3f} {vm:13.3f} {t1:10.3f} {tm:14.3f}")

    yv = data["validate"][1]
    for name in ("logistic regression",) + (("temporal CNN",) if not args.no_cnn else ()):
        pv = preds[name]
        print(f"\nper-class validation accuracy ({name}):")
        for k in range(NUM_CLASSES):
            m = yv == k
            if m.any():
                print(f"  {k:2d} {CLASS_NAMES[k]:24s} n={m.sum():4d} acc={(pv[m] == k).mean():.2f}")
        conf = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=int)
        np.add.at(conf, (yv, pv), 1)
        np.fill_diagonal(conf, 0)
        top = np.dstack(np.unravel_index(np.argsort(conf.ravel())[::-1], conf.shape))[0][:12]
        print(f"most frequent confusions ({name}, true -> predicted):")
        for a, b in top:
            if conf[a, b]:
                print(f"  {CLASS_NAMES[a]:24s} -> {CLASS_NAMES[b]:24s} {conf[a, b]}")


if __name__ == "__main__":
    main()
