"""Network streams as live sources (:mod:`polyp_live.realtime.sources.network`): the scheme table, the stale-frame
policy, and real sender processes on the loopback (``tests/stream_sender.py``: PyAV's muxer, x264 zerolatency, MPEG-TS
over UDP or served over HTTP, paced in real time) feeding the real pipeline and the real ``polyp-live`` CLI.

The loopback tests bound every wait with a deadline and poll (the machine is shared with a training job): they
check the live mode, that the first shown frame is fresh (no backlog played fast), that a killed and restarted
sender is reconnected into the same recording with monotonic timestamps, and that a sender gone for good ends
in one clear error line, exit 2 and a playable recording -- for UDP and for HTTP.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import pytest

from polyp_live.realtime.errors import SourceError
from polyp_live.realtime.ports import SinkBase, source_stale_dropped, source_startup_s
from polyp_live.realtime.sources.network import (
    LIVE_ALLOWANCE_PERIODS,
    STARTUP_MAX_S,
    LiveEdgePolicy,
    NetworkSource,
    RtspTransport,
    Verdict,
    demuxer_options,
    protocol_available,
)
from polyp_live.realtime.sources.open import open_source
from polyp_live.realtime.sources.reconnect import ReconnectingSource
from polyp_live.realtime.sources.simulated import SimulatedCamera
from polyp_live.train.media_paths import LiveDefault, locate
from tests.fault_helpers import ERROR_PREFIX, onnx_cache  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
PERIOD = 0.04  # the sample clip's 25 fps
CLI_START_S = 120.0  # a CLI subprocess imports, loads the engine and reaches the live edge (2 shared cores: 10-60 s)


# --------------------------------------------------------------------------- the scheme table, options
@pytest.mark.parametrize(("url", "default"), [
    ("udp://127.0.0.1:5000", LiveDefault.LIVE), ("rtp://239.0.0.1:5004", LiveDefault.LIVE),
    ("rtsp://tower/stream", LiveDefault.LIVE), ("srt://host:9000", LiveDefault.LIVE),
    ("http://tower:8080/live.ts", LiveDefault.PROBE), ("HTTPS://host/case.mp4", LiveDefault.PROBE),
])
def test_each_scheme_has_a_default_mode(url: str, default: LiveDefault) -> None:
    assert locate(url).live_default is default
    assert locate("case.mp4").live_default is LiveDefault.FILE


def test_live_inputs_open_with_low_latency_options() -> None:
    udp = demuxer_options(locate("udp://127.0.0.1:5000"), live=True)
    assert udp["fflags"] == "nobuffer" and udp["flags"] == "low_delay" and udp["overrun_nonfatal"] == "1"
    assert int(udp["probesize"]) <= 1_000_000 and int(udp["analyzeduration"]) <= 2_000_000  # FFmpeg: 5 MB, 5 s
    rtsp = demuxer_options(locate("rtsp://tower/s"), live=True, rtsp_transport=RtspTransport.UDP)
    assert rtsp["rtsp_transport"] == "udp" and "overrun_nonfatal" not in rtsp
    assert "fflags" not in demuxer_options(locate("http://host/case.mp4"), live=False)  # --no-live: plain open
    assert NetworkSource("rtsp://tower/s").inner.options["rtsp_transport"] == "tcp"  # the default transport


def test_live_and_no_live_force_the_mode() -> None:
    assert NetworkSource("http://host/live.ts", live=True).probe is False
    assert NetworkSource("udp://127.0.0.1:5000", live=False).live is False
    forced = open_source("udp://127.0.0.1:5000", live=False, reconnect_s=0)
    assert isinstance(forced, ReconnectingSource) and forced.max_wait_s == 0


def test_srt_without_ffmpeg_support_is_one_clear_line() -> None:
    if protocol_available("srt"):
        pytest.skip("this PyAV's FFmpeg has SRT")
    with pytest.raises(SourceError) as caught:
        NetworkSource("srt://127.0.0.1:9000").open()
    message = str(caught.value)
    assert "no srt:// support" in message and "\n" not in message and "Errno" not in message


def test_reconnect_seconds_zero_gives_up_at_once_in_one_line() -> None:
    camera = SimulatedCamera(fps=50.0, width=64, height=48, outages=((0.1, 60.0),))
    source = ReconnectingSource(camera, max_wait_s=0)
    source.open()
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        while source.read() is not None:
            pass
    message = str(caught.value)
    assert time.monotonic() - started < 5.0 and camera.opens == 1  # no reopen was tried
    assert message.startswith(f"lost {camera.info.description} after ") and "no reconnect" in message
    assert "\n" not in message and 3 <= source.frames <= 10


def test_reconnect_logs_each_attempt_and_comes_back(caplog: pytest.LogCaptureFixture) -> None:
    camera = SimulatedCamera(fps=50.0, width=64, height=48, outages=((0.1, 0.4),))
    source = ReconnectingSource(camera, max_wait_s=5.0)
    source.open()
    with caplog.at_level("WARNING", logger="polyp_live.realtime.sources"):
        frames = [source.read() for _ in range(40)]
    attempts = [r.getMessage() for r in caplog.records if "reconnect attempt" in r.getMessage()]
    assert len(attempts) >= 2 and "reconnect attempt 1, 0.0 s after the loss" in attempts[0]
    assert source.reconnects == 1 and all(f is not None for f in frames)


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_reconnect_seconds_must_be_a_finite_non_negative_number(value: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from polyp_live.realtime.cli import build_parser

    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["--input", "udp://127.0.0.1:5000", "--reconnect-seconds", value])
    assert caught.value.code == 2 and "--reconnect-seconds" in capsys.readouterr().err


# --------------------------------------------------------------------------- the stale-frame policy
def feed(policy: LiveEdgePolicy, frames: list[tuple[float, float, float]]) -> list[Verdict]:
    return [policy.judge(arrival, stream_s, read_s) for arrival, stream_s, read_s in frames]


def test_buffered_frames_at_startup_are_dropped_until_the_live_edge() -> None:
    policy = LiveEdgePolicy(PERIOD)
    policy.restart()
    backlog = [(10.0 + 0.002 * k, PERIOD * k, 0.001) for k in range(50)]  # 2 s of stream decoded in 0.1 s
    t = backlog[-1][0]
    live = [(t + PERIOD * (k + 1), PERIOD * (50 + k), 0.03) for k in range(20)]  # then one per period, waited for
    verdicts = feed(policy, backlog + live)
    assert verdicts[:50] == [Verdict.BUFFERED] * 50  # the backlog; the first waited read is as late as the last
    assert verdicts[50:] == [Verdict.FRESH] * 20  # buffered frame: the stream time keeps pace, the edge
    assert policy.buffered == 50 and policy.late == 0


def test_a_burst_after_a_stall_is_dropped_and_a_clock_jump_is_followed() -> None:
    policy = LiveEdgePolicy(PERIOD)
    policy.restart()
    feed(policy, [(k * PERIOD, k * PERIOD, 0.03) for k in range(10)])  # at the edge from frame 1 on
    stall = 9 * PERIOD + 0.5  # 0.5 s without data, then the 12 frames sent meanwhile come at once
    burst = [(stall + 0.001 * k, (10 + k) * PERIOD, 0.0005) for k in range(12)]
    verdicts = feed(policy, burst)
    late_by = [stall + 0.001 * k - (10 + k) * PERIOD for k in range(12)]
    expected = [Verdict.LATE if late > LIVE_ALLOWANCE_PERIODS * PERIOD else Verdict.FRESH for late in late_by]
    assert verdicts == expected and Verdict.LATE in verdicts and verdicts[-1] is Verdict.FRESH
    jump = policy.judge(stall + 1.0, 1.4, 0.03)  # sender restarted: its clock is back at 1.4 s, frame waited for
    assert jump is Verdict.FRESH and policy.reanchored == 1


def test_a_faster_than_real_time_input_is_shown_after_the_startup_limit() -> None:
    policy = LiveEdgePolicy(PERIOD)
    policy.restart()
    frames = [(0.005 * k, PERIOD * k, 0.001) for k in range(int(STARTUP_MAX_S / 0.005) + 10)]
    verdicts = feed(policy, frames)
    assert Verdict.FRESH in verdicts and verdicts[0] is Verdict.BUFFERED


# --------------------------------------------------------------------------- sender processes on the loopback
def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


@contextmanager
def stream_sender(url: str, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m tests.stream_sender URL``, started and waited for (``READY``, or ``LISTENING`` for HTTP)."""
    handle = log.open("ab")
    process = subprocess.Popen([sys.executable, "-m", "tests.stream_sender", url, *extra], cwd=ROOT,
                               stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        marker = b"LISTENING" if "--listen" in extra else b"READY"
        wait_for(lambda: marker in log.read_bytes() or process.poll() is not None, 60.0, "the sender to start")
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        stop_process(process)
        handle.close()


def stop_process(process: subprocess.Popen[bytes], how: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        process.send_signal(how)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def jsonl_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    records = [json.loads(line) for line in text.splitlines()[: text.count("\n")]]  # whole lines only
    return [r for r in records if "event" not in r]  # frame records (gap events are separate lines)


def decoded_pts(path: Path) -> list[float]:
    """Every frame's timestamp in decode order (the MP4 plays to its end: PyAV raises otherwise)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(frame.pts * frame.time_base) for frame in container.decode(stream)]


class CliRun:
    """``polyp-live`` as a subprocess with the atto model, stdout/stderr in files, killed at the end."""

    def __init__(self, tmp: Path, checkpoint: Path, url: str, *extra: str) -> None:
        self.mp4, self.jsonl, self.stderr = tmp / "rec.mp4", tmp / "rec.jsonl", tmp / "stderr.txt"
        self.stdout = tmp / "stdout.txt"
        argv = [sys.executable, "-m", "polyp_live.realtime.cli", "--input", url, "--engine", str(checkpoint),
                "--no-view",
                "--output", str(self.mp4), "--jsonl", str(self.jsonl), *extra]
        env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(self.command(argv), cwd=tmp, stdout=out, stderr=err,
                                            env={**env, "PYTHONPATH": str(ROOT)})

    def command(self, argv: list[str]) -> list[str]:
        """The command line that runs ``argv`` (a subclass wraps it, e.g. in a supervisor)."""
        return argv

    def frames(self) -> int:
        return len(jsonl_lines(self.jsonl))

    def wait_frames(self, count: int, timeout_s: float) -> int:
        """Polls the JSONL; fails at once (with the child's stderr) when polyp-live has exited."""
        def check() -> int | bool:
            if self.process.poll() is not None and self.frames() < count:
                raise AssertionError(f"polyp-live exited ({self.process.returncode}): {self.log()[-600:]}")
            return self.frames() >= count and self.frames()

        try:
            return wait_for(check, timeout_s, f"{count} frames in the JSONL")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; stderr: {self.log()[-600:]}") from None

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def finish(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            stop_process(self.process)

    def check_recording(self) -> list[dict[str, Any]]:
        """The MP4 plays with strictly increasing timestamps; one JSONL line per MP4 frame, times increasing."""
        records = jsonl_lines(self.jsonl)
        pts = decoded_pts(self.mp4)
        assert len(pts) == len(records) > 0
        assert all(b > a for a, b in itertools.pairwise(pts)), "MP4 timestamps not strictly increasing"
        times = [r["time"] for r in records]
        assert all(b > a for a, b in itertools.pairwise(times)), "JSONL times not increasing"
        return records


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(ERROR_PREFIX)]


class FreshnessRecorder(SinkBase):
    """Records (time shown, stream time, inference s or None) for each result the output stage writes."""

    name = "freshness"

    def __init__(self) -> None:
        self.shown: list[tuple[float, float, float | None]] = []
        self._lock = threading.Lock()

    def write(self, result: Any) -> None:
        prediction = result.prediction
        with self._lock:
            self.shown.append((time.monotonic(), result.frame.source_ts,
                               prediction.times.inference if prediction is not None else None))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def default_engine() -> Iterator[Any]:
    from polyp_live.engines.registry import open_engine

    with open_engine("default") as engine:
        yield engine


def test_udp_stream_is_live_and_its_first_shown_frame_is_fresh(tmp_path: Path, default_engine: Any) -> None:
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig
    from polyp_live.realtime.types import RunMode

    url = f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    with stream_sender(url, tmp_path / "sender.txt"):
        source = open_source(url)
        source.open()
        time.sleep(1.5)  # as the CLI loading its engine: 1.5 s of stream pile up in FFmpeg's UDP buffer
        recorder = FreshnessRecorder()
        pipeline = Pipeline(source, default_engine, PipelineConfig(deliver=False), [recorder])
        assert pipeline.mode is RunMode.LIVE
        pipeline.start()
        try:
            wait_for(lambda: len(recorder.shown) >= 40, 60.0, "40 shown frames")
        finally:
            pipeline.stop()
            pipeline.wait(10.0)
            pipeline.close()
    shown = recorder.shown
    lateness = [t - ts for t, ts, _ in shown]  # display time minus stream time: the age plus a constant
    inference = max(s for *_, s in shown if s is not None)
    slack = 0.3  # scheduling under a loaded CPU
    assert lateness[0] - min(lateness) <= 2 * PERIOD + inference + slack, "the first shown frame was stale"
    wall, stream = shown[19][0] - shown[0][0], shown[19][1] - shown[0][1]
    assert stream <= wall + 3 * PERIOD, f"played fast: {stream:.2f} s of stream in {wall:.2f} s"
    startup_s = source_startup_s(source)
    assert source_stale_dropped(source) >= 10, "the backlog of the first 1.5 s should have been dropped"
    assert startup_s is not None and 1.5 <= startup_s <= 1.5 + 3.0


def loopback_cli(test: Callable[..., None]) -> Callable[..., None]:
    """A ``polyp-live`` subprocess run: the atto model through the session's ONNX cache; slow (the child imports
    and loads its engine: 10-30 s on the loaded 2-core CI machine)."""
    return pytest.mark.timeout(300)(pytest.mark.slow(pytest.mark.usefixtures("onnx_cache")(test)))  # hang guard


@loopback_cli
def test_udp_sender_restart_continues_the_same_recording(tmp_path: Path, atto_checkpoint: Path) -> None:
    url = f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    sender_log = tmp_path / "sender.txt"
    with stream_sender(url, sender_log) as first:
        run = CliRun(tmp_path, atto_checkpoint, url, "--reconnect-seconds", "20")
        try:
            run.wait_frames(15, CLI_START_S)
            stop_process(first)
            wait_for(lambda: "reconnect attempt 2" in run.log(), 15.0, "reconnect attempts in the log")
            before = run.frames()
            with stream_sender(url, sender_log):
                wait_for(lambda: "reconnected" in run.log(), 15.0, "the reconnect")
                run.wait_frames(before + 15, 20.0)
                run.process.send_signal(signal.SIGTERM)
                assert run.finish(20.0) == 130
        finally:
            stop_process(run.process)
    assert "Errno" not in run.log() and "Traceback" not in run.log()
    records = run.check_recording()
    assert records[-1]["time"] > records[before - 1]["time"] > 0
    # the silence is on the timeline (wall-clock-true, not 1/90000 s) and recorded as a gap event
    events = [json.loads(line) for line in run.jsonl.read_text().splitlines() if '"event"' in line]
    assert any(e["event"] == "gap" and e["gap_s"] >= 1.0 for e in events), events
    assert max(b["time"] - a["time"] for a, b in itertools.pairwise(records)) >= 1.0


def run_until_the_sender_dies(tmp: Path, checkpoint: Path, url: str, sender_args: tuple[str, ...],
                              *cli_args: str) -> tuple[CliRun, int]:
    """polyp-live on ``url`` until 10 frames are recorded, then the sender is killed for good; the run's exit code."""
    with stream_sender(url, tmp / "sender.txt", *sender_args) as sender:
        if "--listen" in sender_args:
            time.sleep(0.3)  # LISTENING is printed just before av.open binds the port
        run = CliRun(tmp, checkpoint, url, *cli_args)
        try:
            run.wait_frames(10, CLI_START_S)
            stop_process(sender)
            code = run.finish(30.0)
        finally:
            stop_process(run.process)
    return run, code


@loopback_cli
def test_udp_sender_gone_for_good_is_one_error_line_and_a_playable_recording(tmp_path: Path,
                                                                             atto_checkpoint: Path) -> None:
    url = f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    run, code = run_until_the_sender_dies(tmp_path, atto_checkpoint, url, (), "--reconnect-seconds", "2")
    log = run.log()
    assert code == 2, log[-600:]
    (line,) = error_lines(log)
    assert f"lost {url} after" in line and "did not come back within" in line and "sender is running" in line
    assert "Errno" not in log and "Traceback" not in log
    assert "reconnect attempt 1" in log
    run.check_recording()


@loopback_cli
def test_http_stream_is_live_and_a_dropped_connection_is_not_a_silent_end(tmp_path: Path,
                                                                          atto_checkpoint: Path) -> None:
    url = f"http://127.0.0.1:{free_port(socket.SOCK_STREAM)}/live.ts"
    run, code = run_until_the_sender_dies(tmp_path, atto_checkpoint, url, ("--listen",),
                                          "--reconnect-seconds", "1", "--stats", "stats.json")
    log = run.log()
    assert code == 2, log[-600:]
    (line,) = error_lines(log)
    assert f"lost {url} after" in line and "Errno" not in log
    assert json.loads((tmp_path / "stats.json").read_text())["mode"] == "live"
    run.check_recording()


@loopback_cli
def test_bench_live_network_mode_reports_startup_and_latency(tmp_path: Path, atto_checkpoint: Path) -> None:
    from benchmarks import bench_live

    out = tmp_path / "bench.json"
    code = bench_live.main(["--network", "udp", "--seconds", "3", "--window-seconds", "1", "--warmup-seconds", "0.5",
                            "--engine", str(atto_checkpoint), "--json", str(out)])
    assert code == 0
    (session,) = json.loads(out.read_text())["sessions"]
    assert session["network"] == "udp" and session["url"].startswith("udp://127.0.0.1:")
    assert session["startup_s"] is not None and 0 < session["startup_s"] < 10
    assert session["overall"]["shown"] > 10 and session["overall"]["display"]["p95_ms"] > 0
    assert isinstance(session["pass_startup"], bool) and session["error"] is None


# --------------------------------------------------------------------------- messages, start-up, held-back frames
@pytest.mark.parametrize(("text", "scheme", "words", "retried"), [
    ("[Errno 875574520] Server returned 404 Not Found: 'rtsp://h/x'", "rtsp", "RTSP 404 Not Found (wrong path", True),
    ("[Errno 825242872] Server returned 401 Unauthorized (authorization failed): 'rtsp://h/x'", "rtsp",
     "RTSP 401 Unauthorized (give the user name and password", False),
    ("[Errno 1482175992] Server returned 5XX Server Error reply: 'rtsp://h/x'", "rtsp", "RTSP 5xx server error", True),
    ("[Errno 875574520] Server returned 404 Not Found: 'http://h/x'", "http", "HTTP 404 Not Found", True),
    ("[Errno 111] Connection refused: 'rtsp://h/x'", "rtsp", "connection refused", True),
    ("[Errno 1414092869] Immediate exit requested: 'udp://h:5'", "udp", "no data for 2 s", True),
])
def test_failures_are_named_by_protocol_and_status(text: str, scheme: str, words: str, retried: bool) -> None:
    from polyp_live.realtime.sources.network import may_come_up, plain_reason

    reason = plain_reason(OSError(text), scheme)
    assert reason.startswith(words) and "Errno" not in reason, reason
    assert may_come_up(reason) is retried


def test_a_server_that_accepts_and_never_answers_is_said_plainly() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # the kernel accepts; nobody ever answers
    try:
        url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/stream"
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            ReconnectingSource(NetworkSource(url), max_wait_s=0).open()
    finally:
        server.close()
    message = str(caught.value)
    assert "accepted the connection but did not answer within 2 s" in message and "Invalid data" not in message
    assert time.monotonic() - started < 6.0


class LateSource(SimulatedCamera):
    """Not there for the first ``absent`` opens (a tower still booting)."""

    def __init__(self, absent: int) -> None:
        super().__init__(fps=50.0, width=32, height=24, frames=5)
        self.absent, self.tries = absent, 0

    def open(self) -> Any:
        from polyp_live.realtime.errors import SourceUnavailable

        self.tries += 1
        if self.tries <= self.absent:
            raise SourceUnavailable("cannot open udp://tower:5000: connection refused")
        return super().open()


def test_a_live_source_not_there_at_start_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    source = ReconnectingSource(LateSource(absent=3), max_wait_s=5.0, first_delay_s=0.01)
    with caplog.at_level("WARNING", logger="polyp_live.realtime.sources"):
        source.open()
    lines = [r.getMessage() for r in caplog.records]
    assert source.open_attempts == 4 and len([m for m in lines if "(attempt " in m]) == 4  # 3 waits, 1 "there"
    assert "connection refused (attempt 1," in lines[0] and "is there after" in lines[-1]
    assert source.read() is not None


def test_a_live_source_that_never_comes_is_one_line_after_the_wait() -> None:
    source = ReconnectingSource(LateSource(absent=10**6), max_wait_s=0.3, first_delay_s=0.01)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.open()
    message = str(caught.value)
    assert 0.3 <= time.monotonic() - started < 3.0 and "\n" not in message
    assert message.startswith("cannot open udp://tower:5000: connection refused (tried for 0.")
    assert "--reconnect-seconds" in message
    with pytest.raises(SourceError, match=r"^cannot open udp://tower:5000: connection refused$"):
        ReconnectingSource(LateSource(absent=1), max_wait_s=0).open()  # 0: at once, as before


def test_a_closed_port_is_retried_only_for_a_known_live_stream() -> None:
    from polyp_live.realtime.errors import SourceUnavailable

    port = free_port(socket.SOCK_STREAM)
    with pytest.raises(SourceUnavailable, match="connection refused"):
        NetworkSource(f"rtsp://127.0.0.1:{port}/stream").open()
    with pytest.raises(SourceError) as caught:  # http(s) may be a file on a web server: a mistake, not a wait
        NetworkSource(f"http://127.0.0.1:{port}/case.mp4").open()
    assert not isinstance(caught.value, SourceUnavailable)


def test_a_frame_held_back_by_a_stall_is_told_from_a_skip() -> None:
    from polyp_live.realtime.timebase import held_back
    from polyp_live.realtime.types import Gap, GapReason

    assert held_back(Gap(5.3, 1.6, GapReason.STALL, 0.04))  # sent on time, came 1.6 s later: an old picture
    assert not held_back(Gap(5.3, 1.6, GapReason.STALL, 1.6))  # clock and arrival agree: frames were skipped
    assert not held_back(Gap(5.3, 4.0, GapReason.RECONNECT, -2.0))
