"""The fault table: every way a run beside a live procedure can go wrong, one row each, run through ``polyp-live``.

Each :class:`FaultRow` names a fault, builds it (damaged inputs are made from a CVC-ClinicDB clip,
or a generated clip like it when the real data is absent: ``tests/media.py``),
runs the real CLI (in-process, or as a subprocess for the signal rows) with a random PEFNet-atto at 64x64,
and states the exit code, the message fragment and what must be kept. For EVERY row the test checks:

* the exit code (non-zero only where nothing useful could be done; 130 after SIGINT/SIGTERM);
* stderr: no traceback; a failure is exactly one ``polyp-live: error: ...`` line;
* what was written is usable: the MP4 decodes completely with PyAV and has as many frames as the JSON Lines
  file has lines; every JSON line parses (no partial last line); nothing is created when nothing ran;
* no thread (in-process) or child process (subprocess) is left running;
* the model was only ever fed real decoded frames (a recording engine hashes each one and the test compares
  them with an independent PyAV decode / the simulated camera's own pictures; none is all zeros).

The rows and the behaviour a user sees are listed in ``docs/reliability.md``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from polyp_live.realtime import cli
from polyp_live.realtime.sinks.recording import keyframe_interval_frames
from polyp_live.train.cli_utils import run_cli
from tests.fault_helpers import (
    MAX_ENCODER_DELAY_FRAMES,
    EngineTap,
    RecordingEngine,
    check_message,
    corrupt_packets,
    decode_all,
    decoded_times,
    documented_rows,
    onnx_cache,  # noqa: F401 - fixture
    plan_with_sidecar,
    read_jsonl,
    reference_frames,
    reference_model_inputs,
    remux_faststart,
    run_and_signal,
    run_disk_limited,
    settle_threads,
    truncate_half,
)
from tests.realtime_fakes import BrightSpotEngine, write_disc_video

CLIP_NAME = "seq01"
LONG_CLIP_FPS = 25
pytestmark = pytest.mark.usefixtures("onnx_cache")  # checkpoints run through one private ONNX export


@dataclass(frozen=True)
class Keeps:
    """What a run must leave behind. ``frames``: inclusive range of frames in the MP4 and lines in the JSONL.
    ``mp4_lag``: how many of the JSONL's last frames the MP4 may lack (a SIGKILL loses the fragment being
    written and the frames inside the encoder); the frames it holds are the JSONL's first ones, in order."""

    mp4: bool = True
    jsonl: bool = True
    frames: tuple[int, int] = (1, 10_000)
    mp4_lag: int = 0

    @property
    def anything(self) -> bool:
        return self.mp4 or self.jsonl


NOTHING = Keeps(mp4=False, jsonl=False, frames=(0, 0))


@dataclass
class FaultEnv:
    """One row's workspace: real clip, checkpoint, output paths, and state the setup leaves for the checks."""

    tmp: Path
    clip: Path
    checkpoint: Path
    monkeypatch: pytest.MonkeyPatch
    input: Path | None = None  # the file input whose decoded frames are the reference
    camera: Any = None  # the simulated camera of the device rows
    extra: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def mp4(self) -> Path:
        return self.tmp / "out.mp4"

    @property
    def jsonl(self) -> Path:
        return self.tmp / "out.jsonl"

    def outputs(self, mp4: str | Path | None = None) -> list[str]:
        return ["--output", str(mp4 or self.mp4), "--jsonl", str(self.jsonl)]

    def file_run(self, path: Path, *extra: str) -> list[str]:
        self.input = path
        return ["--input", str(path), "--engine", str(self.checkpoint), *self.outputs(), *extra]

    def engine_run(self, engine: Path) -> list[str]:
        return ["--input", str(self.clip), "--engine", str(engine), *self.outputs(), "--max-frames", "3"]


