"""The pages a user opens first after ``migalab-predict`` on whole videos: one self-contained
``<vid>_report.html`` per video (the answer: gestures and emotion; the timeline; the per-class
probability track; the annotated mp4, linked) and one ``report.html`` per run (every video,
and segment precision / recall / F1 per class where the videos' labels are known).

Images are embedded as data URIs, so a page can be mailed or moved; the annotated mp4 is
linked by its file name (it sits beside the page). Every ``<img>`` / ``<video>`` marks itself
``data-broken`` when it fails to load, which the browser test reads back.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from migalab.online import Segment, segment_scores
from migalab.utils.io import atomic_write_text

_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
.answer { font-size: 1.3em; padding: .6em 1em; background: #f3f0e6; border-radius: 6px; }
table { border-collapse: collapse; font-size: .9em; } td, th { padding: 2px 10px; }
th { text-align: left; border-bottom: 1px solid #999; } td.n { text-align: right; }
img, video { max-width: 100%; border: 1px solid #ddd; }
"""
_BROKEN = 'onerror="this.dataset.broken=1"'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def probability_track_png(
    path: Path,
    frame_probs: np.ndarray,
    class_names: Sequence[str] | None,
    actionness: np.ndarray | None = None,
    top: int = 5,
    title: str = "",
) -> Path:
    """A PNG of the per-frame probabilities (T, K) of the ``top`` classes most probable over
    the video (and the actionness (T,), dashed, where given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 2.8), dpi=100)
    order = np.argsort(-frame_probs.sum(0))[: max(1, top)] if frame_probs.size else []
    for k in order:
        name = class_names[k] if class_names and k < len(class_names) else str(k)
        ax.plot(frame_probs[:, k], lw=1, label=name)
    if actionness is not None:
        ax.plot(actionness, "k--", lw=1, label="actionness")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, max(len(frame_probs) - 1, 1))
    ax.set_xlabel("frame")
    ax.set_ylabel("probability")
    ax.legend(loc="upper right", fontsize=7, ncol=3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def _segments_table(rows: Sequence[Mapping[str, Any]], fps: float | None) -> str:
    if not rows:
        return "<p>No gesture found.</p>"
    head = "<tr><th>class</th><th>start</th><th>end</th><th>frames</th>"
    head += "<th>seconds</th>" if fps else ""
    head += "<th>score</th></tr>"
    body = []
    for r in rows:
        frames = int(r["end"]) - int(r["start"]) + 1
        sec = (
            f"<td class=n>{int(r['start']) / fps:.1f}–{(int(r['end']) + 1) / fps:.1f}</td>"
            if fps
            else ""
        )
        body.append(
            f"<tr><td>{html.escape(str(r.get('class_name') or r['label']))}</td>"
            f"<td class=n>{r['start']}</td><td class=n>{r['end']}</td>"
            f"<td class=n>{frames}</td>{sec}<td class=n>{float(r['score']):.2f}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def answer_text(record: Mapping[str, Any]) -> str:
    """One line: the gestures found and, where asked for, the emotion."""
    n = len(record.get("segments", []))
    text = f"{n} micro-gesture{'s' if n != 1 else ''} found"
    emotion = record.get("emotion")
    if emotion:
        clips = int(emotion["clips"])
        text += (
            f" · emotion: <b>{html.escape(emotion['answer'])}</b> (p win "
            f"{emotion['p_win']:.2f}, from {clips} clip{'s' if clips != 1 else ''})"
        )
    return text


def video_report(
    path: Path,
    record: Mapping[str, Any],
    timeline: Path | None,
    track: Path | None,
    fps: float | None = None,
) -> Path:
    """``<vid>_report.html``: the answer, the timeline and probability track (embedded), the
    annotated mp4 (linked, when the record has one), the segments and the settings."""
    vid = str(record["video_id"])
    parts = [f"<h1>{html.escape(vid)}</h1>", f"<p class=answer id=answer>{answer_text(record)}</p>"]
    if timeline is not None and timeline.is_file():
        parts.append(
            f'<h2>Timeline</h2><img id=timeline alt="timeline of {html.escape(vid)}" '
            f'src="{_png_uri(timeline)}" {_BROKEN}>'
        )
    if track is not None and track.is_file():
        parts.append(
            f'<h2>Per-class probability</h2><img id=track alt="probabilities" '
            f'src="{_png_uri(track)}" {_BROKEN}>'
        )
    annotated = record.get("annotated")
    if annotated:
        name = html.escape(Path(str(annotated)).name)
        parts.append(
            f"<h2>Annotated video</h2><video id=video controls preload=metadata "
            f'src="{name}" {_BROKEN}></video><p><a href="{name}">{name}</a></p>'
        )
    parts.append("<h2>Segments</h2>" + _segments_table(record.get("segments", []), fps))
    settings = {
        k: record[k]
        for k in (
            "threshold",
            "min_length",
            "actionness_threshold",
            "window",
            "stride",
            "frames",
            "frames_no_person",
        )
        if k in record
    }
    parts.append(
        "<h2>Settings</h2><p>"
        + html.escape(", ".join(f"{k} {v}" for k, v in settings.items()))
        + "</p>"
    )
    atomic_write_text(path, _page(f"{vid}: migalab", "\n".join(parts)))
    return path


def per_class_scores(
    preds: Mapping[str, Sequence[Segment]],
    truths: Mapping[str, Sequence[Segment]],
    iou: float,
) -> dict[int, dict[str, float]]:
    """Segment precision / recall / F1 at ``iou`` per class (the classes predicted or labelled),
    each from :func:`migalab.online.segment_scores` on that class's segments alone."""
    classes = sorted({s.label for v in (*preds.values(), *truths.values()) for s in v})
    out = {}
    for k in classes:
        p = {v: [s for s in segs if s.label == k] for v, segs in preds.items()}
        t = {v: [s for s in segs if s.label == k] for v, segs in truths.items()}
        out[k] = segment_scores(p, t, [iou])[f"iou_{iou:g}"]
    return out


