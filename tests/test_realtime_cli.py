"""``polyp-live`` end to end: real engine on real clips, bad inputs (one line, no traceback), SIGINT mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from polyp_live.realtime import cli
from polyp_live.train.cli_utils import run_cli
from tests.conftest import SAMPLE_CLIP
from tests.realtime_fakes import BrightSpotEngine, probe, write_disc_video

HEADLESS_ENV = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}


def polyp_live(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(cli.main, argv, prog="polyp-live")
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> BrightSpotEngine:
    engine = BrightSpotEngine(64, max_batch=4, preferred_batch=2)
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: engine)
    return engine


@pytest.mark.slow
def test_real_engine_annotates_the_1080p_sample(atto_checkpoint: Path, tmp_path: Path, capsys) -> None:
    if not SAMPLE_CLIP.exists():
        pytest.skip(f"sample clip missing: {SAMPLE_CLIP}")
    out, stats = tmp_path / "demo.mp4", tmp_path / "demo.json"
    code, text, err = polyp_live(["--input", str(SAMPLE_CLIP), "--output", str(out), "--stats", str(stats),
                                  "--engine", str(atto_checkpoint), "--backend", "torch", "--max-frames", "5",
                                  "--no-view", "--jsonl", str(tmp_path / "d.jsonl")], capsys)
    assert code == 0, err
    got = probe(out)
    assert (got["frames"], got["width"], got["height"], got["rate"]) == (5, 1920, 1080, 30)
    summary = json.loads(stats.read_text())
    assert summary["frames_out"] == 5 and summary["backend"] == "torch" and summary["stopped"] == "max frames"
    assert set(summary["latency"]) >= {"capture", "preprocess", "inference", "postprocess", "overlay", "output",
                                       "end_to_end"}
    assert "polyp-live summary" in text and "p95" in text and "Traceback" not in err
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 5


def test_no_output_flags_says_what_it_would_write(cvc_clip: Callable[[str], Path], fake_engine, capsys,
                                                  monkeypatch) -> None:
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, text, err = polyp_live(["--input", str(cvc_clip("seq01"))], capsys)
    assert code == 0 and "--output" in err and "nothing will be written" in err
    assert "in 25, out 25" in text


def test_truncated_mp4_decodes_what_it_can(tmp_path: Path, fake_engine, capsys) -> None:
    whole = write_disc_video(tmp_path / "whole.mp4", 60, faststart=True)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = polyp_live(["--input", str(cut), "--jsonl", str(tmp_path / "c.jsonl"), "--no-view"], capsys)
    records = (tmp_path / "c.jsonl").read_text().splitlines()
    assert code == 0 and 5 <= len(records) < 60
    assert f"input ended after {len(records)} of 60 frames" in err


def test_corrupt_packets_mid_file_are_skipped_and_counted(tmp_path: Path, fake_engine, capsys) -> None:
    import av
    import numpy as np

    clip = write_disc_video(tmp_path / "ok.mp4", 60, faststart=True)
    with av.open(str(clip)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(clip.read_bytes())
    rng = np.random.default_rng(0)
    for i in (20, 30, 40):
        pos, size = packets[i]
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    code, text, err = polyp_live(["--input", str(bad), "--jsonl", str(tmp_path / "b.jsonl"), "--no-view"], capsys)
    records = (tmp_path / "b.jsonl").read_text().splitlines()
    assert code == 0 and 50 <= len(records) < 60
    assert "3 packet(s) could not be decoded and were skipped" in err and "decode errors 3" in text


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "input not found"),
        ("text", "cannot open"),
        ("truncated-header", "cannot open"),
        ("device", "capture device /dev/video99 not found"),
        ("output-folder", "does not exist"),
        ("overwrite", "refusing to overwrite the input"),
        ("resolution", "--resolution must look like"),
        ("threshold", "threshold must be in (0, 1)"),
    ],
)
def test_bad_input_is_one_line(case: str, message: str, tmp_path: Path, fake_engine, capsys) -> None:
    clip = write_disc_video(tmp_path / "ok.mp4", 4)
    argv = {
        "missing": ["--input", str(tmp_path / "nope.mp4")],
        "text": ["--input", str(tmp_path / "notes.mp4")],
        "truncated-header": ["--input", str(tmp_path / "head.mp4")],
        "device": ["--device", "/dev/video99", "--reconnect-seconds", "0"],  # 0: no start-up retry lines
        "output-folder": ["--input", str(clip), "--output", str(tmp_path / "no" / "such" / "out.mp4")],
        "overwrite": ["--input", str(clip), "--output", str(clip)],
        "resolution": ["--device", "/dev/video99", "--resolution", "big"],
        "threshold": ["--input", str(clip), "--threshold", "1.5"],
    }[case]
    (tmp_path / "notes.mp4").write_text("this is not a video\n")
    (tmp_path / "head.mp4").write_bytes(clip.read_bytes()[:300])
    before = clip.read_bytes()
    code, _, err = polyp_live([*argv, "--no-view"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("polyp-live: error: ") and message in lines[0], err
    assert clip.read_bytes() == before
    assert fake_engine.calls == 0


def test_console_script_error_has_no_traceback(tmp_path: Path) -> None:
    exe = shutil.which("polyp-live") or str(Path(sys.executable).parent / "polyp-live")
    proc = subprocess.run([exe, "--input", str(tmp_path / "missing.mp4")], capture_output=True, text=True,
                          env=HEADLESS_ENV, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"polyp-live: error: input not found: {tmp_path / 'missing.mp4'}"]


@pytest.mark.slow
def test_sigint_mid_run_leaves_playable_outputs(atto_checkpoint: Path, tmp_path: Path) -> None:
    clip = write_disc_video(tmp_path / "long.mp4", 1500)
    out, jsonl, stats = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "s.json"
    exe = shutil.which("polyp-live") or str(Path(sys.executable).parent / "polyp-live")
    proc = subprocess.Popen(
        [exe, "--input", str(clip), "--output", str(out), "--jsonl", str(jsonl), "--stats", str(stats),
         "--engine", str(atto_checkpoint), "--backend", "torch", "--batch", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=HEADLESS_ENV,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and len(jsonl.read_bytes().splitlines()) >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert jsonl.read_text().endswith("\n")
    summary = json.loads(stats.read_text())
    got = probe(out)
    assert 20 <= got["frames"] == len(records) == summary["frames_out"] < 1500
    assert [r["index"] for r in records] == list(range(len(records)))
    assert got["duration"] == pytest.approx(len(records) / 25, abs=1e-3)
    assert summary["stopped"] == "stopped" and "Traceback" not in stderr and "polyp-live summary" in stdout


def test_sigterm_stops_cleanly_in_process(tmp_path: Path, monkeypatch, capsys) -> None:
    import threading

    engine = BrightSpotEngine(64, delay_s=0.01)
    monkeypatch.setattr("polyp_live.engines.registry.open_engine", lambda *a, **k: engine)
    clip = write_disc_video(tmp_path / "long.mp4", 400)
    jsonl, out = tmp_path / "t.jsonl", tmp_path / "t.mp4"

    def terminate_after_some_frames() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if jsonl.exists() and len(jsonl.read_bytes().splitlines()) >= 10:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=terminate_after_some_frames)
    killer.start()
    code, text, _ = polyp_live(["--input", str(clip), "--output", str(out), "--jsonl", str(jsonl), "--no-view"],
                               capsys)
    killer.join()
    records = jsonl.read_text().splitlines()
    assert code == 130 and "stopped      stopped" in text
    assert 10 <= len(records) == probe(out)["frames"] < 400
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
