"""Network streams as live sources: low-latency open options, the stale-frame policy, the start-up delay.

A procedure room sends video as MPEG-TS over UDP/RTP, RTSP, SRT or HTTP. :class:`NetworkSource` opens such a URL
with :class:`polyp_live.realtime.sources.files.VideoFileSource` and the demuxer options of :func:`demuxer_options` (a
small probe, no input buffering, low-delay decoding, a read timeout of :data:`NETWORK_TIMEOUT_S` so that a stall is
noticed in about 2 s) and decides the mode: the scheme's default (:data:`polyp_live.train.media_paths.SCHEME_LIVE`;
``http(s)://`` is live when the opened stream has no duration) unless ``--live`` / ``--no-live`` forces it.

In live mode no frame older than the live policy allows is handed out (:class:`LiveEdgePolicy`): at start-up and
after a reconnect the frames FFmpeg buffered come out of the decoder at once, far faster than their timestamps
advance; they are dropped and counted (``stale_dropped``) until a read has to wait for the sender -- the live edge.
In steady state a frame whose lateness (arrival minus stream time) exceeds the lowest lateness seen since the
last (re)start by more than :data:`LIVE_ALLOWANCE_PERIODS` frame periods, and that was already waiting when it
was asked for, is dropped and counted too (a burst after a stall). ``startup_s`` is the time from the first
``open()`` call to the first fresh frame handed out. Losing the stream (no data for the timeout, the HTTP
connection closed) raises :class:`~polyp_live.realtime.errors.SourceDisconnected` -- never an end of input and never a
raw FFmpeg errno -- which :class:`polyp_live.realtime.sources.reconnect.ReconnectingSource` turns into reconnect
attempts.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import replace
from enum import Enum
from functools import cache

from polyp_live.realtime.errors import SourceDisconnected, SourceError, SourceUnavailable
from polyp_live.realtime.sources.base import Source, locate_input
from polyp_live.realtime.sources.files import VideoFileSource
from polyp_live.realtime.timebase import held_back, merge_gaps
from polyp_live.realtime.types import Frame, Gap, SourceInfo
from polyp_live.train.media_paths import LiveDefault, MediaLocation

logger = logging.getLogger(__name__)

NETWORK_TIMEOUT_S = 2.0  # no data for this long: the stream is lost (open and read)
LIVE_ALLOWANCE_PERIODS = 2.0  # a frame later than the live edge by more than this many frame periods is stale
WAITED_FRACTION = 0.5  # a read that blocked for this fraction of a frame period waited for the sender
EDGE_TOLERANCE_PERIODS = 0.25  # at the live edge the lateness falls by less than this from frame to frame
STARTUP_MAX_S = 3.0  # reads never reach the edge for this long after a (re)start: faster than real time
# The probe ends as soon as the video's parameters are known (its first SPS / keyframe); these limits only bound
# a stream whose keyframes are far apart: 32 KB / 0.5 s missed the picture size of a 0.5 s GOP now and then.
PROBE_SIZE = "1000000"  # bytes the demuxer may read to find the streams (FFmpeg's default is 5 MB)
ANALYZE_US = "2000000"  # microseconds of stream it may analyse for them (default 5 s)
UDP_BUFFER_BYTES = "4194304"  # socket receive buffer: a keyframe burst must not overflow it
UDP_FIFO_PACKETS = "50000"  # FFmpeg's UDP thread's packet FIFO (188-byte TS packets x 7 per datagram)
CHECK_HINT = ("check that the sender is running and sends to this address and port, and that no firewall "
              "blocks it")
ERRNO = re.compile(r"\[Errno -?\d+\]\s*")
STATUS = re.compile(r"Server returned (\w{3}) ([^:(]*)")  # FFmpeg's words for an RTSP / HTTP status
STALL_FRACTION = 0.9  # a read (or open) that blocked this fraction of the timeout found no data for the timeout
TRANSIENT = ("no data for", "the server accepted", "connection refused", "timed out", "network unreachable",
             "no route", "connection closed")  # reasons of plain_reason() that a sender not up yet gives


class RtspTransport(str, Enum):
    """``--rtsp-transport``: RTP over the RTSP TCP connection (robust through firewalls) or over UDP."""

    TCP = "tcp"
    UDP = "udp"


class Verdict(Enum):
    """What :class:`LiveEdgePolicy` makes of a frame."""

    FRESH = "fresh"  # hand it out
    BUFFERED = "buffered"  # start-up / after a reconnect: it was buffered before the live edge was reached
    LATE = "late"  # steady state: later than the live edge by more than the allowance
    HELD_BACK = "held back"  # it came far later than its own clock says: held back by a stall


def demuxer_options(location: MediaLocation, *, live: bool,
                    rtsp_transport: RtspTransport = RtspTransport.TCP) -> dict[str, str]:
    """``av.open`` options for a network input: low latency when live, the RTSP transport, UDP buffers."""
    options: dict[str, str] = {}
    if live:
        options.update({"probesize": PROBE_SIZE, "analyzeduration": ANALYZE_US, "fflags": "nobuffer",
                        "flags": "low_delay"})
    if location.scheme in ("udp", "rtp"):
        options.update({"overrun_nonfatal": "1", "buffer_size": UDP_BUFFER_BYTES, "fifo_size": UDP_FIFO_PACKETS})
    if location.scheme in ("rtsp", "rtsps"):
        options["rtsp_transport"] = RtspTransport(rtsp_transport).value
    if location.scheme in ("http", "https") and live:
        options["reconnect"] = "0"  # a dropped feed is our reconnect's to handle (it logs and re-bases)
    return options


@cache
def protocol_available(scheme: str) -> bool:
    """Whether the FFmpeg under PyAV has the protocol (PyAV lists none: an open of an unreachable address says
    'Protocol not found' at once when it is missing)."""
    import av

    try:
        av.open(f"{scheme}://127.0.0.1:9", timeout=(0.2, 0.2)).close()
    except av.error.ProtocolNotFoundError:
        return False
    except (av.error.FFmpegError, OSError):
        return True
    return True


def plain_reason(exc: BaseException, scheme: str = "", waited_s: float = 0.0,
                 timeout_s: float = NETWORK_TIMEOUT_S) -> str:
    """An FFmpeg failure in words, without its errno (``[Errno 1414092869] Immediate exit requested`` is PyAV's
    own read timeout); an RTSP / HTTP status as ``RTSP 404 Not Found``; a server that accepted the connection and
    said nothing for ``timeout_s`` (``waited_s``: how long the open took) as just that."""
    text = str(exc)
    if "Immediate exit requested" in text:
        return f"no data for {timeout_s:g} s"
    if (status := STATUS.search(text)) is not None:
        return status_words(status.group(1), status.group(2), scheme)
    if "Invalid data found" in text and waited_s >= STALL_FRACTION * timeout_s:  # FFmpeg's words for silence
        return (f"the server accepted the connection but did not answer within {timeout_s:g} s (wrong port for "
                f"{(scheme or 'this stream').upper()}, or the server hangs)")
    for needle, words in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                          ("Network is unreachable", "network unreachable"), ("No route", "no route to host"),
                          ("End of file", "connection closed"), ("Input/output error", "connection closed or reset")):
        if needle in text:
            return words
    return ERRNO.sub("", text).split(": '", 1)[0].strip() or type(exc).__name__


def status_words(code: str, words: str, scheme: str) -> str:
    """``Server returned 404 Not Found`` from an ``rtsp://`` server -> ``RTSP 404 Not Found (wrong path?)``."""
    protocol = "RTSP" if scheme.startswith("rtsp") else "HTTP"
    code = code.upper()
    if code == "5XX":
        return f"{protocol} 5xx server error (the server failed to start the stream)"
    hint = {"404": " (wrong path, or the stream is not published yet?)",
            "401": " (give the user name and password in the URL: scheme://user:password@host/path)",
            "403": " (access denied)"}.get(code, "")
    return f"{protocol} {code} {words.strip()}{hint}"