def run_report(
    path: Path,
    records: Mapping[str, Mapping[str, Any]],
    pages: Mapping[str, Path],
    truths: Mapping[str, Sequence[Segment]] | None,
    class_names: Sequence[str] | None,
    iou: float = 0.3,
) -> Path:
    """``report.html`` of a run: a row per video (link to its page, gestures, emotion) and,
    where every video's labels are known, segment scores overall and per class at ``iou``."""
    rows = []
    for vid, r in records.items():
        emo = r.get("emotion")
        emotion = f"{emo['answer']} ({emo['p_win']:.2f})" if emo else "—"
        link = html.escape(pages[vid].name)
        rows.append(
            f'<tr><td><a href="{link}">{html.escape(vid)}</a></td>'
            f"<td class=n>{r['frames']}</td><td class=n>{len(r['segments'])}</td>"
            f"<td>{html.escape(emotion)}</td></tr>"
        )
    parts = [
        f"<h1>migalab-predict: {len(records)} video{'s' if len(records) != 1 else ''}</h1>",
        "<table id=videos><tr><th>video</th><th>frames</th><th>gestures</th>"
        "<th>emotion (p win)</th></tr>" + "".join(rows) + "</table>",
    ]
    if truths is not None:
        preds = {
            v: [
                Segment(int(s["start"]), int(s["end"]), int(s["label"]), float(s["score"]))
                for s in r["segments"]
            ]
            for v, r in records.items()
        }
        total = segment_scores(preds, truths, [iou])[f"iou_{iou:g}"]
        lines = []
        for k, s in per_class_scores(preds, truths, iou).items():
            name = class_names[k] if class_names and k < len(class_names) else str(k)
            lines.append(
                f"<tr><td>{html.escape(name)}</td><td class=n>{s['true']}</td>"
                f"<td class=n>{s['predicted']}</td><td class=n>{s['precision']:.3f}</td>"
                f"<td class=n>{s['recall']:.3f}</td><td class=n>{s['f1']:.3f}</td></tr>"
            )
        parts.append(
            f"<h2>Segment scores at IoU &gt; {iou:g}</h2><p id=overall>all classes: "
            f"precision {total['precision']:.3f}, recall {total['recall']:.3f}, "
            f"F1 {total['f1']:.3f} ({total['tp']} of {total['true']} labelled "
            f"segments found, {total['predicted']} predicted)</p><table id=per-class>"
            "<tr><th>class</th><th>labelled</th><th>predicted</th><th>precision</th>"
            "<th>recall</th><th>F1</th></tr>" + "".join(lines) + "</table>"
        )
    atomic_write_text(path, _page("migalab-predict report", "\n".join(parts)))
    return path