@dataclass(frozen=True)
class FaultRow:
    name: str
    setup: Callable[[FaultEnv], list[str]]  # builds the fault, returns the polyp-live arguments
    code: int
    message: str  # fragment of the error line (failures) or of the warning / log line (successes)
    keeps: Keeps
    runner: str = "cli"  # "cli": in-process main(); "signal": subprocess + signal; "pipeline": library run
    fail_after: int | None = None  # the engine raises after this many inference calls
    signum: int = 0
    not_said: str = ""  # a fragment stderr must not hold (a misleading warning)
    max_s: float = 30.0  # the run must end within this (never hang)


# --------------------------------------------------------------------------- row set-ups
def missing_input(env: FaultEnv) -> list[str]:
    return env.file_run(env.tmp / "no-such-case.mp4")


def text_as_mp4(env: FaultEnv) -> list[str]:
    path = env.tmp / "notes.mp4"
    path.write_text("procedure notes, not a video\n")
    return env.file_run(path)


def zero_bytes(env: FaultEnv) -> list[str]:
    path = env.tmp / "empty.mp4"
    path.write_bytes(b"")
    return env.file_run(path)


def truncated_index_first(env: FaultEnv) -> list[str]:
    whole = remux_faststart(env.clip, env.tmp / "whole.mp4")
    return env.file_run(truncate_half(whole, env.tmp / "half.mp4"))


def truncated_index_last(env: FaultEnv) -> list[str]:
    return env.file_run(truncate_half(env.clip, env.tmp / "half.mp4"))  # the clips keep their index last


def corrupt_middle(env: FaultEnv) -> list[str]:
    whole = remux_faststart(env.clip, env.tmp / "whole.mp4")
    return env.file_run(corrupt_packets(whole, env.tmp / "damaged.mp4", (8, 16)))