def may_come_up(reason: str) -> bool:
    """Whether a failure to open may be a sender that is not up yet (retried), not a mistake (fails at once)."""
    code = re.match(r"(?:RTSP|HTTP) (\d)(\d\d|xx)", reason)
    if code is not None:
        return code.group(1) == "5" or code.group(0).endswith(("404", "408"))
    return reason.startswith(TRANSIENT)


class LiveEdgePolicy:
    """Decides per frame whether it is fresh enough to show (see the module docstring); restart after a (re)open.

    ``judge(arrival, stream_s, read_s)``: ``arrival`` = ``time.monotonic()`` when the frame was decoded,
    ``stream_s`` its stream time, ``read_s`` how long the read blocked.
    """

    def __init__(self, period_s: float, allowance_periods: float = LIVE_ALLOWANCE_PERIODS) -> None:
        if not period_s > 0:
            raise ValueError(f"frame period must be > 0, got {period_s}")
        self.period_s = period_s
        self.allowance_s = allowance_periods * period_s
        self.buffered = 0  # dropped at start-up / after a reconnect
        self.late = 0  # dropped in steady state
        self.reanchored = 0  # the sender's clock jumped while at the live edge: the baseline follows it
        self._at_edge = False
        self._baseline: float | None = None  # lowest lateness since the live edge was reached
        self._previous: float | None = None  # the previous frame's lateness (start-up)
        self._since: float | None = None  # first read after the (re)start

    @property
    def dropped(self) -> int:
        return self.buffered + self.late

    def restart(self) -> None:
        """A (re)open: frames are buffered again until a read waits."""
        self._at_edge, self._baseline, self._previous, self._since = False, None, None, None

    def judge(self, arrival: float, stream_s: float, read_s: float) -> Verdict:
        lateness = arrival - stream_s
        waited = read_s >= WAITED_FRACTION * self.period_s
        if not self._at_edge:
            return self._judge_startup(arrival, lateness, waited)
        baseline = self._baseline if self._baseline is not None else lateness
        if lateness <= baseline + self.allowance_s:
            self._baseline = min(baseline, lateness)
            return Verdict.FRESH
        if waited:  # it arrived just now yet looks late: the sender's clock jumped; follow it
            self.reanchored += 1
            self._baseline = lateness
            return Verdict.FRESH
        self.late += 1
        return Verdict.LATE

    def _judge_startup(self, arrival: float, lateness: float, waited: bool) -> Verdict:
        """Buffered frames come out at decoding speed: their lateness falls by nearly a period per frame. The
        live edge is a read that waited for the sender and a stream time that advanced no faster than the wall
        clock."""
        previous, self._previous = self._previous, lateness
        self._since = arrival if self._since is None else self._since
        steady = previous is not None and lateness >= previous - EDGE_TOLERANCE_PERIODS * self.period_s
        if not (waited and steady):
            if arrival - self._since < STARTUP_MAX_S:
                self.buffered += 1
                return Verdict.BUFFERED
            logger.warning("the input has delivered frames faster than real time for %.0f s; showing them (a "
                           "file? use --no-live)", STARTUP_MAX_S)
        self._at_edge, self._baseline = True, lateness
        return Verdict.FRESH


