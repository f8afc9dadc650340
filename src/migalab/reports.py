"""Run reports: what a finished training or evaluation run did, at a glance.

:func:`write_report` reads a run's ``metrics.json`` payload and writes into the run dir

* ``<split>_confusion.png``: the confusion matrix (rows = true class, columns = predicted),
  normalised per true class, with the counts' support on the axis labels;
* ``<split>_per_class.png``: per-class accuracy (recall) as bars, sorted, support beside each;
* ``report.md``: the summary table of every split, the images, the classes the model gets most
  wrong and the most frequent confusions.

:func:`timeline_png` draws the detected segments of an online prediction (and the labels when
known) along the frames of a sequence, with the per-frame top probability.

Matplotlib with the Agg backend (files only, no display); nothing here needs a GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from migalab.utils.io import atomic_write_text

__all__ = [
    "annotated_video",
    "confusion_png",
    "draw_keypoints",
    "per_class_png",
    "report_files",
    "timeline_png",
    "write_report",
]

log = logging.getLogger(__name__)

_METRICS = ("top1", "top5", "macro_f1", "mean_class_acc", "acc", "auroc", "clip_acc", "loss")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write a figure atomically (a temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=90, format="png")
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def confusion_png(
    path: str | Path,
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str],
    title: str = "",
) -> Path:
    """The (K, K) count matrix as a heat map, each row divided by its support."""
    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    support = cm.sum(1)
    rates = cm / np.maximum(support, 1)[:, None]
    k = len(cm)
    size = max(5.0, 0.28 * k + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    labels = [f"{n} ({int(s)})" for n, s in zip(class_names, support, strict=True)]
    ax.set_xticks(range(k), [str(n) for n in class_names], rotation=90, fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (support)")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, Path(path))


def per_class_png(
    path: str | Path, per_class: Mapping[str, float], support: Mapping[str, int], title: str = ""
) -> Path:
    """Per-class accuracy bars, best first; classes without samples are left out."""
    plt = _pyplot()
    rows = sorted(
        (
            (n, a, support.get(n, 0))
            for n, a in per_class.items()
            if support.get(n, 0) > 0 and a == a
        ),
        key=lambda r: -r[1],
    )
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.25 * len(rows) + 1)), layout="constrained")
    names = [f"{n} (n={s})" for n, _, s in rows]
    ax.barh(range(len(rows)), [a for _, a, _ in rows], color="#4878a8")
    ax.set_yticks(range(len(rows)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (recall)")
    ax.set_title(title or "per-class accuracy")
    return _save(fig, Path(path))


def timeline_png(
    path: str | Path,
    segments: Sequence[Any],
    total: int,
    class_names: Sequence[str] | None = None,
    truth: Sequence[Any] | None = None,
    frame_probs: np.ndarray | None = None,
    title: str = "",
    no_person: np.ndarray | None = None,
) -> Path:
    """Detected segments (and labelled ones when given) over frames 0..total-1, coloured by
    class; with ``frame_probs`` (T, K), the per-frame top probability underneath; with
    ``no_person`` (T,) bool, the frames without a plausible person shaded grey in the
    predicted lane (:mod:`migalab.pose_gate`)."""
    plt = _pyplot()
    cmap = plt.get_cmap("tab20")
    lanes = [("predicted", segments)] + ([("labelled", truth)] if truth is not None else [])
    rows = len(lanes) + (1 if frame_probs is not None else 0)
    fig, axes = plt.subplots(
        rows, 1, figsize=(12, 1.3 * rows + 0.6), sharex=True, squeeze=False, layout="constrained"
    )
    if no_person is not None and no_person.any():
        edges = np.diff(np.concatenate([[0], no_person.astype(np.int8), [0]]))
        runs = list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))
        axes[0, 0].broken_barh(
            [(int(a), int(b - a)) for a, b in runs], (0, 1.6), color="0.85", label="no person"
        )
        axes[0, 0].legend(loc="upper right", fontsize=6)
    for ax, (name, segs) in zip(axes[:, 0], lanes, strict=False):
        for s in segs:
            ax.broken_barh([(s.start, s.end - s.start + 1)], (0, 1), color=cmap(s.label % 20))
            label = class_names[s.label] if class_names else str(s.label)
            ax.text(s.start, 1.05, label, fontsize=6, rotation=30, va="bottom")
        ax.set_ylim(0, 1.6)
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
    if frame_probs is not None:
        ax = axes[-1, 0]
        ax.plot(np.arange(len(frame_probs)), frame_probs.max(1), lw=0.8, color="black")
        ax.set_ylim(0, 1)
        ax.set_ylabel("top prob.", rotation=0, ha="right", va="center")
    axes[-1, 0].set_xlim(0, max(total, 1))
    axes[-1, 0].set_xlabel("frame")
    axes[0, 0].set_title(title or "online recognition")
    return _save(fig, Path(path))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(run_dir: str | Path, payload: Mapping[str, Any], title: str = "") -> list[Path]:
    """``report.md`` and the PNGs of a ``metrics.json`` payload in ``run_dir``; returns the
    files written."""
    run_dir = Path(run_dir)
    splits = [s for s in ("train", "val", "test") if isinstance(payload.get(s), Mapping)]
    lines = [f"# {title or payload.get('task', 'run')} report", ""]
    for key in ("run_dir", "ckpt_path", "epochs", "wall_time_s"):
        if payload.get(key) is not None:
            lines.append(f"- {key}: {payload[key]}")
    shown = [m for m in _METRICS if any(m in payload[s] for s in splits)]
    if shown:
        lines += ["", "| split | " + " | ".join(shown) + " |", "|---" * (len(shown) + 1) + "|"]
        for s in splits:
            lines.append(
                f"| {s} | " + " | ".join(_fmt(payload[s].get(m, "")) for m in shown) + " |"
            )
    written: list[Path] = []
    for s in splits:
        m = payload[s]
        if "confusion_matrix" not in m or "per_class_acc" not in m:
            continue
        names = list(m["per_class_acc"])
        support = m.get("support", {})
        written.append(
            confusion_png(
                run_dir / f"{s}_confusion.png",
                m["confusion_matrix"],
                names,
                f"{s}: confusion matrix (row-normalised)",
            )
        )
        written.append(
            per_class_png(
                run_dir / f"{s}_per_class.png",
                m["per_class_acc"],
                support,
                f"{s}: per-class accuracy",
            )
        )
        lines += [
            "",
            f"## {s}",
            "",
            f"![confusion]({s}_confusion.png)",
            f"![per-class accuracy]({s}_per_class.png)",
            "",
        ]
        worst = sorted(
            (a, n) for n, a in m["per_class_acc"].items() if support.get(n, 0) > 0 and a == a
        )[:5]
        if worst:
            lines.append(
                "Hardest classes: "
                + ", ".join(f"{n} {a:.2f} (n={support.get(n, 0)})" for a, n in worst)
            )
        cm = np.asarray(m["confusion_matrix"])
        off = cm.copy()
        np.fill_diagonal(off, 0)
        pairs = [
            (int(off[i, j]), names[i], names[j]) for i, j in zip(*np.nonzero(off), strict=True)
        ]
        pairs.sort(reverse=True)
        if pairs:
            lines.append("")
            lines.append(
                "Most frequent confusions (true -> predicted: clips): "
                + ", ".join(f"{t} -> {p}: {c}" for c, t, p in pairs[:5])
            )
    report = run_dir / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return [report, *written]


def report_files(
    output_dir: str | Path, payload: dict[str, Any], loggers: list, title: str
) -> None:
    """``report.md`` and the PNGs of :func:`migalab.reports.write_report`, logged as images to
    W&B when a W&B logger is active. A report that fails is a warning: the run's metrics and
    checkpoints are written already."""
    try:
        files = write_report(Path(output_dir), payload, title)
    except Exception as err:  # noqa: BLE001 - plotting must never lose a finished run
        log.warning("report not written (%s: %s)", type(err).__name__, err)
        return
    print(f"report: {files[0]}")
    images = [f for f in files if f.suffix == ".png"]
    for lg in loggers:
        if images and type(lg).__name__ == "WandbLogger":
            lg.log_image(
                key="report", images=[str(f) for f in images], caption=[f.stem for f in images]
            )


def draw_keypoints(
    image: np.ndarray,
    keypoints: np.ndarray,
    label: str | None = None,
    scale: int = 1,
    caption: str | None = None,
) -> np.ndarray:
    """An RGB frame (H, W, 3) uint8 with a (137, 3) OpenPose-layout skeleton drawn on it (body
    and hand bones as lines, face points as dots; points of confidence 0 are skipped), an
    optional label in the top corner and caption in the bottom one; ``scale`` enlarges the
    frame first (small videos)."""
    from PIL import Image, ImageDraw

    from migalab.data.skeleton.layouts import get_layout

    img = Image.fromarray(np.ascontiguousarray(image))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    pts = keypoints[:, :2] * scale
    ok = keypoints[:, 2] > 0
    width = max(1, scale)
    for child, parent in get_layout("openpose137").edges_op:
        if 25 <= child < 95:  # face points hang off the nose in the graph: dots instead
            continue
        if ok[child] and ok[parent]:
            color = (230, 60, 60) if child < 25 else (60, 120, 255)
            draw.line([tuple(pts[child]), tuple(pts[parent])], fill=color, width=width)
    r = max(1, scale)
    for j in np.flatnonzero(ok[25:95]) + 25:
        x, y = pts[j]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(60, 220, 90))
    if label:
        draw.rectangle([0, 0, 8 * len(label) + 8, 16], fill=(0, 0, 0))
        draw.text((4, 2), label, fill=(255, 255, 255))
    if caption:
        draw.rectangle([0, img.height - 16, 8 * len(caption) + 8, img.height], fill=(0, 0, 0))
        draw.text((4, img.height - 14), caption, fill=(255, 230, 120))
    return np.asarray(img)


def annotated_video(
    video: str | Path,
    keypoints: np.ndarray,
    segments: Sequence[Any],
    out: str | Path,
    class_names: Sequence[str] | None = None,
    scale: int = 1,
    caption: str | None = None,
    keypoint_shape: tuple[int, int] | None = None,
) -> Path:
    """``out`` (H.264 mp4, the source's frame rate): every frame of ``video`` with its (T, 137,
    3) skeleton drawn (:func:`draw_keypoints`), the class of the detected segment covering it
    (blank between segments) and ``caption`` (e.g. the video's emotion); frames past the
    keypoint table are left as they are. ``keypoint_shape``: (height, width) of the frame the
    keypoints' pixels refer to, when not the video's (a release table of a video rendered at
    another size): they are scaled to the video. Written to a temporary name, then renamed."""
    import av

    out = Path(out)
    label_of = np.full(len(keypoints), -1)
    for s in segments:
        label_of[s.start : s.end + 1] = s.label
    tmp = out.with_name(f".{out.stem}.tmp.mp4")
    with av.open(str(video)) as src, av.open(str(tmp), "w") as dst:
        vin = src.streams.video[0]
        rate = vin.average_rate or 25
        stream = None
        points = np.asarray(keypoints, dtype=np.float32)
        if keypoint_shape is not None and vin.height and vin.width:
            factor = np.array(
                [vin.width / keypoint_shape[1], vin.height / keypoint_shape[0], 1.0],
                dtype=np.float32,
            )
            points = points * factor
        for i, frame in enumerate(src.decode(vin)):
            img = frame.to_ndarray(format="rgb24")
            if i < len(points):
                k = int(label_of[i])
                text = (class_names[k] if class_names else str(k)) if k >= 0 else None
                img = draw_keypoints(img, points[i], text, scale, caption)
            if stream is None:
                stream = dst.add_stream("libx264", rate=rate)
                stream.height, stream.width = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
                stream.pix_fmt = "yuv420p"
            img = img[: stream.height, : stream.width]
            dst.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), "rgb24")))
        if stream is not None:
            dst.mux(stream.encode(None))
    tmp.replace(out)
    return out
