"""Fakes, input makers and checks for the fault table (``tests/test_faults.py``).

* :class:`RecordingEngine` wraps a real engine and records a hash of every frame the pipeline feeds it,
  so a test can prove no made-up frame (zeros, a repeated last frame) ever reached the model; it can also
  fail mid-stream like a GPU that is lost.
* The input makers build damaged files from a real CVC-ClinicDB clip (remuxed, never re-encoded, so the
  frames are the clip's own).
* The checks read what a run left behind: a playable MP4 (PyAV decodes every frame), JSON Lines with no
  partial line, one error line on stderr, no thread left behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from polyp_live.engines.base import Engine

PROG = "polyp-live"
ERROR_PREFIX = f"{PROG}: error: "
WARNING_PREFIX = f"{PROG}: warning: "
# frames libx264 holds before its first packet, at most (the bound covers --preset veryfast): its 10-frame
# lookahead + its frame threads (1.5 per core)
# - 1; measured 12 on 2 cores with veryfast (2 with ultrafast), bf=0, any size; +2 to spare
MAX_ENCODER_DELAY_FRAMES = 10 + math.ceil(1.5 * (os.cpu_count() or 1)) + 2


def frame_hash(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


class RecordingEngine(Engine):
    """Delegates to ``inner``; records every frame it is fed; raises in ``infer`` after ``fail_after`` calls."""

    name = "recording"

    def __init__(self, inner: Engine, fail_after: int | None = None) -> None:
        super().__init__(inner.info)
        self.inner = inner
        self.fail_after = fail_after
        self.fed: list[str] = []
        self.zero_frames = 0
        self.infer_calls = 0
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> Engine:
        raise NotImplementedError("wraps an engine opened elsewhere")

    def prepare(self, frames: Sequence[np.ndarray], plans: Any = None) -> Any:
        with self._lock:
            for rgb in frames:
                self.fed.append(frame_hash(rgb))
                self.zero_frames += int(not np.any(rgb))
        return self.inner.prepare(frames, plans)

    def infer(self, batch: Any) -> np.ndarray:
        with self._lock:
            self.infer_calls += 1
            calls = self.infer_calls
        if self.fail_after is not None and calls > self.fail_after:
            raise RuntimeError(f"CUDA error: an illegal memory access was encountered (simulated, call {calls})")
        return self.inner.infer(batch)

    def warmup(self, iterations: int = 2) -> None:  # the inner engine warmed up at load
        pass

    def close(self) -> None:
        self.inner.close()
        super().close()


@dataclass
class EngineTap:
    """Installed in place of ``polyp_live.engines.registry.open_engine``: opens the real engine and wraps it."""

    fail_after: int | None = None
    engines: list[RecordingEngine] = field(default_factory=list)

    def install(self, monkeypatch: Any) -> EngineTap:
        import polyp_live.engines.registry as registry

        real_open = registry.open_engine

        def tapped(*args: Any, **kwargs: Any) -> Engine:
            engine = RecordingEngine(real_open(*args, **kwargs), self.fail_after)
            self.engines.append(engine)
            return engine

        monkeypatch.setattr(registry, "open_engine", tapped)
        return self

    @property
    def fed(self) -> list[str]:
        return [h for engine in self.engines for h in engine.fed]

    @property
    def zero_frames(self) -> int:
        return sum(engine.zero_frames for engine in self.engines)


# --------------------------------------------------------------------------- fixtures
_CACHE_DIRS: list[Path] = []


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, atto_checkpoint: Path) -> Iterator[Path]:
    """A private ONNX cache, filled once per session (the CPU path exports a checkpoint to ONNX)."""
    if not _CACHE_DIRS:  # imported by two test modules: two fixture instances, one cache folder
        _CACHE_DIRS.append(tmp_path_factory.mktemp("onnx-cache"))
    folder = _CACHE_DIRS[0]
    previous = os.environ.get("POLYP_LIVE_CACHE")
    os.environ["POLYP_LIVE_CACHE"] = str(folder)
    from polyp_live.engines.cache import cached_onnx

    cached_onnx(atto_checkpoint)
    yield folder
    if previous is None:
        os.environ.pop("POLYP_LIVE_CACHE", None)
    else:
        os.environ["POLYP_LIVE_CACHE"] = previous


# --------------------------------------------------------------------------- inputs
def remux_faststart(src: Path, dst: Path) -> Path:
    """Copy ``src``'s video packets into an MP4 with the index (moov) first; the frames are unchanged."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "+faststart"}) as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = target
            out.mux(packet)
    return dst


def packet_spans(path: Path) -> list[tuple[int, int]]:
    """``(byte offset, size)`` of each video packet in the file."""
    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]


