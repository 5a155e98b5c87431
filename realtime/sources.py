"""Where frames come from: capture devices (OpenCV V4L2), files and URLs (PyAV), image folders, a simulated camera.

Every source yields :class:`~polyp_live.realtime.types.Frame` objects with an index, the stream timestamp and the
local capture time, and never makes up a frame: a read that fails is either skipped and counted
(``decode_errors``, files) or raised (:class:`~polyp_live.realtime.errors.SourceDisconnected` for live sources, which
:class:`ReconnectingSource` turns into a reconnect with back-off). ``read()`` returns ``None`` at the end.
Verified in ``tests/test_realtime_sources.py`` (real CVC-ClinicDB clips, corrupt/truncated files, the
simulated camera); the V4L2 path needs a camera and is checked here only for its error messages.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polyp_live.realtime.errors import SourceDisconnected, SourceError
from polyp_live.realtime.timebase import StreamClock
from polyp_live.realtime.types import Frame, GapReason, SourceInfo
from polyp_live.realtime.video_streams import (
    expected_frames,
    main_video_stream,
    open_fifo,
    quarter_turns,
    sample_aspect,
    upright,
)
from polyp_live.train.media_paths import MediaLocation, UnsupportedUrl, locate

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_CONSECUTIVE_DECODE_ERRORS = 100
MAX_DEVICE_INDEX = 255  # V4L2 numbers /dev/video0 .. /dev/video255
DEFAULT_RECONNECT_S = 10.0  # --reconnect-seconds: how long a lost live source is waited for


class Source(ABC):
    """Open, read frames until ``None``, close (:class:`polyp_live.realtime.ports.Source`). Usable as a context
    manager."""

    def __init__(self) -> None:
        self.decode_errors = 0
        self._info: SourceInfo | None = None

    @property
    def opened(self) -> bool:
        return self._info is not None

    @property
    def info(self) -> SourceInfo:
        if self._info is None:
            raise SourceError(f"{type(self).__name__} is not open")
        return self._info

    @abstractmethod
    def open(self) -> SourceInfo:
        """Open the input (raises :class:`SourceError` with a one-line reason)."""

    @abstractmethod
    def read(self) -> Frame | None:
        """Next frame, or ``None`` at the end of the input."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """The run is ending (any thread): a ``read`` waiting for the input gives up soon."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the input; safe to call twice."""

    def __enter__(self) -> Source:
        if self._info is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def locate_input(spec: str | Path | MediaLocation) -> MediaLocation:
    """The input named ``spec`` (see :func:`polyp_live.train.media_paths.locate`), as a :class:`SourceError` if
    unusable."""
    if isinstance(spec, MediaLocation):
        return spec
    try:
        return locate(spec)
    except UnsupportedUrl as exc:
        raise SourceError(str(exc)) from None


