"""The prediction reports a user opens first: their content, their links, per-class segment
scores, and (slow) the page as a person sees it, rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from migalab.online import Segment
from migalab.online_report import (
    per_class_scores,
    probability_track_png,
    run_report,
    video_report,
)


class _Links(HTMLParser):
    """Every src / href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


def broken_links(page: Path) -> list[str]:
    """The links of ``page`` that are neither data URIs nor files beside it."""
    parser = _Links()
    parser.feed(page.read_text())
    return [link for link in parser.links
            if not link.startswith("data:") and not (page.parent / link).is_file()]  # fmt: skip


def _record() -> dict:
    return {"video_id": "v1", "frames": 100, "threshold": 0.5, "min_length": 8,
            "segments": [{"start": 10, "end": 29, "label": 1, "class_name": "b", "score": 0.8}],
            "emotion": {"answer": "lose", "p_win": 0.31, "clips": 1}}  # fmt: skip


def test_per_class_scores_pool_each_class_alone() -> None:
    preds = {"a": [Segment(0, 9, 1), Segment(20, 29, 2)], "b": [Segment(0, 9, 2)]}
    truths = {"a": [Segment(0, 9, 1), Segment(40, 49, 2)], "b": [Segment(0, 9, 2)]}
    scores = per_class_scores(preds, truths, 0.3)
    assert sorted(scores) == [1, 2]
    assert scores[1]["f1"] == 1.0 and scores[1]["true"] == 1
    assert scores[2]["tp"] == 1 and scores[2]["predicted"] == 2 and scores[2]["true"] == 2
    assert scores[2]["precision"] == 0.5 and scores[2]["recall"] == 0.5


def test_video_and_run_pages_hold_the_answer_and_no_broken_link(tmp_path: Path) -> None:
    frames = np.zeros((100, 3), np.float32)
    frames[10:30, 1] = 0.8
    track = probability_track_png(tmp_path / "v1_probabilities.png", frames, ["a", "b", "c"],
                                  actionness=np.full(100, 0.4))  # fmt: skip
    record = _record()
    page = video_report(tmp_path / "v1_report.html", record, None, track, fps=25.0)
    text = page.read_text()
    assert (
        "1 micro-gesture found" in text and "emotion: <b>lose</b> (p win 0.31, from 1 clip)" in text
    )
    assert "0.4–1.2" in text  # the segment in seconds at 25 fps
    assert 'id=track alt="probabilities" src="data:image/png;base64,' in text
    assert broken_links(page) == []
    # a linked mp4 that is missing is a broken link
    video_report(tmp_path / "v1_report.html", {**record, "annotated": str(tmp_path / "v1.mp4")},
                 None, track)  # fmt: skip
    assert broken_links(page) == ["v1.mp4", "v1.mp4"]  # the <video> and its link
    truths = {"v1": [Segment(10, 29, 1), Segment(50, 59, 0)]}
    run = run_report(tmp_path / "report.html", {"v1": record}, {"v1": page}, truths, ["a", "b"])
    text = run.read_text()
    assert '<a href="v1_report.html">v1</a>' in text and "lose (0.31)" in text
    assert "F1 0.667 (1 of 2 labelled segments found, 1 predicted)" in text
    assert re.search(r"<td>a</td><td class=n>1</td><td class=n>0</td>", text)
    assert broken_links(run) == []


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("MIGALAB_REQUIRE_CHROMIUM"):
        pytest.fail("MIGALAB_REQUIRE_CHROMIUM is set but there is no chromium on PATH")
    return found


def _chromium_args(profile: Path) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}"]  # fmt: skip


@pytest.mark.slow  # two checkpoints, a prediction by name with the emotion, Chromium twice
def test_the_report_as_a_person_sees_it(
    cli_run: tuple[Path, Path], emotion_run: tuple[Path, Path], tiny_video_release: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """migalab-predict on the tiny release's test split with an emotion checkpoint and the
    annotated video; each video's page, rendered in headless Chromium, shows the answer, the
    timeline, the probability track and the video, with nothing broken, and its screenshot is
    not blank; the run's page links every video's."""
    from PIL import Image

    from tests.test_console_scripts import _ok, run_script

    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium (Debian's package: apt-get install chromium)")
    _, gesture = cli_run
    out = tmp_path / "run"
    _ok(run_script(["migalab-predict", f"ckpt_path={gesture}", f"emotion_ckpt={emotion_run[1]}",
                    f"skeleton={tiny_video_release / 'test'}", "online.annotate=true",
                    "online.threshold=0.0", f"hydra.run.dir={out}"], tmp_path))  # fmt: skip
    summary = json.loads((out / "online.json").read_text())
    run_page = Path(summary["report"])
    assert broken_links(run_page) == []
    videos = list(summary["videos"])
    assert videos and all(f'href="{v}_report.html"' in run_page.read_text() for v in videos)
    page = out / f"{videos[0]}_report.html"
    assert broken_links(page) == []
    dom = subprocess.run([chromium, *_chromium_args(tmp_path / "p1"), "--virtual-time-budget=5000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    assert "micro-gesture" in dom and re.search(r"emotion: <b>(win|lose)</b>", dom)
    for element in ('id="timeline"', 'id="track"', 'id="video"'):
        assert element in dom, element
    assert "data-broken" not in dom  # every image and the video loaded
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, *_chromium_args(tmp_path / "p2"), "--window-size=1200,1600",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120,
                   check=True)  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1200) and pixels.std() > 20  # a page, not a blank
