"""Fake engines and helpers for the realtime tests (no model, no GPU, deterministic).

``BrightSpotEngine`` "segments" bright pixels: its logits are +8 where the preprocessed input's
mean over channels is above ``level`` and -8 elsewhere, so a bright disc in a frame gives a mask
exactly where the disc is. It goes through the real :meth:`Engine.prepare` (``polyp_live.train.preprocess``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from polyp_live.engines.base import Engine, EngineInfo
from polyp_live.train.contract import ModelContract


class BrightSpotEngine(Engine):
    name = "fake"

    def __init__(
        self,
        size: int = 64,
        *,
        delay_s: float = 0.0,
        fail_after: int | None = None,
        max_batch: int = 4,
        preferred_batch: int = 1,
        level: float = 0.6,
    ) -> None:
        contract = ModelContract("fake", (size, size))
        super().__init__(EngineInfo("fake", "cpu", "fp32", "fake", contract, max_batch, preferred_batch))
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.level = level
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> Engine:
        return cls()

    def infer(self, batch: Any) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        with self._lock:
            self.calls += 1
            self.batch_sizes.append(batch.shape[0])
            self.threads.add(threading.current_thread().name)
            calls = self.calls
        if self.fail_after is not None and calls > self.fail_after:
            raise RuntimeError(f"fake engine failure at call {calls}")
        if self.delay_s:
            time.sleep(self.delay_s)
        bright = batch.mean(axis=1, keepdims=True) > self.level
        return np.where(bright, 8.0, -8.0).astype(np.float32)


def disc_frame(height: int, width: int, center: tuple[int, int], radius: int) -> np.ndarray:
    """Dark-red RGB frame with a near-white disc."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = (90, 30, 25)
    cv2.circle(frame, center, radius, (250, 240, 220), thickness=-1)
    return frame


def disc_center(index: int, height: int, width: int) -> tuple[int, int]:
    return (width // 4 + (index * 7) % (width // 2), height // 2)


def write_disc_video(
    path: Path, frames: int, height: int = 96, width: int = 128, fps: int = 25, *, faststart: bool = False
) -> Path:
    """A small H.264 MP4 whose frame ``i`` shows a disc at :func:`disc_center` ``(i)``; lossless (qp 0)."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = disc_frame(height, width, disc_center(i, height, width), height // 6)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def probe(path: Path) -> dict[str, Any]:
    """Frame count (decoded), rate, size and duration of a video, with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.decode(stream))
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        return {"frames": count, "rate": stream.average_rate, "width": stream.width, "height": stream.height,
                "duration": duration, "time_base": stream.time_base}


class FailingSource:
    """Wraps a source; ``read`` raises after ``fail_after`` frames (a camera or file failing mid-stream)."""

    def __init__(self, source: Any, fail_after: int) -> None:
        self.source = source
        self.fail_after = fail_after
        self.reads = 0
        self.decode_errors = 0
        self.closed = False

    @property
    def opened(self) -> bool:
        return self.source.opened

    @property
    def info(self) -> Any:
        return self.source.info

    def open(self) -> Any:
        return self.source.open()

    def read(self) -> Any:
        if self.reads >= self.fail_after:
            from polyp_live.realtime.errors import SourceError

            raise SourceError("simulated read failure")
        self.reads += 1
        return self.source.read()

    def stop(self) -> None:
        self.source.stop()

    def close(self) -> None:
        self.closed = True
        self.source.close()


def polyp_live(argv: list[str], capsys: Any) -> tuple[int, str, str]:
    """``polyp-live ARGV --no-view`` in-process: (exit code, stdout, stderr). An option value argparse refuses
    (usage + one error line) is exit code 2 here too."""
    from polyp_live.realtime import cli
    from polyp_live.train.cli_utils import run_cli

    try:
        code = run_cli(cli.main, [*argv, "--no-view"], prog="polyp-live")
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def disc_image(width: int, height: int, center: tuple[float, float] = (0.75, 0.75)) -> np.ndarray:
    """Dark-red BGR image with a bright disc at ``center`` (fractions of the size), radius 1/6 of the short side."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (25, 30, 90)
    cv2.circle(image, (int(width * center[0]), int(height * center[1])), max(1, min(width, height) // 6),
               (220, 240, 250), -1)
    return image


def ts_segment(path: Path, width: int, height: int, frames: int, start: int = 0, fps: int = 25) -> bytes:
    """An MPEG-TS segment of :func:`disc_image` frames, pts starting at ``start`` (in frames)."""
    from fractions import Fraction

    with av.open(str(path), "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(disc_image(width, height)[..., ::-1].copy(), format="rgb24")
            frame.pts, frame.time_base = start + i, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()
