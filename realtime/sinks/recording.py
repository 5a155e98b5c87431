"""How the annotated MP4 survives a crash: fragmented while it is written, a regular MP4 once it is closed.

While a run writes, :class:`polyp_live.realtime.sinks.writers.VideoWriterSink` muxes a *fragmented* MP4 (``movflags
frag_keyframe+empty_moov+default_base_moof``, FFmpeg's I/O flushed after every packet): the file starts with
an empty index, and each keyframe -- forced at least every :data:`KEYFRAME_INTERVAL_S` of output time --
starts a new self-contained fragment (``moof`` + ``mdat``) that reaches the disk as soon as it is complete.
After SIGKILL, a power cut or a full disk every complete fragment decodes: at most one fragment (~1 s, plus
the frames still inside the encoder) is lost. Verified in ``tests/test_recording.py`` (SIGKILL at a random
moment of a file run and of a live run) and the SIGKILL row of ``tests/test_faults.py``.

On a clean close (end of input, ``--max-frames``, Ctrl+C / SIGTERM, an error in another stage) the file is
*finalized*: its packets are copied, not re-encoded, into a regular ``+faststart`` MP4 beside it (index first,
every sample listed, so browsers start at once, seek, and probes see the frame count and duration), which then
replaces it with :func:`os.replace` -- at every moment the path holds one whole playable file. If finalizing
fails (disk full, ...) the fragmented file is kept, still playable (Chrome, Firefox, VLC, FFmpeg play
fragmented MP4), and one warning says so. Why finalize rather than keep the fragments: a fragmented MP4
without the index lists no frame count or duration, some players cannot seek in it, and the copy is cheap --
measured here (2 busy cores, warm page cache) at 0.74 s for 10 minutes of 1080p25 H.264 (15,000 packets,
286 MB) -- but up to 14.5 s when the disk is busy (``benchmarks/bench_finalize.py``, beside other jobs).
So where a recording ends while the run goes on (a ``--segment-minutes`` cut, the viewer's record toggle) it
is finalized in a :class:`BackgroundFinalizer` thread, never in the output thread, which would stall live video.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from polyp_live.realtime.types import THREAD_PREFIX

logger = logging.getLogger(__name__)

KEYFRAME_INTERVAL_S = 1.0  # a keyframe (so a fragment) at least this often in output time: what a crash can lose
FRAGMENTED_OPTIONS = {
    "movflags": "+frag_keyframe+empty_moov+default_base_moof",
    "flush_packets": "1",  # each fragment goes to the file at once, not into FFmpeg's 32 KiB I/O buffer
}
FINAL_OPTIONS = {"movflags": "+faststart"}
FINALIZING_SUFFIX = ".finalizing.mp4"  # the temporary regular MP4 beside the recording


def audio_streams(path: Path) -> int:
    """Audio streams in the local media file ``path`` (0 when it cannot be probed: the source says why)."""
    import av

    from polyp_live.train.media_paths import ffmpeg_local

    try:
        with av.open(ffmpeg_local(path)) as container:
            return len(container.streams.audio)
    except (av.error.FFmpegError, OSError, ValueError):
        return 0


def audio_warning(path: Path) -> str | None:
    """The one line that says the annotated MP4 leaves out ``path``'s audio, or ``None`` when it has none."""
    count = audio_streams(path)
    if not count:
        return None
    return (f"{path} has {count} audio stream(s); the annotated MP4 is video only (the audio is not carried over: "
            "take it from the input)")


def keyframe_interval_frames(fps: float) -> int:
    """x264's GOP length for a source at ``fps``: one keyframe per :data:`KEYFRAME_INTERVAL_S`."""
    return max(1, round(fps * KEYFRAME_INTERVAL_S))


def finalizing_path(path: Path) -> Path:
    """Where :func:`finalize` writes the regular MP4 before it replaces ``path`` (same folder, same disk)."""
    return path.with_name(f".{path.name}{FINALIZING_SUFFIX}")


def finalize(path: Path) -> bool:
    """Rewrite the fragmented MP4 ``path`` as a regular ``+faststart`` MP4 (packet copy) in place.

    ``True`` when done; ``False`` (one warning, the fragmented file kept as it is) when it could not be done.
    Only regular files are finalized (``/dev/full``, a FIFO: nothing to rewrite).
    """
    if not path.is_file():
        return False
    temp = finalizing_path(path)
    try:
        _copy_packets(path, temp)
        os.replace(temp, path)
    except (OSError, ValueError, _av_error()) as exc:
        logger.warning("%s: kept as a fragmented MP4 (plays in browsers, VLC and FFmpeg; some players cannot "
                       "seek in it): finalizing it into a regular MP4 failed: %s", path, exc)
        temp.unlink(missing_ok=True)
        return False
    return True


def _av_error() -> type[Exception]:
    import av

    return av.error.FFmpegError


def _copy_packets(src: Path, dst: Path) -> None:
    """Every packet of ``src``'s streams into ``dst`` unchanged (no decode, no encode), index first."""
    import av

    from polyp_live.train.media_paths import ffmpeg_local

    with av.open(ffmpeg_local(src)) as inp, \
            av.open(ffmpeg_local(dst), "w", format="mp4", options=dict(FINAL_OPTIONS)) as out:
        streams: dict[int, Any] = {}
        for stream in inp.streams:
            if stream.type in ("video", "audio"):
                streams[stream.index] = out.add_stream_from_template(stream)
        for packet in inp.demux(*[inp.streams[i] for i in streams]):
            if packet.dts is None:  # the demuxer's end-of-stream marker
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


FINALIZER_THREAD = THREAD_PREFIX + "finalize"  # a pipeline thread: tests see that it is gone after a run
FINALIZE_JOIN_S = 120.0  # close() waits this long for the files still queued (a long recording on a busy disk)


class BackgroundFinalizer:
    """Finalizes closed recordings one after another in a worker thread, so that the thread that closed them
    (the pipeline's output thread) goes on at once. :meth:`close` waits for every file handed over."""

    def __init__(self, join_timeout_s: float = FINALIZE_JOIN_S) -> None:
        self.join_timeout_s = join_timeout_s
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finalized: list[Path] = []  # in the order they were done

    def submit(self, path: Path) -> None:
        """Finalize ``path`` (a closed fragmented MP4) soon, in the worker thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=FINALIZER_THREAD, daemon=True)
            self._thread.start()
        self._queue.put(path)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                path = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if path is None:
                return
            if finalize(path):
                self.finalized.append(path)

    def close(self) -> None:
        """Finalize what is queued, then stop; after ``join_timeout_s`` give up (the files stay fragmented)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(self.join_timeout_s)
        if self._thread.is_alive():
            logger.warning("finalizing recordings took over %.0f s; those not done stay fragmented MP4s (playable)",
                           self.join_timeout_s)
        self._stop.set()
        self._thread = None
