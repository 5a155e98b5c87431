"""Live sources that come back: reopen a lost device or stream with back-off, or give up with one line.

The same patience applies at start-up: a live device or stream that is not there yet when ``polyp-live`` starts
(:class:`~polyp_live.realtime.errors.SourceUnavailable`: nothing answers, no such device, no signal -- a procedure
room's tower often boots after the PC) is retried for ``--reconnect-seconds`` too, one log line per attempt naming
the reason, then one error line. Mistakes that waiting cannot fix (a bad URL scheme, a refused login, no permission
on the device, not a video) fail at once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from polyp_live.realtime.errors import SourceDisconnected, SourceError, SourceUnavailable
from polyp_live.realtime.sources.base import Source
from polyp_live.realtime.types import Frame, Gap, GapReason, SourceInfo

logger = logging.getLogger(__name__)


DEFAULT_RECONNECT_S = 10.0  # --reconnect-seconds: how long a lost (or not yet there) live source is waited for


class ReconnectingSource(Source):
    """Wraps a live source: on :class:`SourceDisconnected` reopen with exponential back-off, one log line per
    attempt; gives up with one :class:`SourceError` line (what was lost, when, how long it tried, what to check)
    after ``max_wait_s`` seconds without a frame (0: at once). Reopens the same source object, so its clock and
    counters carry on. The first frame after a reconnect always carries a gap (``RECONNECT`` unless the source
    reported one), so nothing from before the outage -- an episode, a mask -- is carried across it. ``open()``
    retries a :class:`SourceUnavailable` source for ``max_wait_s`` seconds too."""

    def __init__(self, source: Source, *, max_wait_s: float = DEFAULT_RECONNECT_S, first_delay_s: float = 0.05,
                 max_delay_s: float = 1.0) -> None:
        super().__init__()
        self.source, self.max_wait_s = source, max_wait_s
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self._stopping = threading.Event()  # set by stop(): give up waiting at once
        self.reconnects = 0
        self.open_attempts = 0  # opens tried at start-up (1 when the source was there at once)
        self.frames = 0  # handed out, for the give-up message
        self._last_ts: float | None = None
        self._reconnected = False  # the next frame is the first after a reconnect

    @property
    def decode_errors(self) -> int:  # type: ignore[override]
        return self.source.decode_errors

    @decode_errors.setter
    def decode_errors(self, value: int) -> None:
        pass

    def open(self) -> SourceInfo:
        """Open the source, waiting up to ``max_wait_s`` for one that is not there yet (one line per attempt)."""
        self._stopping.clear()
        started = time.monotonic()
        deadline = started + self.max_wait_s
        delay = self.first_delay_s
        while True:
            self.open_attempts += 1
            try:
                self._info = self.source.open()
                if self.open_attempts > 1:
                    logger.warning("%s is there after %.1f s (attempt %d)", self._info.description,
                                   time.monotonic() - started, self.open_attempts)
                return self._info
            except SourceUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping.is_set():
                    raise SourceError(self._not_there(exc, time.monotonic() - started)) from None
                logger.warning("%s (attempt %d, %.1f s after start; retrying for up to %g s: --reconnect-seconds)",
                               exc, self.open_attempts, time.monotonic() - started, self.max_wait_s)
            self._stopping.wait(min(delay, max(0.0, left)))
            delay = min(delay * 2.0, self.max_delay_s)

    def _not_there(self, exc: SourceError, tried_s: float) -> str:
        if self.open_attempts == 1:
            return str(exc)
        return f"{exc} (tried for {tried_s:.1f} s, {self.open_attempts} attempts: --reconnect-seconds)"

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
                self._reconnected = True
                continue
            if frame is not None:
                frame = self._after_reconnect(frame)
                self.frames += 1
                self._last_ts = frame.source_ts
            return frame

    def _after_reconnect(self, frame: Frame) -> Frame:
        """The first frame after a reconnect, with a gap if the source gave it none (a device's capture clock)."""
        if not self._reconnected:
            return frame
        self._reconnected = False
        if frame.gap is not None or self._last_ts is None:
            return frame
        seconds = max(0.0, frame.source_ts - self._last_ts)
        return replace(frame, gap=Gap(at_s=frame.source_ts, seconds=seconds, reason=GapReason.RECONNECT,
                                      stream_jump_s=seconds))

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
        tries = (f"and did not come back within {self.max_wait_s:g} s ({attempt_text(attempts)} over {tried_s:.1f} s)"
                 if attempts else "(--reconnect-seconds 0: no reconnect)")
        return f"lost {self.info.description} after {self.frames} frames{at} {tries}; {hint}"

    def close(self) -> None:
        self.source.close()


def attempt_text(attempts: int) -> str:
    return f"{attempts} reconnect attempt{'s' if attempts != 1 else ''}"
