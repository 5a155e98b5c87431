"""The procedure view through the real pipeline and CLI: the alarm hides flicker, two polyps are counted apart,
the JSONL carries the alarm and track ids, and ``--report`` writes one self-contained HTML page (checked in headless
Chromium: it renders, two cards with their pictures, no link leaves the file) and its JSON; bad report paths give
one line."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from polyp_live.realtime import cli
from polyp_live.train.cli_utils import run_cli
from tests.realtime_fakes import BrightSpotEngine, disc_frame

FPS = 25
# frame ranges: a polyp on the left, nothing, a one-frame flicker every other frame, a polyp on the right
SCRIPT = [("left", 20), ("none", 6), ("flicker", 8), ("none", 6), ("right", 24)]


def procedure_clip(path: Path, height: int = 96, width: int = 128) -> Path:
    """A made-up procedure: known polyps at known frames (lossless H.264)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        index = 0
        for kind, count in SCRIPT:
            for i in range(count):
                centre = {"left": (30 + i, 40), "right": (95 - i // 2, 60), "flicker": (64, 80)}.get(kind)
                show = kind in ("left", "right") or (kind == "flicker" and i % 2 == 0)
                image = disc_frame(height, width, centre, 12) if show and centre else disc_frame(
                    height, width, (0, 0), 0)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
                index += 1
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> BrightSpotEngine:
    engine = BrightSpotEngine(64, max_batch=4, preferred_batch=2)
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: engine)
    return engine


def polyp_live(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(cli.main, argv, prog="polyp-live")
    out, err = capsys.readouterr()
    return code, out, err


def test_alarm_tracks_and_report(tmp_path: Path, fake_engine: BrightSpotEngine,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    clip = procedure_clip(tmp_path / "procedure.mp4")
    report, jsonl, stats = tmp_path / "visit.html", tmp_path / "visit.jsonl", tmp_path / "stats.json"
    code, out, err = polyp_live(["--input", str(clip), "--no-view", "--report", str(report), "--jsonl", str(jsonl),
                                 "--stats", str(stats), "--alarm-on", "3", "--alarm-off", "3"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in jsonl.read_text().splitlines() if '"event"' not in line]
    flicker = records[26:34]
    assert any(r["polyp"] for r in flicker) and not any(r["alarm"] for r in flicker)  # flicker: no alarm
    assert all(r["alarm"] for r in records[4:20]) and all(r["alarm"] for r in records[48:64])
    tracks = {region["track"] for r in records for region in r["regions"] if region["confirmed"]}
    assert len(tracks) == 2
    summary = json.loads(stats.read_text())
    assert summary["distinct_polyps"] == 2 and len(summary["episodes"]) == 2
    left, right = summary["polyps"]
    assert left["first_index"] == 0 and 18 <= left["last_index"] <= 19 and right["first_index"] == 40
    assert "2 distinct" in out
    facts = json.loads(report.with_suffix(".json").read_text())
    assert facts["complete"] and facts["distinct_polyps"] == 2
    page = report.read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 2 and page.count('class="card"') == 2
    for uri in images:  # inline pictures that decode
        assert uri.startswith("data:image/jpeg;base64,")
        picture = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[1] == 360
    assert not re.search(r'(src|href)="(?!data:)', page) and "http" not in page.lower().replace("http-equiv", "")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.timeout(180)
def test_report_renders_in_headless_chromium(tmp_path: Path, fake_engine: BrightSpotEngine,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium); .ci/run installs it")
    clip = procedure_clip(tmp_path / "procedure.mp4")
    report = tmp_path / "visit.html"
    code, _, err = polyp_live(["--input", str(clip), "--no-view", "--report", str(report)], capsys)
    assert code == 0, err
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1400"]
    shot = tmp_path / "shot.png"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    subprocess.run([browser, *flags, f"--screenshot={shot}", report.as_uri()], check=True, timeout=120,
                   capture_output=True, env=env)
    dom = subprocess.run([browser, *flags, "--dump-dom", report.as_uri()], check=True, timeout=120,
                         capture_output=True, text=True, env=env).stdout
    assert dom.count('class="card"') == 2 and dom.count("<img") == 2 and "Procedure report" in dom
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1400, 1280)
    header = image[5:60, 5:600]  # the dark blue header band was drawn
    assert abs(int(header[..., 0].mean()) - 0x57) < 40 and header.std() > 5  # blue band with text on it
    colours = len(np.unique(image.reshape(-1, 3) // 16, axis=0))
    assert colours > 40  # pictures, timeline and text, not a blank page


def test_report_path_errors_are_one_line(tmp_path: Path, fake_engine: BrightSpotEngine,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    clip = procedure_clip(tmp_path / "procedure.mp4")
    cases = [
        (["--report", str(tmp_path / "visit.pdf")], "--report writes an HTML page"),
        (["--report", str(tmp_path / "no" / "such" / "dir" / "visit.html")], "visit.html"),
        (["--report", str(clip.with_suffix(".html")), "--stats", str(clip.with_suffix(".json"))], "--stats"),
        (["--report", str(tmp_path / "a.html"), "--preview", str(tmp_path / "a.html")], "a.html"),
    ]
    for extra, words in cases:
        code, _, err = polyp_live(["--input", str(clip), "--no-view", *extra], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and words in lines[0], (extra, err)
    assert not list(tmp_path.glob("*.html"))