def corrupt_packets(src: Path, dst: Path, which: Sequence[int], seed: int = 0) -> Path:
    """``src`` with the bytes of packets ``which`` replaced by noise (damage in the middle of the file)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    spans = packet_spans(src)
    for i in which:
        pos, size = spans[i]
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def truncate_half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


def decoded_frames(path: Path) -> Iterator[Any]:
    """The frames PyAV decodes from ``path`` on its own, in order (undecodable packets skipped; none when the
    file does not open)."""
    try:
        container = av.open(str(path))
    except av.error.FFmpegError:
        return
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.FFmpegError:
                continue


def reference_frames(path: Path) -> list[str]:
    """Hashes of the frames PyAV decodes from ``path`` on its own, in RGB."""
    return [frame_hash(f.to_ndarray(format="rgb24")) for f in decoded_frames(path)]


def reference_model_inputs(path: Path, contract: Any) -> list[str]:
    """Hashes of what the model is fed in polyp-live's file mode without a viewer: each frame PyAV decodes, as
    4:2:0 planes, through the stream's field of view and the contract's crop/letterbox (``resize_frame``)."""
    from polyp_live.train.fov import FieldOfViewTracker
    from polyp_live.train.preprocess import plan_input, resize_frame
    from polyp_live.train.yuv import Yuv420

    hashes: list[str] = []
    tracker = FieldOfViewTracker()
    for frame in decoded_frames(path):
        if frame.width % 2 or frame.height % 2:
            return []  # odd sizes are fed as RGB: reference_frames covers them
        picture = Yuv420(frame.to_ndarray(format="yuv420p"))
        box = tracker.update(picture) if contract.field_of_view else None
        plan = plan_input(picture.height, picture.width, contract, box)
        hashes.append(frame_hash(resize_frame(picture, contract, plan)))
    return hashes


def plan_with_sidecar(folder: Path, checkpoint: Path, *, version: str | None = None,
                      targets: tuple[str, ...] = ("sm86",)) -> Path:
    """A stand-in plan (random bytes, never deserialized here) with a valid sidecar built for ``targets``."""
    import tensorrt_rtx

    from polyp_live.engines.onnx_format import BatchProfile
    from polyp_live.engines.sidecar import EngineSidecar, write_sidecar
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.hashing import sha256_file

    plan = folder / "model.engine"
    plan.write_bytes(b"ftrt" + os.urandom(64_000))
    sidecar = EngineSidecar(
        contract=ModelContract("atto", (64, 64)), precision="fp16", batch=BatchProfile(1, 1, 1), io_dtype="float32",
        flavour="tensorrt_rtx", trt_version=version or tensorrt_rtx.__version__, targets=targets,
        builder_gpu="NVIDIA A10", onnx_sha256="0" * 64, plan_sha256=sha256_file(plan), source_sha256="",
        source=str(checkpoint), created="2026-11-26T00:00:00Z",
    )
    write_sidecar(plan, sidecar)
    return plan


# --------------------------------------------------------------------------- checks
def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]


def check_message(stderr: str, code: int, fragment: str, logs: str = "") -> None:
    """No traceback; a failure is exactly one ``polyp-live: error:`` line holding ``fragment``;
    a success has no error line and shows ``fragment`` (if any) as a warning on stderr or in the log."""
    assert "Traceback" not in stderr, stderr
    errors = error_lines(stderr)
    if code != 0 and code != 130:
        assert len(errors) == 1, stderr
        assert fragment in errors[0], (fragment, errors[0])
        assert "\n" not in errors[0]
        return
    assert errors == [], stderr
    if fragment:
        assert fragment in stderr + logs, (fragment, stderr, logs)


def documented_rows() -> dict[str, str]:
    """Fault name -> exit code, from the one fault table (``docs/reliability.md``; the README links to it)."""
    from tests.conftest import REPO

    doc = (REPO / "docs" / "reliability.md").read_text()
    return {line.split("|")[1].strip(): line.split("|")[3].strip() for line in doc.splitlines()
            if line.startswith("| ") and line.count("|") >= 5}


def read_jsonl(path: Path, *, events: bool = False) -> list[dict[str, Any]]:
    """The frame records (``events=True``: the event records, e.g. gaps, instead); every line parses and the file
    ends with a newline (no partial last line)."""
    text = path.read_text()
    assert text == "" or text.endswith("\n"), f"partial last line in {path}"
    records = [json.loads(line) for line in text.splitlines()]
    return [r for r in records if ("event" in r) == events]


def decode_all(path: Path) -> int:
    """Frames PyAV decodes from ``path``; any decode error fails the test (the MP4 must be playable)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream))


def decoded_times(path: Path) -> list[float]:
    """The time (s) of every frame PyAV decodes from ``path``, in order; a decode error fails the test."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(frame.pts * frame.time_base) for frame in container.decode(stream)]


def settle_threads(before: set[threading.Thread], timeout_s: float = 5.0) -> list[threading.Thread]:
    """Threads started since ``before`` that are still alive after ``timeout_s`` (tqdm's monitor excepted:
    a process-wide daemon that tqdm reuses)."""
    deadline = time.monotonic() + timeout_s
    while True:
        extra = [t for t in threading.enumerate()
                 if t not in before and t.is_alive() and type(t).__name__ != "TMonitor"]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.05)


# --------------------------------------------------------------------------- subprocess
def cli_command() -> list[str]:
    return [sys.executable, "-m", "polyp_live.realtime.cli"]


def run_and_signal(argv: list[str], signum: int, ready: Callable[[], bool], env: dict[str, str],
                   timeout_s: float = 60.0) -> tuple[int, str, str, list[int]]:
    """Start ``polyp-live argv``, send ``signum`` once ``ready()``; returns (code, stdout, stderr, child pids)."""
    import psutil

    proc = subprocess.Popen([*cli_command(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    children: list[int] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be signalled: {proc.communicate()[1]}"
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:  # never leave it behind, even when an assertion failed
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout, stderr, children


def which_polyp_live() -> str | None:
    return shutil.which(PROG)


LIMITED_RUN = (
    "import resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG) instead of killing\n"
    "limit = int(sys.argv.pop(1))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "sys.argv[0] = 'polyp-live'\n"
    "from polyp_live.realtime.cli import entry\n"
    "entry()\n"
)


def run_disk_limited(argv: list[str], limit_bytes: int, env: dict[str, str],
                     timeout_s: float = 60.0) -> tuple[int, str, str]:
    """Run ``polyp-live argv`` where no file may grow past ``limit_bytes`` (a disk that fills up mid-run)."""
    proc = subprocess.run([sys.executable, "-c", LIMITED_RUN, str(limit_bytes), *argv], capture_output=True,
                          text=True, env=env, timeout=timeout_s)
    return proc.returncode, proc.stdout, proc.stderr
