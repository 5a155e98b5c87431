"""Crash-safe recordings (:mod:`polyp_live.realtime.sinks.recording`), ``--segment-minutes`` and odd frame sizes,
through real runs.

SIGKILL lands at a random moment (seeded; the seed is in every failure message) of a real ``polyp-live``
process -- a file run on the shipped CVC-ClinicDB clip and a live run on the simulated camera -- with a
random PEFNet-atto at 64x64 through ONNX Runtime (as the fault table; the bundled model takes ~200 ms a frame on
a loaded 2-core machine, too slow for a bounded test); the killed run's MP4 must decode with PyAV and hold the
JSONL's first frames, at their JSONL times, up to the last complete fragment.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from polyp_live.realtime.sinks.output_paths import segment_path
from polyp_live.realtime.sinks.recording import finalizing_path, keyframe_interval_frames
from polyp_live.realtime.sinks.writers import VideoWriterSink
from polyp_live.realtime.types import Frame, Result, SourceInfo, StageTimes
from tests.fault_helpers import (
    MAX_ENCODER_DELAY_FRAMES,
    check_message,
    decoded_times,
    onnx_cache,  # noqa: F401 - fixture
    read_jsonl,
)
from tests.realtime_fakes import disc_image, polyp_live

REPO = Path(__file__).resolve().parents[1]
CVC_SAMPLE = REPO / "samples" / "cvc_clinicdb_seq01-09.mp4"  # 199 real frames, 25 fps
SAMPLE_FPS = 25
LIVE_FPS = 25.0
RUN_TIMEOUT_S = 90.0

# a live polyp-live run on the simulated camera, in its own process (no camera needed): argv after "-c"
LIVE_RUN = (
    "import sys\n"
    "from realtime import cli\n"
    "from polyp_live.realtime.sources.reconnect import ReconnectingSource\n"
    "from polyp_live.realtime.sources.simulated import SimulatedCamera\n"
    f"camera = SimulatedCamera({LIVE_FPS}, 320, 240)\n"
    "cli.open_source = lambda *a, **k: ReconnectingSource(camera)\n"
    "sys.argv[0] = 'polyp-live'\n"
    "cli.entry()\n"
)


def headless_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def kill_when(command: list[str], jsonl: Path, lines: int) -> subprocess.CompletedProcess[str]:
    """Run ``command``; SIGKILL it once ``jsonl`` holds ``lines`` lines (polled, with a deadline)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=headless_env(),
                            cwd=REPO)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if jsonl.exists() and jsonl.read_bytes().count(b"\n") >= lines:
                break
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before the kill: {proc.communicate()[1][-2000:]}"
        proc.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def check_killed_recording(mp4: Path, jsonl: Path, fps: float, why: str) -> tuple[int, int]:
    """The MP4 decodes; it holds the JSONL's first frames at their times (relative to the first), at most one
    fragment + the encoder's delay fewer. Returns (MP4 frames, JSONL lines)."""
    records = read_jsonl(jsonl)  # every line whole and parsed
    times = decoded_times(mp4)
    lag = keyframe_interval_frames(fps) + MAX_ENCODER_DELAY_FRAMES
    assert len(records) - lag <= len(times) <= len(records), (len(times), len(records), why)
    assert times, why
    first = records[0]["time"]
    expected = [round(r["time"] - first, 3) for r in records[: len(times)]]
    assert times == pytest.approx(expected, abs=1.5e-3), why
    assert not finalizing_path(mp4).exists(), why  # killed while writing, never while finalizing
    return len(times), len(records)


@pytest.mark.usefixtures("onnx_cache")
def test_sigkill_at_a_random_moment_of_a_file_run(tmp_path: Path, atto_checkpoint: Path) -> None:
    seed = random.randrange(1 << 30)
    lines = random.Random(seed).randint(60, 170)  # the clip has 199 frames
    why = f"seed {seed}: killed after {lines} JSONL lines"
    mp4, jsonl = tmp_path / "x.mp4", tmp_path / "x.jsonl"
    done = kill_when([sys.executable, "-m", "polyp_live.realtime.cli", "--input", str(CVC_SAMPLE), "--output", str(mp4),
                      "--jsonl", str(jsonl), "--no-view", "--batch", "1", "--engine", str(atto_checkpoint)],
                     jsonl, lines)
    assert done.returncode == -signal.SIGKILL and "Traceback" not in done.stderr, done.stderr[-2000:]
    frames, records = check_killed_recording(mp4, jsonl, SAMPLE_FPS, why)
    assert [r["index"] for r in read_jsonl(jsonl)] == list(range(records))  # file mode: none skipped
    assert frames >= lines - keyframe_interval_frames(SAMPLE_FPS) - MAX_ENCODER_DELAY_FRAMES, why