def silent_stream(env: FaultEnv) -> list[str]:
    """A server that accepts the connection (kernel backlog) and never says a word."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    env.cleanups.append(server.close)
    return ["--input", f"http://127.0.0.1:{server.getsockname()[1]}/case.mp4", "--engine", str(env.checkpoint),
            *env.outputs()]


def missing_device(env: FaultEnv) -> list[str]:
    # not there at start: retried for --reconnect-seconds (a tower may boot after the PC), then one line
    return ["--device", "/dev/video99", "--engine", str(env.checkpoint), *env.outputs(), "--reconnect-seconds", "1"]


def _camera_run(env: FaultEnv, outage: tuple[float, float], max_wait_s: float, frames: int) -> list[str]:
    from polyp_live.realtime.sources.reconnect import ReconnectingSource
    from polyp_live.realtime.sources.simulated import SimulatedCamera

    # the camera's clock starts at open(), before the engine loads (0.3-0.5 s on a loaded CI machine)
    env.camera = SimulatedCamera(30.0, 96, 64, frames=frames, outages=(outage,))
    source = ReconnectingSource(env.camera, max_wait_s=max_wait_s)
    env.extra["source"] = source
    env.monkeypatch.setattr(cli, "open_source", lambda *a, **k: source)
    return ["--device", "/dev/video0", "--engine", str(env.checkpoint), *env.outputs()]


def device_comes_back(env: FaultEnv) -> list[str]:
    # the outage starts 1.5 s after open(): after the engine has loaded even on a loaded 2-core machine (at
    # 0.8 s, a 1+ s engine load let the whole outage pass before the first read, and nothing reconnected)
    return _camera_run(env, (1.5, 0.4), max_wait_s=3.0, frames=90)


def device_gone(env: FaultEnv) -> list[str]:
    # 1.5 s, as above: at 0.8 s a slow engine load on a loaded machine left no frame before the loss
    return _camera_run(env, (1.5, 60.0), max_wait_s=0.5, frames=300)


def engine_raises(env: FaultEnv) -> list[str]:
    return env.file_run(env.clip, "--batch", "1")


def corrupt_onnx(env: FaultEnv) -> list[str]:
    path = env.tmp / "model.onnx"
    path.write_bytes(b"\x08\x07" + os.urandom(4000))
    return env.engine_run(path)


def truncated_plan(env: FaultEnv) -> list[str]:
    plan = plan_with_sidecar(env.tmp, env.checkpoint)
    truncate_half(plan, plan)
    return env.engine_run(plan)


def plan_other_version(env: FaultEnv) -> list[str]:
    return env.engine_run(plan_with_sidecar(env.tmp, env.checkpoint, version="10.0.0.1"))


def plan_other_gpu(env: FaultEnv) -> list[str]:
    from polyp_live.train.devices import GpuInfo

    env.monkeypatch.setattr("polyp_live.engines.tensorrt_backend.gpu_info",
                            lambda index=0: GpuInfo(index, "NVIDIA H100", "sm90"))
    return env.engine_run(plan_with_sidecar(env.tmp, env.checkpoint, targets=("sm86",)))


def pickle_checkpoint(env: FaultEnv) -> list[str]:
    import torch

    weights = env.tmp / "model.safetensors"
    torch.save({"weight": torch.zeros(3)}, weights)  # a torch.save pickle renamed to .safetensors
    (env.tmp / "model.json").write_text(env.checkpoint.with_suffix(".json").read_text())
    return env.engine_run(weights)


def pickle_by_suffix(env: FaultEnv) -> list[str]:
    path = env.tmp / "model.pt"
    path.write_bytes(b"\x80\x04K\x01.")  # pickle of the int 1
    return env.engine_run(path)


def other_variant(env: FaultEnv) -> list[str]:
    import json

    import torch

    from polyp_live.train.checkpoint import save_checkpoint
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.variants import create_model

    torch.manual_seed(0)
    weights = save_checkpoint(env.tmp / "femto", create_model("femto"), ModelContract("femto", (64, 64)))
    sidecar = weights.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data["contract"]["variant"] = data["model"]["variant"] = "atto"  # femto weights labelled atto
    sidecar.write_text(json.dumps(data))
    return env.engine_run(weights)


def output_under_a_file(env: FaultEnv) -> list[str]:
    blocker = env.tmp / "report.txt"
    blocker.write_text("a regular file where a folder was expected\n")
    return ["--input", str(env.clip), "--engine", str(env.checkpoint), "--output", str(blocker / "out.mp4"),
            "--jsonl", str(env.jsonl)]


def disk_full(env: FaultEnv) -> list[str]:
    env.input = env.clip
    return ["--input", str(env.clip), "--engine", str(env.checkpoint), "--output", "/dev/full",
            "--jsonl", str(env.jsonl)]


def disk_fills_up(env: FaultEnv) -> list[str]:
    env.input = env.clip
    return ["--input", str(env.clip), "--engine", str(env.checkpoint), *env.outputs(), "--no-view"]


def long_clip(env: FaultEnv) -> list[str]:
    clip = write_disc_video(env.tmp / "long.mp4", 600, fps=LONG_CLIP_FPS, faststart=True)
    return ["--input", str(clip), "--engine", str(env.checkpoint), *env.outputs(), "--batch", "1", "--no-view"]


def results_never_taken(env: FaultEnv) -> list[str]:
    return []


ROWS = [
    FaultRow("missing input", missing_input, 2, "input not found", NOTHING),
    FaultRow("text file named .mp4", text_as_mp4, 2, "not a video, truncated or unreachable", NOTHING),
    FaultRow("zero-byte file", zero_bytes, 2, "not a video, truncated or unreachable", NOTHING),
    FaultRow("MP4 cut at half (index first)", truncated_index_first, 0, "input ended after", Keeps(frames=(3, 24))),
    FaultRow("MP4 cut at half (index last)", truncated_index_last, 2, "not a video, truncated or unreachable",
             NOTHING),
    FaultRow("MP4 corrupt in the middle", corrupt_middle, 0, "2 packet(s) could not be decoded and were skipped",
             Keeps(frames=(15, 24))),
    FaultRow("stream that never answers", silent_stream, 2, "cannot open http://127.0.0.1:", NOTHING, max_s=15.0),
    FaultRow("capture device missing", missing_device, 2, "capture device /dev/video99 not found (connected? list "
             "them with: ls /dev/video*) (tried for 1.", NOTHING),
    FaultRow("device vanishes, comes back", device_comes_back, 0, "reconnected", Keeps(frames=(10, 90)),
             not_said="truncated or damaged"),
    FaultRow("device vanishes for good", device_gone, 2, "did not come back within 0.5 s", Keeps(frames=(1, 45))),
    FaultRow("engine raises mid-stream", engine_raises, 2, "inference failed: CUDA error", Keeps(frames=(5, 5)),
             fail_after=5),
    FaultRow("corrupt ONNX", corrupt_onnx, 2, "not a readable ONNX model", NOTHING),
    FaultRow("truncated TensorRT plan", truncated_plan, 2, "the file is truncated or modified; rebuild it", NOTHING),
    FaultRow("plan sidecar: other TensorRT", plan_other_version, 2, "but this machine runs tensorrt_rtx", NOTHING),
    FaultRow("plan sidecar: other GPU", plan_other_gpu, 2, "built for sm86 (on NVIDIA A10) but this GPU is sm90",
             NOTHING),
    FaultRow("checkpoint is a pickle", pickle_checkpoint, 2, "polyp-live never unpickles", NOTHING),
    FaultRow("checkpoint .pt file", pickle_by_suffix, 2, "unknown model file type '.pt'", NOTHING),
    FaultRow("checkpoint of another variant", other_variant, 2, "the sidecar names the wrong variant", NOTHING),
    FaultRow("output folder is a file", output_under_a_file, 2, "report.txt is a file, not a folder", NOTHING),
    FaultRow("disk full (/dev/full)", disk_full, 2, "No space left on device", NOTHING),  # the MP4 header fails
    FaultRow("disk fills up mid-run", disk_fills_up, 2, "disk full (wrote", Keeps(mp4=False, frames=(1, 24)),
             runner="limited"),
    FaultRow("SIGINT mid-run", long_clip, 130, "stopping", Keeps(frames=(10, 599)), runner="signal",
             signum=signal.SIGINT),
    FaultRow("SIGTERM mid-run", long_clip, 130, "stopping", Keeps(frames=(10, 599)), runner="signal",
             signum=signal.SIGTERM),
    FaultRow("SIGKILL mid-run: JSONL kept", long_clip, -signal.SIGKILL, "", Keeps(mp4=False, frames=(10, 599)),
             runner="signal", signum=signal.SIGKILL),
    FaultRow("SIGKILL mid-run: MP4 kept", long_clip, -signal.SIGKILL, "",
             Keeps(frames=(60, 599), mp4_lag=keyframe_interval_frames(LONG_CLIP_FPS) + MAX_ENCODER_DELAY_FRAMES),
             runner="signal", signum=signal.SIGKILL),
    FaultRow("results never taken", results_never_taken, 0, "", Keeps(frames=(40, 90)), runner="pipeline"),
]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def env(tmp_path: Path, atto_checkpoint: Path, cvc_clip: Callable[[str], Path],
        monkeypatch: pytest.MonkeyPatch) -> FaultEnv:
    clip = cvc_clip(CLIP_NAME)
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    return FaultEnv(tmp_path, clip, atto_checkpoint, monkeypatch)


# --------------------------------------------------------------------------- the table
KNOWN_GAPS: dict[str, str] = {}  # row name -> why it fails today (run as a strict xfail); none at present


def table() -> list[Any]:
    return [pytest.param(row, id=row.name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[row.name])]
                         if row.name in KNOWN_GAPS else []) for row in ROWS]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("row", table())
def test_fault(row: FaultRow, env: FaultEnv, capsys: pytest.CaptureFixture[str],
               caplog: pytest.LogCaptureFixture) -> None:
    before = set(threading.enumerate())
    started = time.monotonic()
    try:
        if row.runner == "signal":
            run_signal_row(row, env)
        elif row.runner == "limited":
            run_limited_row(row, env)
        elif row.runner == "pipeline":
            run_results_never_taken(row, env)
        else:
            run_cli_row(row, env, capsys, caplog)
    finally:
        for cleanup in env.cleanups:
            cleanup()
    assert time.monotonic() - started <= row.max_s, "the run took too long (hung?)"
    assert settle_threads(before) == [], "threads left running"


def run_cli_row(row: FaultRow, env: FaultEnv, capsys: pytest.CaptureFixture[str],
                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    argv = row.setup(env)
    inputs_before = {p: p.read_bytes() for p in env.tmp.iterdir() if p.is_file()}
    tap = EngineTap(row.fail_after).install(env.monkeypatch)
    code = run_cli(cli.main, [*argv, "--no-view"], prog="polyp-live")
    _, stderr = capsys.readouterr()
    assert code == row.code, stderr
    check_message(stderr, code, row.message, caplog.text)
    assert not row.not_said or row.not_said not in stderr, stderr
    frames = check_kept(row.keeps, env)
    for path, data in inputs_before.items():  # no input was modified
        assert path.read_bytes() == data, path
    check_fed_frames(tap, env, frames, failed=code != 0)
    if env.camera is not None and code == 0:  # the run went on across the outage through one reconnect
        assert env.extra["source"].reconnects == 1 and env.camera.opens == 2


def check_kept(keeps: Keeps, env: FaultEnv) -> int:
    """The outputs a row must keep are whole and agree; those it must not create do not exist."""
    if not keeps.anything:
        assert not env.mp4.exists() and not env.jsonl.exists(), "outputs created although nothing ran"
        return 0
    records = read_jsonl(env.jsonl)
    assert [r["index"] for r in records] == sorted(r["index"] for r in records)
    if keeps.mp4 and keeps.mp4_lag:  # killed: whole fragments only, each frame at its JSONL time
        times = decoded_times(env.mp4)
        assert len(records) - keeps.mp4_lag <= len(times) <= len(records), (len(times), len(records))
        assert times == pytest.approx([r["time"] for r in records[: len(times)]], abs=1e-3)
    elif keeps.mp4:
        assert decode_all(env.mp4) == len(records), "MP4 frames differ from JSON Lines records"
    lo, hi = keeps.frames
    assert lo <= len(records) <= hi, len(records)
    return len(records)


def check_fed_frames(tap: EngineTap, env: FaultEnv, written: int, *, failed: bool) -> None:
    """The model saw only real pictures: each is a frame PyAV decodes from the input (in order, for files) or
    one the simulated camera drew; none is all zeros."""
    assert tap.zero_frames == 0
    fed = tap.fed
    if env.camera is not None:
        drawn = {_hash_of(env.camera.render(i)) for i in range(env.camera.frames)}
        assert fed and set(fed) <= drawn
    elif env.input is not None and fed:
        reference = reference_frames(env.input)  # RGB frames (a viewer, image folders, odd sizes) ...
        if fed != reference[: len(fed)]:  # ... or, in file mode without a viewer, the model's input made from planes
            reference = reference_model_inputs(env.input, tap.engines[0].contract)
        assert fed == reference[: len(fed)], "a frame the decoder never produced reached the model"
        if failed:  # frames in flight when a stage failed were fed but not written
            assert len(fed) >= written
        else:
            assert len(fed) == written  # file mode: every decoded frame fed once and written once
    else:
        assert fed == []


def _hash_of(rgb: Any) -> str:
    from tests.fault_helpers import frame_hash

    return frame_hash(rgb)


def headless_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}


def run_limited_row(row: FaultRow, env: FaultEnv) -> None:
    """Files may not grow past 3000 bytes: the JSONL fills up after about a dozen lines. Its last line is whole;
    the MP4, whose index is written at the end, cannot be finished (documented in docs/reliability.md)."""
    code, stdout, stderr = run_disk_limited(row.setup(env), 3000, headless_env())
    assert code == row.code, stderr
    check_message(stderr, code, row.message)
    assert "polyp-live summary" in stdout
    check_kept(row.keeps, env)


def run_signal_row(row: FaultRow, env: FaultEnv) -> None:
    argv = row.setup(env)
    run_env = headless_env()

    def ready() -> bool:
        return env.jsonl.exists() and env.jsonl.read_bytes().count(b"\n") >= row.keeps.frames[0]

    code, stdout, stderr, children = run_and_signal(argv, row.signum, ready, run_env)
    assert code == row.code, stderr
    if row.signum == signal.SIGKILL:  # no handler runs: nothing is said, only what is on disk counts
        assert "Traceback" not in stderr
    else:
        check_message(stderr, code, row.message)
        assert "stopped      stopped" in stdout
    records = check_kept(row.keeps, env)
    assert [r["index"] for r in read_jsonl(env.jsonl)] == list(range(records))  # file mode: none skipped
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == [], "child processes left running"


def run_results_never_taken(row: FaultRow, env: FaultEnv) -> None:
    """Live camera at 60 fps, a slow model and results nobody iterates: the run keeps going (drops counted),
    latency stays bounded, the recording is whole, shutdown is clean."""
    from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads
    from polyp_live.realtime.sinks.writers import LIVE_PRESET, JsonlSink, VideoWriterSink
    from polyp_live.realtime.sources.simulated import SimulatedCamera

    fps = 60.0
    env.camera = SimulatedCamera(fps, 160, 120, frames=90)
    info = env.camera.open()
    engine = RecordingEngine(BrightSpotEngine(64, delay_s=0.03))
    sinks = [VideoWriterSink(env.mp4, info, preset=LIVE_PRESET), JsonlSink(env.jsonl)]
    pipeline = Pipeline(env.camera, engine, PipelineConfig(deliver=True), sinks)
    pipeline.start()
    assert pipeline.wait(timeout=20.0), "the pipeline stalled behind a consumer that never reads"
    pipeline.close()
    summary = pipeline.summary()
    assert summary.stopped == "end of input" and summary.error is None
    drops = dict(summary.drops)
    assert drops["delivered"] >= summary.frames_out - 1  # the unread result queue dropped, never blocked
    end_to_end = next(item for item in summary.latency if item.stage == "end_to_end")
    assert end_to_end.p95_ms <= (2 / fps + 0.25) * 1000
    assert check_kept(row.keeps, env) == summary.frames_out
    assert engine.zero_frames == 0
    drawn = {_hash_of(env.camera.render(i)) for i in range(90)}
    assert engine.fed and set(engine.fed) <= drawn
    assert not pipeline_threads()


def test_every_row_is_documented() -> None:
    """``docs/reliability.md`` lists every row of the table with its exit code (the README links to it)."""
    rows = documented_rows()
    for row in ROWS:
        assert row.name in rows, f"fault row {row.name!r} is missing from docs/reliability.md"
        assert rows[row.name] == str(row.code), row.name


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """The one-line rule has one exception: ``--debug`` shows the full traceback (for bug reports)."""
    import subprocess
    import sys

    missing = tmp_path / "missing.mp4"
    quiet = subprocess.run([sys.executable, "-m", "polyp_live.realtime.cli", "--input", str(missing), "--no-view"],
                           capture_output=True, text=True, timeout=60, env=headless_env())
    loud = subprocess.run([sys.executable, "-m", "polyp_live.realtime.cli", "--input", str(missing), "--no-view",
                           "--debug"],
                          capture_output=True, text=True, timeout=60, env=headless_env())
    assert quiet.returncode == 2 and quiet.stderr.strip() == f"polyp-live: error: input not found: {missing}"
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "SourceError: input not found" in loud.stderr
