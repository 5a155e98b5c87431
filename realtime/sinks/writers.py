"""Where results go: H.264 MP4 (PyAV), JSON Lines, mask PNGs, and a recorder the viewer toggles.

Sinks are called from the pipeline's output thread only (``write`` per result, ``close`` once at the
end, even after an error or Ctrl+C), so they need no locks of their own except where another thread
(the viewer) talks to them: :class:`ToggleRecorder`.
Verified in ``tests/test_realtime_file.py`` (frame count, rate, size and duration probed with PyAV).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from polyp_live.realtime.errors import OutputError
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.sinks.geometry import even_size, place
from polyp_live.realtime.sinks.output_paths import check_output_path, check_video_suffix, mask_name, segment_path
from polyp_live.realtime.sinks.recording import (
    FRAGMENTED_OPTIONS,
    KEYFRAME_INTERVAL_S,
    BackgroundFinalizer,
    finalize,
    keyframe_interval_frames,
)
from polyp_live.realtime.types import Gap, Result, SourceInfo
from polyp_live.train.media_paths import ffmpeg_local
from polyp_live.train.yuv import Yuv420

logger = logging.getLogger(__name__)

# files: ultrafast at CRF 20 matches veryfast at CRF 23 in quality (Y-PSNR +0.9 dB at 1440x1080, +1.4 dB at
# 1920x1080) at half the encode time and twice the bit rate (~7.5-8.4 Mbit/s at 1080p): on 2 cores the encoder's
# time is the pipeline's (benchmarks/results/bench_encoder-cpu-2core.md)
DEFAULT_PRESET = "ultrafast"
LIVE_PRESET = "ultrafast"  # live recording: ~2.5x cheaper than veryfast, keeps up with 1080p30 on 2 cores
DEFAULT_CRF = 20
GAP_EVENT = "gap"  # the "event" of a JSON Lines gap record


class VideoWriterSink(SinkBase):
    """Annotated frames -> H.264 (libx264, yuv420p) MP4, crash-safe while written, ``+faststart`` once closed.

    Written as a fragmented MP4 (a fragment per keyframe, a keyframe at least every second of output time),
    so a SIGKILL or power cut loses at most the last fragment; :meth:`close` finalizes it into a regular
    ``+faststart`` MP4, playable in browsers (:mod:`polyp_live.realtime.sinks.recording`; ``finalize=False`` keeps the
    fragments). Frame rate and time base are the source's; each frame's pts is its source timestamp (relative to the
    first written frame), so variable frame rates and durations are kept. The size is the source's, odd sides
    padded to even with black (one warning says so); a frame of another size is scaled to fit, never cropped
    (:mod:`polyp_live.realtime.sinks.geometry`).
    """

    name = "video"

    def __init__(self, path: str | Path, info: SourceInfo, *, preset: str = DEFAULT_PRESET,
                 crf: int = DEFAULT_CRF, finalize: bool = True, warn_padding: bool = True,
                 finalizer: BackgroundFinalizer | None = None) -> None:
        import av

        self.path = Path(path)
        self.width, self.height = even_size(info.width, info.height)
        self.source_size = (info.width, info.height)
        if (self.width, self.height) != self.source_size and warn_padding:
            logger.warning("%s: the input is %dx%d but H.264 needs even sides: each frame is padded with a black "
                           "%s to %dx%d (nothing cropped or scaled)", self.path, info.width, info.height,
                           _padding(self.source_size, (self.width, self.height)), self.width, self.height)
        self.finalize = finalize
        self.finalized = False  # close() rewrote it as a regular +faststart MP4 (itself, not through a finalizer)
        self._finalizer = finalizer  # given: close() hands the file to its thread instead
        self._next_key_ts = 0.0  # output time of the next forced keyframe
        self.resized = 0  # frames of another size than the source's, scaled to fit
        self.time_base = info.time_base if info.time_base else Fraction(1, 1000)
        rate = info.rate or Fraction(info.fps).limit_denominator(1001)
        self.frames = 0
        self._first_ts: float | None = None
        self._last_pts = -1
        self._failed = False
        check_video_suffix(self.path)
        try:
            # a local file, never an FFmpeg protocol ('file:x.mp4' is that file); no suffix (e.g. /dev/full,
            # a FIFO): MP4, as --output documents
            self._container: Any = av.open(ffmpeg_local(self.path), "w", format="mp4",
                                           options=dict(FRAGMENTED_OPTIONS))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"cannot write {self.path}: {exc}") from None
        # No B-frames: frames leave the encoder at once (live recording), and timestamps stay monotonic in
        # decode order, so MP4 durations are exact; the last frame lasts one nominal frame period.
        # A keyframe every KEYFRAME_INTERVAL_S at the nominal rate (and forced by time in write(), for dropped
        # or variable-rate frames): each starts a fragment, what a crash can lose.
        options = {"preset": preset, "crf": str(crf), "bf": "0", "g": str(keyframe_interval_frames(float(rate)))}
        stream = self._container.add_stream("libx264", rate=rate, options=options)
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = "yuv420p"
        if info.sample_aspect:  # anamorphic source: players show the MP4 at the source's display aspect
            stream.codec_context.sample_aspect_ratio = info.sample_aspect
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base  # else the encoder rounds pts to 1/rate (breaks VFR)
        self._stream = stream
        try:  # the header (an empty index) now, not at the first packet: a file that plays from the start
            self._container.start_encoding()
        except (av.error.FFmpegError, OSError) as exc:
            self._container.close()
            raise OutputError(f"cannot write {self.path}: {exc}") from None

    def write(self, result: Result) -> None:
        import av

        image = result.annotated
        if (image.shape[1], image.shape[0]) != self.source_size:
            if not self.resized:
                logger.warning("frame %d is %dx%d but %s is %dx%d: such frames are scaled to fit (aspect kept, "
                               "black bars); masks and JSONL boxes stay in each frame's own pixels", result.index,
                               image.shape[1], image.shape[0], self.path, *self.source_size)
            self.resized += 1
        if isinstance(image, Yuv420) and image.shape == (self.height, self.width):
            # the decoder's planes, drawn on in place: straight to the encoder, no round trip through RGB
            frame = av.VideoFrame.from_ndarray(image.data, format="yuv420p")
        else:
            placed = place(result.annotated_rgb, self.width, self.height)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(placed), format="rgb24")
        if self._first_ts is None:
            self._first_ts = result.frame.source_ts
        pts = round((result.frame.source_ts - self._first_ts) / self.time_base)
        pts = max(pts, self._last_pts + 1)  # strictly increasing even for repeated timestamps
        self._last_pts = pts
        frame.pts, frame.time_base = pts, self.time_base
        if pts * self.time_base >= self._next_key_ts:
            frame.pict_type = av.video.frame.PictureType.I  # libx264 makes it an IDR frame: a new fragment
            self._next_key_ts = float(pts * self.time_base) + KEYFRAME_INTERVAL_S
        if self._failed:
            return
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:  # disk full, I/O error: muxing again would crash FFmpeg
            self._failed = True
            raise OutputError(f"cannot write {self.path}: {exc}") from None
        self.frames += 1

    @property
    def recorded(self) -> int:
        """Frames written to the MP4 (the summary's "recorded", :func:`polyp_live.realtime.ports.sink_recorded`)."""
        return self.frames

    def close(self) -> None:
        if self._container is None:
            return
        try:
            if not self._failed:  # after a failed write, flushing segfaults in FFmpeg: just close
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
        if self.finalize and not self._failed and self.frames:
            if self._finalizer is not None:
                self._finalizer.submit(self.path)
            else:
                self.finalized = finalize(self.path)
        logger.debug("wrote %d frames to %s (%s)", self.frames, self.path,
                     "regular MP4" if self.finalized else "fragmented MP4")


class SegmentedVideoSink(SinkBase):
    """``--segment-minutes``: the annotated video as one MP4 per ``seconds`` of output time, ``rec_000.mp4``,
    ``rec_001.mp4``, ... (:func:`polyp_live.realtime.sinks.output_paths.segment_path`).

    A frame whose time (since the first frame) reaches the next multiple of ``seconds`` opens the next
    segment: each starts with a keyframe at its own t=0 and plays on its own; every frame goes to exactly
    one segment (none lost or repeated at a cut). Each segment is a :class:`VideoWriterSink` (crash-safe);
    a closed one is finalized in a background thread, so a cut does not stall the output (live video).
    """

    name = "video"

    def __init__(self, path: str | Path, info: SourceInfo, seconds: float, *, preset: str = DEFAULT_PRESET,
                 crf: int = DEFAULT_CRF) -> None:
        if not seconds > 0:
            raise ValueError(f"segment length must be positive, got {seconds!r}")
        check_video_suffix(path)
        self.base = Path(path)
        self.info = info
        self.seconds = float(seconds)
        self.preset, self.crf = preset, crf
        self.files: list[Path] = []  # every segment opened, in order
        self.frames = 0
        self._writer: VideoWriterSink | None = None
        self._first_ts: float | None = None
        self._period = 0  # of the open segment: floor(time since the first frame / seconds)
        self._finalizer = BackgroundFinalizer()

    @property
    def path(self) -> Path | None:  # type: ignore[override]
        """The segment being written (the last one once closed)."""
        return self.files[-1] if self.files else None

    @property
    def recorded(self) -> int:
        """Frames written to all segments together (the summary's "recorded")."""
        return self.frames

    def write(self, result: Result) -> None:
        ts = result.frame.source_ts
        if self._first_ts is None:
            self._first_ts = ts
        period = max(0, int((ts - self._first_ts) // self.seconds))  # a gap spanning periods: one cut, no empties
        if self._writer is None or period > self._period:
            self._period = period
            self._next_segment()
        if self._writer is not None:
            self._writer.write(result)
            self.frames += 1

    def _next_segment(self) -> None:
        """Close the current segment (finalizing it) and open the next, numbered on from the last."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        target = segment_path(self.base, len(self.files))
        self._writer = VideoWriterSink(target, self.info, preset=self.preset, crf=self.crf,
                                       warn_padding=not self.files, finalizer=self._finalizer)
        self.files.append(target)
        logger.info("recording segment %s", target)

    def close(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        finally:
            self._finalizer.close()  # every segment finalized before the run's summary names them


def _padding(size: tuple[int, int], even: tuple[int, int]) -> str:
    """What :func:`even_size` added: ``column``, ``row`` or ``column and row`` (right / bottom)."""
    added = [what for what, a, b in (("column on the right", size[0], even[0]), ("row at the bottom", size[1], even[1]))
             if a != b]
    return " and a ".join(added)


def result_record(result: Result) -> dict[str, Any]:
    """One JSON Lines record: index, time, frame size, polyp present (the product's decision: a reported region),
    the POLYP alarm (``alarm``), regions (boxes in this frame's pixels, their ``track`` and whether it is a
    confirmed polyp), the field of view the model saw (``fov``, ``[x0, y0, x1, y1]``; absent
    when it was the whole frame), per-stage timings (ms)."""
    fov = result.prediction.fov if result.prediction is not None else None
    return {
        "index": result.index,
        "time": round(result.frame.source_ts, 6),
        "size": [result.frame.width, result.frame.height],
        "polyp": result.polyp_present,
        **({"alarm": result.prediction.alarm} if result.prediction is not None and result.prediction.alarm is not None
           else {}),
        "regions": [region.to_dict() for region in result.regions],
        **({"fov": fov.to_list()} if fov is not None else {}),
        "mask_index": result.mask_index,
        "timings_ms": {k: v for k, v in result.times.as_ms().items() if k != "output"},  # output: still running
    }


def gap_record(gap: Gap) -> dict[str, Any]:
    """The JSON Lines event before the first frame after a gap: ``{"event": "gap", "time", "gap_s", "reason",
    "stream_jump_s"}``. Frame records have no ``event`` key; readers that want frames skip lines that have one."""
    return {"event": GAP_EVENT, **gap.to_dict()}


class JsonlSink(SinkBase):
    """One JSON object per line and frame; each line goes out in one ``write`` call, unbuffered,
    so a crash or kill never leaves a partial last line; a line cut short by a full disk is cut off again.
    A gap in the input (:mod:`polyp_live.realtime.timebase`) is an event line (:func:`gap_record`) just before the
    frame after it, written in the same call."""

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self.records = 0  # frame records
        self.events = 0  # event records (gaps)
        self._size = 0  # bytes of whole lines written

    def write(self, result: Result) -> None:
        if self._fd is None:
            return
        records = [*(gap_record(gap) for gap in result.gaps), result_record(result)]
        line = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()
        try:
            written = os.write(self._fd, line)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        if written != len(line):  # disk full mid-line: drop the partial line so every line stays whole
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                logger.warning("%s: could not remove a partial last line", self.path)
            raise OutputError(f"cannot write {self.path}: disk full (wrote {self.records + self.events} whole lines)")
        self._size += written
        self.records += 1
        self.events += len(result.gaps)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class MaskPngSink(SinkBase):
    """The binary mask of each shown frame as ``DIR/frame_000123.png`` (0 / 255, frame size)."""

    name = "masks"

    def __init__(self, folder: str | Path) -> None:
        self.path = check_output_path(folder, folder=True)
        self.written = 0

    def write(self, result: Result) -> None:
        mask = result.mask
        if mask is None or mask.shape != (result.frame.height, result.frame.width):
            mask = np.zeros((result.frame.height, result.frame.width), dtype=np.uint8)
        target = self.path / mask_name(result.index)
        if not cv2.imwrite(str(target), mask * np.uint8(255)):
            raise OutputError(f"cannot write {target}")
        self.written += 1

    def close(self) -> None:
        pass


class ToggleRecorder(SinkBase):
    """A recorder the viewer switches on and off while the pipeline runs (writer opened in the output thread;
    a stopped recording is finalized in a background thread, so stopping it never stalls the live video)."""

    name = "recorder"

    def __init__(self, info: SourceInfo, preset: str = LIVE_PRESET) -> None:
        self.info = info
        self.preset = preset
        self._lock = threading.Lock()
        self._wanted: Path | None = None
        self._writer: VideoWriterSink | None = None
        self._finalizer = BackgroundFinalizer()
        self.finished: list[Path] = []

    def start(self, path: str | Path) -> None:
        with self._lock:
            self._wanted = Path(path)

    def stop(self) -> None:
        with self._lock:
            self._wanted = None

    @property
    def recording(self) -> bool:
        with self._lock:
            return self._wanted is not None

    def write(self, result: Result) -> None:
        with self._lock:
            wanted = self._wanted
        if self._writer is not None and (wanted is None or wanted != self._writer.path):
            self._finish()
        if wanted is not None and self._writer is None:
            self._writer = VideoWriterSink(wanted, self.info, preset=self.preset, finalizer=self._finalizer)
        if self._writer is not None:
            self._writer.write(result)

    def _finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self.finished.append(self._writer.path)
            logger.info("recording saved: %s", self._writer.path)
            self._writer = None

    def close(self) -> None:
        try:
            self._finish()
        finally:
            self._finalizer.close()