@pytest.mark.usefixtures("onnx_cache")
def test_sigkill_at_a_random_moment_of_a_live_run(tmp_path: Path, atto_checkpoint: Path) -> None:
    seed = random.randrange(1 << 30)
    lines = random.Random(seed).randint(50, 120)
    why = f"seed {seed}: killed after {lines} JSONL lines"
    mp4, jsonl = tmp_path / "live.mp4", tmp_path / "live.jsonl"
    done = kill_when([sys.executable, "-c", LIVE_RUN, "--device", "/dev/video0", "--output", str(mp4),
                      "--jsonl", str(jsonl), "--no-view", "--engine", str(atto_checkpoint)], jsonl, lines)
    assert done.returncode == -signal.SIGKILL and "Traceback" not in done.stderr, done.stderr[-2000:]
    check_killed_recording(mp4, jsonl, LIVE_FPS, why)


def synthetic_result(index: int, ts: float, size: tuple[int, int] = (128, 96)) -> Result:
    image = disc_image(*size, center=(0.2 + 0.6 * (index % 10) / 10, 0.5))
    return Result(Frame(index, image, ts, time.monotonic()), None, image, StageTimes())


def test_the_file_plays_while_written_and_is_a_regular_mp4_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "rec.mp4"
    info = SourceInfo("synthetic", 128, 96, 25.0, False, time_base=Fraction(1, 1000), rate=Fraction(25))
    sink = VideoWriterSink(path, info)
    for i in range(60):
        sink.write(synthetic_result(i, i / 25))
    mid_run = decoded_times(path)  # open, not closed: the fragments written so far play
    assert 25 - MAX_ENCODER_DELAY_FRAMES <= len(mid_run) <= 60
    assert mid_run == pytest.approx([i / 25 for i in range(len(mid_run))], abs=1e-3)
    sink.close()
    data = path.read_bytes()
    assert b"moof" not in data and 0 <= data.find(b"moov") < data.find(b"mdat")  # finalized: index first
    assert sink.finalized and not finalizing_path(path).exists()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.frames == 60 and float(stream.duration * stream.time_base) == pytest.approx(60 / 25)
        keys = {round(float(p.pts * stream.time_base), 3) for p in container.demux(stream)
                if p.dts is not None and p.is_keyframe}
    assert {0.0, 1.0, 2.0} <= keys  # a keyframe (a fragment) at least every second


def test_a_failed_finalize_keeps_the_fragmented_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def disk_full(src: Path, dst: Path) -> None:
        dst.write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("polyp_live.realtime.sinks.recording._copy_packets", disk_full)
    path = tmp_path / "rec.mp4"
    sink = VideoWriterSink(path, SourceInfo("synthetic", 128, 96, 25.0, False))
    for i in range(30):
        sink.write(synthetic_result(i, i / 25))
    sink.close()
    assert not sink.finalized and not finalizing_path(path).exists()
    assert caplog.text.count("kept as a fragmented MP4") == 1 and "No space left on device" in caplog.text
    assert len(decoded_times(path)) == 30  # a clean close flushed the encoder: every frame is in the fragments


def test_segments_sum_to_the_jsonl_each_playable(tmp_path: Path, fake_engine: list[object], capsys,
                                                   caplog) -> None:
    out, jsonl = tmp_path / "rec.mp4", tmp_path / "rec.jsonl"
    minutes = 0.02  # 1.2 s: the 199-frame clip (7.96 s) makes 7 segments
    code, stdout, err = polyp_live(["--input", str(CVC_SAMPLE), "--output", str(out), "--jsonl", str(jsonl),
                                    "--segment-minutes", str(minutes)], capsys)
    assert code == 0, err
    records = read_jsonl(jsonl)
    assert len(records) == 199
    files = sorted(tmp_path.glob("rec_*.mp4"))
    assert files == [segment_path(out, i) for i in range(7)] and not out.exists()
    assert all(f"wrote        {f}" in stdout for f in files)  # the summary lists every segment
    offset = 0
    for number, path in enumerate(files):
        times = decoded_times(path)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            first = next(p for p in container.demux(stream) if p.dts is not None)
            assert first.is_keyframe and stream.frames == len(times)  # starts with a keyframe; finalized
        mine = records[offset: offset + len(times)]
        assert all(number * minutes * 60 <= r["time"] < (number + 1) * minutes * 60 + 1e-6 for r in mine)
        assert times == pytest.approx([r["time"] - mine[0]["time"] for r in mine], abs=1e-3)  # monotonic, own t=0
        offset += len(times)
    assert offset == len(records)  # no frame lost or repeated at a cut


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--stats", "{tmp}/rec_001.mp4"], "collides with the segment files of --output"),
    (["--input", "{tmp}/rec_000.mp4"], "refusing to overwrite the input"),
])
def test_segment_names_never_hit_an_input_or_another_output(tmp_path: Path, fake_engine: list[object], capsys,
                                                              extra: list[str], fragment: str) -> None:
    victim = tmp_path / "rec_000.mp4"
    victim.write_bytes(CVC_SAMPLE.read_bytes())
    args = [a.format(tmp=tmp_path) for a in extra]
    if "--input" not in args:
        args = ["--input", str(CVC_SAMPLE), *args]
    code, _, err = polyp_live([*args, "--output", str(tmp_path / "rec.mp4"), "--segment-minutes", "1"], capsys)
    assert code == 2
    check_message(err, code, fragment)
    assert victim.read_bytes() == CVC_SAMPLE.read_bytes() and not (tmp_path / "rec_001.mp4").exists()
    assert fake_engine == []  # refused before the model was loaded


