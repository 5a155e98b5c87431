"""Files and URLs decoded with PyAV, and image folders played at a frame rate.

Verified on real CVC-ClinicDB clips and corrupt/truncated files (``tests/test_odd_inputs.py``,
``tests/test_faults.py``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polyp_live.realtime.errors import SourceDisconnected, SourceError
from polyp_live.realtime.sources.base import Source, locate_input
from polyp_live.realtime.sources.video_streams import (
    expected_frames,
    main_video_stream,
    open_fifo,
    quarter_turns,
    sample_aspect,
    upright,
)
from polyp_live.realtime.timebase import StreamClock
from polyp_live.realtime.types import Frame, GapReason, SourceInfo
from polyp_live.train.media_paths import MediaLocation
from polyp_live.train.yuv import Yuv420

logger = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MAX_CONSECUTIVE_DECODE_ERRORS = 100


class VideoFileSource(Source):
    """A video file or stream URL decoded with PyAV (timestamps from the stream, VFR kept as is).

    Packets that fail to decode are skipped and counted; more than ``MAX_CONSECUTIVE_DECODE_ERRORS``
    in a row end the input with an error.
    """

    def __init__(self, path: str | Path | MediaLocation, *, live: bool | None = None,
                 open_timeout_s: float = 10.0, options: dict[str, str] | None = None, yuv: bool = False) -> None:
        super().__init__()
        # demuxer / protocol options for av.open (polyp_live.realtime.sources.network)
        self.options = dict(options or {})
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
        # hand out the decoder's 4:2:0 planes (polyp_live.train.yuv.Yuv420), not RGB: file mode without a viewer,
        # where the model's input, the overlay and the encoder all work on planes; live streams (the HUD is drawn
        # in RGB) and pictures that are rotated, anamorphic or of odd size still come as RGB
        self.yuv = yuv and not self.live

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
        image = self._picture(av_frame)
        now = time.monotonic()
        if av_frame.pts is not None and av_frame.time_base is not None:
            stream_s = float(av_frame.pts * av_frame.time_base)
        else:
            stream_s = self._index / self.info.fps
        ts, gap = self._clock.place(stream_s, now if self.live else None)  # live: the arrival time counts too
        frame = Frame(index=self._index, image=image, source_ts=ts, capture_time=now, capture_s=now - start,
                      gap=gap)
        self._index += 1
        return frame

    def _picture(self, av_frame: Any) -> np.ndarray | Yuv420:
        if (self.yuv and not self._turns and not av_frame.width % 2 and not av_frame.height % 2
                and self.info.sample_aspect is None):
            return Yuv420(av_frame.to_ndarray(format="yuv420p"))
        return upright(av_frame.to_ndarray(format="rgb24"), self._turns)

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