class VideoFileSource(Source):
    """A video file or stream URL decoded with PyAV (timestamps from the stream, VFR kept as is).

    Packets that fail to decode are skipped and counted; more than ``MAX_CONSECUTIVE_DECODE_ERRORS``
    in a row end the input with an error.
    """

    def __init__(self, path: str | Path | MediaLocation, *, live: bool | None = None,
                 open_timeout_s: float = 10.0, options: dict[str, str] | None = None) -> None:
        super().__init__()
        self.options = dict(options or {})  # demuxer / protocol options for av.open (polyp_live.realtime.network)
        self.location = locate_input(path)
        self.path = self.location.text
        self.url = self.location.url
        self.live = self.location.live if live is None else live
        self.open_timeout_s = open_timeout_s
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[Any] | None = None
        self._index = 0
        self._clock: StreamClock | None = None
        self._pending: Any = None  # a frame decoded by open() and not read yet
        self._fifo: Any = None  # the read end of a FIFO input, open while FFmpeg reads it
        self._turns = 0  # quarter turns that make the stored pictures upright

    def open(self) -> SourceInfo:
        if self.location.path is not None:
            if not self.location.path.exists():
                raise SourceError(f"input not found: {self.path}")
            if self.location.path.is_dir():
                raise SourceError(f"input {self.path} is a folder; use ImageFolderSource for image sequences")
        self._container = self._open_container()
        stream = main_video_stream(self._container)
        if stream is None:
            self.close()
            raise SourceError(f"{self.path} holds no video stream")
        if not self.live:
            stream.thread_type = "AUTO"
        self._stream = stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 30.0
        count = expected_frames(stream, fps if rate else None)
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if width <= 0 or height <= 0:
            self.close()
            raise SourceError(f"{self.path}: video stream has no picture size (corrupt header?)")
        self._frames = self._decode()
        self._pending = self._peek()  # the first frame says which way is up (its display matrix)
        self._turns = quarter_turns(self._pending) if self._pending is not None else 0
        if self._turns % 2:
            width, height = height, width
        self._info = SourceInfo(
            description=self.path, width=width, height=height, fps=fps, live=self.live, frame_count=count,
            time_base=Fraction(stream.time_base) if stream.time_base else Fraction(1, 1000),
            rate=Fraction(rate) if rate else None, sample_aspect=sample_aspect(stream, self._turns),
        )
        if self._clock is None:  # kept across a reconnect: times go on from where the stream broke off, by the
            self._clock = StreamClock(1.0 / fps, self.path)  # real time the outage took (timebase)
        else:
            self._clock.discontinuity(GapReason.RECONNECT)
        return self._info

    def _open_container(self) -> Any:
        import av

        try:  # a FIFO is read through the end opened here, once a writer has sent data (never a hang)
            self._fifo = open_fifo(self.location.path, self.open_timeout_s) if self.location.path else None
        except TimeoutError as exc:
            raise SourceError(f"cannot open {self.path}: it is a FIFO and {exc}") from None
        try:
            target = self._fifo if self._fifo is not None else self.location.ffmpeg
            return av.open(target, options=self.options, timeout=(self.open_timeout_s, self.open_timeout_s))
        except (av.error.FFmpegError, OSError) as exc:
            self.close()
            raise SourceError(
                f"cannot open {self.path} as a video (not a video, truncated or unreachable): {exc}"
            ) from None

    def _peek(self) -> Any:
        """The first decoded frame, held for the first ``read()`` (``None`` for a stream without one)."""
        try:
            return next(self._frames) if self._frames is not None else None
        except StopIteration:
            return None
        except SourceError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise SourceError(f"cannot read {self.path}: {exc}") from None

    def _decode(self) -> Iterator[Any]:
        import av

        consecutive = 0
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:  # corrupt packet: skip it, count it, keep decoding
                self.decode_errors += 1
                consecutive += 1
                logger.debug("skipping undecodable packet at pts %s: %s", packet.pts, exc)
                if consecutive > MAX_CONSECUTIVE_DECODE_ERRORS:
                    raise SourceError(f"{self.path}: {consecutive} packets in a row failed to decode") from None
                continue
            consecutive = 0
            yield from frames

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError("VideoFileSource.read() before open()")
        start = time.monotonic()
        try:
            av_frame = self._pending if self._pending is not None else next(self._frames)
            self._pending = None
        except StopIteration:
            return None
        except OSError as exc:  # network error mid-stream
            if self.live:
                raise SourceDisconnected(f"{self.path}: stream interrupted: {exc}") from None
            raise SourceError(f"{self.path}: read failed after {self._index} frames: {exc}") from None
        rgb = upright(av_frame.to_ndarray(format="rgb24"), self._turns)
        now = time.monotonic()
        if av_frame.pts is not None and av_frame.time_base is not None:
            stream_s = float(av_frame.pts * av_frame.time_base)
        else:
            stream_s = self._index / self.info.fps
        ts, gap = self._clock.place(stream_s, now if self.live else None)  # live: the arrival time counts too
        frame = Frame(index=self._index, rgb=rgb, source_ts=ts, capture_time=now, capture_s=now - start, gap=gap)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        self._frames = None
        self._pending = None
        if self._fifo is not None:
            self._fifo.close()
            self._fifo = None


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders numbers by value: ``1.png, 2.png, 10.png`` (not ``1, 10, 2``)."""
    parts = re.split(r"(\d+)", name)
    return (*((int(p) if i % 2 else p.lower()) for i, p in enumerate(parts)), name)


def jpeg_is_truncated(path: Path) -> bool:
    """A JPEG without its end-of-image marker: the decoder would fill the missing rows with grey."""
    if path.suffix.lower() not in (".jpg", ".jpeg"):
        return False
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 64))
        return not handle.read().rstrip(b"\x00").endswith(b"\xff\xd9")


class ImageFolderSource(Source):
    """Image files in a folder in natural order (``2`` before ``10``), played as frames at ``fps``, each at its
    own size; unreadable or truncated files are skipped with a warning and counted, never filled in."""

    def __init__(self, folder: str | Path, fps: float = 25.0) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.fps = float(fps)
        self._files: list[Path] = []
        self._position = 0
        self._index = 0

    def open(self) -> SourceInfo:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        if not math.isfinite(self.fps) or self.fps <= 0:
            raise SourceError(f"--fps must be a positive, finite rate for an image folder, got {self.fps}")
        self._files = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                             key=lambda p: natural_key(p.name))
        if not self._files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        first = None
        for path in self._files:
            first = self._load(path, quiet=True)
            if first is not None:
                break
        if first is None:
            raise SourceError(f"none of the {len(self._files)} images in {self.folder} can be read")
        self._info = SourceInfo(
            description=str(self.folder), width=first.shape[1], height=first.shape[0], fps=self.fps, live=False,
            frame_count=len(self._files), time_base=Fraction(1, 1000), rate=Fraction(self.fps).limit_denominator(1001),
        )
        return self._info

    @staticmethod
    def _load(path: Path, *, quiet: bool = False) -> np.ndarray | None:
        """BGR pixels of ``path`` at its own size, or ``None`` (logged) when it cannot be read whole."""
        try:
            truncated = jpeg_is_truncated(path)
        except OSError as exc:
            truncated, why = True, exc.strerror
        else:
            why = "truncated JPEG (no end-of-image marker)"
        bgr = None if truncated else cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None and not quiet:
            logger.warning("skipping %s: %s", path, why if truncated else "not a readable image")
        return bgr

    def read(self) -> Frame | None:
        while self._position < len(self._files):
            start = time.monotonic()
            path = self._files[self._position]
            self._position += 1
            bgr = self._load(path)
            if bgr is None:
                self.decode_errors += 1
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            now = time.monotonic()
            frame = Frame(self._index, rgb, self._index / self.fps, now, now - start)
            self._index += 1
            return frame
        return None


class CaptureDeviceSource(Source):
    """A V4L2 capture device through OpenCV (MJPG when offered, 1-frame driver buffer).

    The pipeline's capture thread is the reader thread: it reads continuously and keeps only the
    newest frame (a latest-wins queue), so frames never pile up in the driver or in the pipeline.
    A failed read raises :class:`SourceDisconnected`; wrap in :class:`ReconnectingSource` to reconnect.
    """

    def __init__(self, device: str | int, resolution: tuple[int, int] | None = None, fps: float | None = None) -> None:
        super().__init__()
        self.device = device
        self.resolution = resolution
        self.fps = fps
        self._cap: Any = None
        self._index = 0
        self._t0: float | None = None

    def _check_node(self) -> None:
        if isinstance(self.device, int):
            return
        node = Path(self.device)
        if not node.exists():
            raise SourceError(f"capture device {node} not found (connected? list them with: ls /dev/video*)")
        if not os.access(node, os.R_OK | os.W_OK):
            raise SourceError(f"no permission to open {node}; add your user to the 'video' group and log in again")

    def open(self) -> SourceInfo:
        self._check_node()
        try:
            cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        except (cv2.error, OverflowError, TypeError) as exc:
            raise SourceError(f"cannot open capture device {self.device}: {exc}") from None
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open capture device {self.device} (in use by another program, or not a camera)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if self.resolution:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, probe = cap.read()
        if not ok or probe is None:
            cap.release()
            raise SourceError(f"capture device {self.device} opened but gives no frames (busy or unsupported format)")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS) or self.fps or 30.0
        self._info = SourceInfo(
            description=str(self.device), width=probe.shape[1], height=probe.shape[0], fps=float(fps), live=True,
            time_base=Fraction(1, 1000), rate=Fraction(float(fps)).limit_denominator(1001),
        )
        if self._t0 is None:
            self._t0 = time.monotonic()
        return self._info

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceDisconnected(f"capture device {self.device} is closed")
        start = time.monotonic()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise SourceDisconnected(f"capture device {self.device} stopped delivering frames")
        now = time.monotonic()
        frame = Frame(self._index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now - (self._t0 or now), now, now - start)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ReconnectingSource(Source):
    """Wraps a live source: on :class:`SourceDisconnected` reopen with exponential back-off, one log line per
    attempt; gives up with one :class:`SourceError` line (what was lost, when, how long it tried, what to check)
    after ``max_wait_s`` seconds without a frame (0: at once). Reopens the same source object, so its clock and
    counters carry on."""

    def __init__(self, source: Source, *, max_wait_s: float = DEFAULT_RECONNECT_S, first_delay_s: float = 0.05,
                 max_delay_s: float = 1.0) -> None:
        super().__init__()
        self.source, self.max_wait_s = source, max_wait_s
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self._stopping = threading.Event()  # set by stop(): give up waiting at once
        self.reconnects = 0
        self.frames = 0  # handed out, for the give-up message
        self._last_ts: float | None = None

    @property
    def decode_errors(self) -> int:  # type: ignore[override]
        return self.source.decode_errors

    @decode_errors.setter
    def decode_errors(self, value: int) -> None:
        pass

    def open(self) -> SourceInfo:
        self._stopping.clear()
        self._info = self.source.open()
        return self._info

    def stop(self) -> None:
        self._stopping.set()
        self.source.stop()

    def read(self) -> Frame | None:
        while True:
            try:
                frame = self.source.read()
            except SourceDisconnected as exc:
                logger.warning("%s; reconnecting for up to %g s", exc, self.max_wait_s)
                self._reconnect()
                continue
            if frame is not None:
                self.frames += 1
                self._last_ts = frame.source_ts
            return frame

    def _reconnect(self) -> None:
        self.source.close()
        lost = time.monotonic()
        deadline = lost + self.max_wait_s
        delay, attempt = self.first_delay_s, 0
        while time.monotonic() < deadline and not self._stopping.is_set():
            attempt += 1
            logger.warning("%s: reconnect attempt %d, %.1f s after the loss", self.info.description, attempt,
                           time.monotonic() - lost)
            try:
                self.source.open()
                self.reconnects += 1
                logger.warning("%s reconnected after %.1f s (attempt %d)", self.info.description,
                               time.monotonic() - lost, attempt)
                return
            except SourceError as exc:
                logger.debug("attempt %d failed: %s", attempt, exc)
            self._stopping.wait(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2.0, self.max_delay_s)
        if self._stopping.is_set():
            raise SourceDisconnected(f"{self.info.description}: stopped while reconnecting")
        raise SourceError(self._gave_up(attempt, time.monotonic() - lost))

    def _gave_up(self, attempts: int, tried_s: float) -> str:
        at = f" at {self._last_ts:.1f} s of stream" if self._last_ts is not None else ""
        hint = getattr(self.source, "reconnect_hint", "check the cable and that the device is on (ls /dev/video*)")
        tries = (f"and did not come back within {self.max_wait_s:g} s ({attempts} reconnect attempt"
                 f"{'s' if attempts != 1 else ''} over {tried_s:.1f} s)" if attempts
                 else "(--reconnect-seconds 0: no reconnect)")
        return f"lost {self.info.description} after {self.frames} frames{at} {tries}; {hint}"

    def close(self) -> None:
        self.source.close()


def device_node(spec: str) -> str | int:
    """``--device``: a device node path or an index 0..MAX_DEVICE_INDEX (one-line :class:`SourceError` else)."""
    text = spec.strip()
    if not text:
        raise SourceError("--device needs a capture device, e.g. /dev/video0 or 0 (list them with: ls /dev/video*)")
    if text.isdigit():
        if int(text) > MAX_DEVICE_INDEX:
            raise SourceError(f"capture device index {text} is out of range 0..{MAX_DEVICE_INDEX} "
                              "(list the devices with: ls /dev/video*)")
        return int(text)
    return spec


def open_source(
    spec: str, *, fps: float | None = None, resolution: tuple[int, int] | None = None, device: bool = False,
    live: bool | None = None, reconnect_s: float = DEFAULT_RECONNECT_S, rtsp_transport: str | None = None,
) -> Source:
    """A source for a CLI argument: a capture device, a URL, an image folder or a video file (not yet opened).

    ``live`` forces the mode (``--live`` / ``--no-live``; ``None``: the input's default); devices are live
    and network streams (:mod:`polyp_live.realtime.network`) reconnect for up to ``reconnect_s`` seconds."""
    if device:
        return ReconnectingSource(CaptureDeviceSource(device_node(spec), resolution, fps), max_wait_s=reconnect_s)
    location = locate_input(spec)
    if location.url:
        from polyp_live.realtime.network import NetworkSource

        network = NetworkSource(location, live=live, **({"rtsp_transport": rtsp_transport} if rtsp_transport else {}))
        return ReconnectingSource(network, max_wait_s=reconnect_s)
    if location.path is not None and location.path.is_dir():
        return ImageFolderSource(location.text, fps or 25.0)
    return VideoFileSource(location, live=live)