def test_segment_minutes_needs_an_output(tmp_path: Path, fake_engine: list[object], capsys) -> None:
    code, _, err = polyp_live(["--input", str(CVC_SAMPLE), "--jsonl", str(tmp_path / "x.jsonl"),
                               "--segment-minutes", "1"], capsys)
    assert code == 2
    check_message(err, code, "--segment-minutes cuts the --output recording into files")


def test_odd_frame_size_is_padded_and_said_once(tmp_path: Path, fake_engine: list[object], capsys,
                                                caplog) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((95, 127, 3), 200, np.uint8))  # 127x95, light grey
    out = tmp_path / "o.mp4"
    code, _, err = polyp_live(["--input", str(folder), "--output", str(out), "--opacity", "0",
                               "--fps", "5", "--segment-minutes", "0.005"], capsys)  # 0.3 s: 3 segments, one warning
    assert code == 0, err
    assert caplog.text.count("H.264 needs even sides") == 1
    assert "padded with a black column on the right and a row at the bottom to 128x96" in caplog.text
    with av.open(str(segment_path(out, 0))) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (96, 128, 3)
    assert frame[:94, :126].mean() > 150 and frame[:, 127].max() < 40 and frame[95, :].max() < 40  # nothing cut


def clip_with_audio(path: Path, frames: int = 25) -> Path:
    """A 1 s 128x96 video at 25 fps with a 440 Hz AAC tone beside it (an input with sound)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 128, 96, "yuv420p"
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "mono"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(disc_image(128, 96), format="rgb24")
            container.mux(video.encode(frame))
        samples = np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)
        for start in range(0, 48000, 1024):
            chunk = av.AudioFrame.from_ndarray(samples[None, start: start + 1024], format="flt", layout="mono")
            chunk.sample_rate, chunk.pts = 48000, start
            container.mux(audio.encode(chunk))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def test_audio_in_the_input_is_said_to_be_dropped_once(tmp_path: Path, fake_engine: list[object], capsys) -> None:
    clip = clip_with_audio(tmp_path / "with_sound.mp4")
    out = tmp_path / "o.mp4"
    code, _, err = polyp_live(["--input", str(clip), "--output", str(out)], capsys)
    assert code == 0, err
    assert err.count("audio stream(s); the annotated MP4 is video only") == 1, err
    with av.open(str(out)) as container:
        assert len(container.streams.audio) == 0 and container.streams.video[0].frames == 25
    code, _, err = polyp_live(["--input", str(clip), "--jsonl", str(tmp_path / "o.jsonl")], capsys)
    assert code == 0 and "audio" not in err  # no MP4 written: nothing is dropped


def test_a_segment_cut_never_waits_for_finalizing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut hands the closed segment to the finalizer thread: the output thread (live video) goes on at once,
    however slow the disk; close() waits until every segment is a regular MP4."""
    from polyp_live.realtime.core.pipeline import pipeline_threads
    from polyp_live.realtime.sinks import recording
    from polyp_live.realtime.sinks.writers import SegmentedVideoSink

    copy = recording._copy_packets

    def slow_disk(src: Path, dst: Path) -> None:
        time.sleep(1.0)
        copy(src, dst)

    monkeypatch.setattr(recording, "_copy_packets", slow_disk)
    sink = SegmentedVideoSink(tmp_path / "rec.mp4", SourceInfo("synthetic", 128, 96, 25.0, True), 0.4)
    slowest = 0.0
    for i in range(30):  # 1.2 s at 25 fps: cuts at 0.4 s and 0.8 s
        start = time.monotonic()
        sink.write(synthetic_result(i, i / 25))
        slowest = max(slowest, time.monotonic() - start)
    assert slowest < 0.5  # generous under load; finalizing inline would take > 1 s at each cut
    sink.close()
    assert sink.files == [segment_path(tmp_path / "rec.mp4", i) for i in range(3)]
    for path in sink.files:
        data = path.read_bytes()
        assert b"moof" not in data and not finalizing_path(path).exists()  # all finalized by close()
    assert sum(len(decoded_times(p)) for p in sink.files) == 30
    assert not pipeline_threads()