class NetworkSource(Source):
    """A network stream (``udp://``, ``rtp://``, ``rtsp://``, ``srt://``, ``http(s)://``) through PyAV, with the
    live policy; ``live=None``: the scheme's default (:class:`~polyp_live.train.media_paths.LiveDefault`)."""

    def __init__(self, spec: str | MediaLocation, *, live: bool | None = None,
                 rtsp_transport: RtspTransport = RtspTransport.TCP, timeout_s: float = NETWORK_TIMEOUT_S) -> None:
        super().__init__()
        self.location = locate_input(spec)
        if not self.location.url:
            raise SourceError(f"{self.location.text} is not a network URL")
        self.forced = live
        default = self.location.live_default
        self.probe = live is None and default is LiveDefault.PROBE
        self.live = bool(live) if live is not None else default is not LiveDefault.FILE  # PROBE: live until opened
        self.inner = VideoFileSource(self.location, live=self.live, open_timeout_s=timeout_s,
                                     options=demuxer_options(self.location, live=self.live,
                                                             rtsp_transport=rtsp_transport))
        self.timeout_s = timeout_s
        self.reconnect_hint = CHECK_HINT
        self.policy: LiveEdgePolicy | None = None
        self.startup_s: float | None = None
        self._t_open: float | None = None
        self._stopping = threading.Event()
        self.held_back = 0  # live frames dropped as held back by a stall (also in stale_dropped)
        self._pending: Gap | None = None  # the gap of dropped frames, for the next frame handed out

    @property
    def decode_errors(self) -> int:  # type: ignore[override]
        return self.inner.decode_errors

    @decode_errors.setter
    def decode_errors(self, value: int) -> None:
        pass

    @property
    def stale_dropped(self) -> int:
        """Frames dropped by the live policy (buffered at start-up / after a reconnect, or late)."""
        return (self.policy.dropped if self.policy is not None else 0) + self.held_back

    def open(self) -> SourceInfo:
        scheme = self.location.scheme or ""
        if not protocol_available(scheme):
            raise SourceError(f"cannot open {self.location.text}: the FFmpeg under PyAV has no {scheme}:// support "
                              "(built without it); send the stream as MPEG-TS over udp:// or rtp://, or via rtsp://")
        now = time.monotonic()
        if self._t_open is None:
            self._t_open = now
        self._stopping.clear()
        try:
            info = self.inner.open()
        except SourceError as exc:
            reason = plain_reason(exc.__context__ or exc, scheme, time.monotonic() - now, self.timeout_s)
            reason = reason.removeprefix(f"{self.location.text}: ")
            # a live sender that is not up yet may come: retried at start-up (ReconnectingSource), not a mistake
            error = SourceUnavailable if self.live and not self.probe and may_come_up(reason) else SourceError
            raise error(f"cannot open {self.location.text}: {reason}; {CHECK_HINT}") from None
        if self.probe:  # http(s): a feed has no duration, a file on a web server has one
            self.live = info.frame_count is None
        info = replace(info, live=self.live)
        if self.live:
            self.policy = self.policy or LiveEdgePolicy(1.0 / info.fps)
            self.policy.restart()
        self._info = info
        return info

    def read(self) -> Frame | None:
        while not self._stopping.is_set():
            start = time.monotonic()
            frame = self._read_inner()
            if frame is None or self.policy is None:
                self._started(frame)
                return frame
            own = frame.gap  # this frame's own gap: was it held back? (the merged one only says where it starts)
            frame, self._pending = replace(frame, gap=merge_gaps(self._pending, own)), None
            verdict = self._stalled(frame, own, frame.capture_time - start)
            if verdict is None:
                verdict = self.policy.judge(frame.capture_time, frame.source_ts, frame.capture_time - start)
            if verdict is Verdict.FRESH:
                self._started(frame)
                return frame
            self._pending = frame.gap  # the gap of a dropped frame (often the reconnect itself) goes to the next one
            logger.debug("dropping %s frame %d (%.3f s)", verdict.value, frame.index, frame.source_ts)
        return None

    def _stalled(self, frame: Frame, own: Gap | None, read_s: float) -> Verdict | None:
        """Live: a read that found no data for the timeout is a lost stream, whatever FFmpeg handed out at its end
        (the frame its parser held back, now seconds old); a frame that came far later than its own clock says was
        held back by a shorter stall: stale, and the frames after it are judged as after a reconnect."""
        if read_s >= STALL_FRACTION * self.timeout_s:
            self.held_back += 1
            self._pending = frame.gap
            raise SourceDisconnected(f"{self.location.text}: stream lost (no data for {self.timeout_s:g} s)")
        if own is not None and held_back(own):
            self.held_back += 1
            if self.policy is not None:
                self.policy.restart()
            return Verdict.HELD_BACK
        return None

    def _started(self, frame: Frame | None) -> None:
        if frame is not None and self.startup_s is None and self._t_open is not None:
            self.startup_s = round(frame.capture_time - self._t_open, 4)
            logger.info("%s: first fresh frame %.2f s after opening (%d stale frames dropped)",
                        self.location.text, self.startup_s, self.stale_dropped)

    def _read_inner(self) -> Frame | None:
        """The inner source's next frame; a lost stream is :class:`SourceDisconnected` when live."""
        import av

        try:
            frame = self.inner.read()
        except SourceDisconnected as exc:
            reason = plain_reason(exc)
        except av.error.FFmpegError as exc:  # PyAV's read timeout (ExitError) and other stream failures
            reason = plain_reason(exc)
        else:
            if frame is not None or not self.live:
                return frame
            if self._stopping.is_set():
                return None
            reason = "the sender closed the stream"
        if not self.live:
            raise SourceError(f"{self.location.text}: read failed: {reason}")
        raise SourceDisconnected(f"{self.location.text}: stream lost ({reason})")

    def stop(self) -> None:
        self._stopping.set()
        self.inner.stop()

    def close(self) -> None:
        self.inner.close()
