"""What a video file's container says about its picture: which stream is the video, which way is up, what
shape a pixel is -- and opening a FIFO without hanging. Used by
:class:`polyp_live.realtime.sources.files.VideoFileSource`.

* **Main stream**: a container may hold several video streams, the first one often a 1-frame cover image
  (``attached_pic``) or a thumbnail track; the video is the stream with the most frames (by count, else by
  duration), cover images never.
* **Orientation**: a phone clip stores its pictures sideways and says so in a display matrix; frames are
  turned upright before the model, so masks, boxes and the MP4 are the way the clip is meant to be seen.
* **Pixel aspect**: an anamorphic clip (SAR 2:1) is processed in its stored pixels and the MP4 keeps its
  SAR, so players show it at its display aspect.
"""

from __future__ import annotations

import os
import select
import stat
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def is_cover(stream: Any) -> bool:
    """A still picture attached to the file (album art, a thumbnail), not video."""
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _length(stream: Any) -> float:
    if stream.frames:
        return float(stream.frames)
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base) * 1000.0  # any duration beats "unknown"
    return 0.0


def main_video_stream(container: Any) -> Any | None:
    """The stream that holds the video: not a cover image; the most frames (the first of equals)."""
    candidates = [s for s in container.streams.video if not is_cover(s)]
    if not candidates:
        return None
    return max(candidates, key=lambda s: (_length(s), -s.index))


def expected_frames(stream: Any, fps: float | None) -> int | None:
    """How many frames decoding should give (``None``: unknown): the stored sample count, but no more than the
    duration holds -- an MP4 edit list that plays only part of its samples (a trimmed clip) is not truncated."""
    count = int(stream.frames) if stream.frames else None
    if stream.duration and stream.time_base and fps:
        by_duration = round(float(stream.duration * stream.time_base) * fps)
        count = by_duration if count is None else min(count, max(1, by_duration))
    return count


def quarter_turns(av_frame: Any) -> int:
    """Counter-clockwise quarter turns the frame's display matrix asks for (0..3; 0 without one)."""
    try:
        degrees = int(av_frame.rotation or 0)
    except (AttributeError, ValueError):
        return 0
    return round(degrees / 90) % 4


def upright(rgb: np.ndarray, turns: int) -> np.ndarray:
    """``rgb`` turned ``turns`` quarter turns counter-clockwise (contiguous, as every stage expects)."""
    return rgb if turns == 0 else np.ascontiguousarray(np.rot90(rgb, turns))


def sample_aspect(stream: Any, turns: int = 0) -> Fraction | None:
    """The stream's pixel aspect ratio when it is not square (``None`` for square or unknown); a quarter turn
    swaps it."""
    sar = stream.sample_aspect_ratio or stream.codec_context.sample_aspect_ratio
    if not sar or sar == 1 or sar <= 0:
        return None
    sar = Fraction(sar)
    return 1 / sar if turns % 2 else sar


def open_fifo(path: Path, timeout_s: float) -> BinaryIO | None:
    """For a FIFO: its read end once a writer has sent data (``TimeoutError`` when none did within
    ``timeout_s``), for FFmpeg to read from; ``None`` for anything else. Opening a FIFO by name blocks until a
    writer appears -- forever, for one that never comes -- and a writer that already finished and closed its end
    leaves its data only to a reader that kept the pipe open: this one."""
    try:
        if not stat.S_ISFIFO(path.stat().st_mode):
            return None
    except OSError:
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # returns at once, writer or not
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(timeout_s * 1000.0):
        os.close(fd)
        raise TimeoutError(f"nothing wrote to it within {timeout_s:g} s")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")
