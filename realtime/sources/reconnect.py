"""Live sources that come back: reopen a lost device or stream with back-off, or give up with one line."""

from __future__ import annotations

import logging
import threading
import time

from polyp_live.realtime.errors import SourceDisconnected, SourceError
from polyp_live.realtime.sources.base import Source
from polyp_live.realtime.types import Frame, SourceInfo

logger = logging.getLogger(__name__)


DEFAULT_RECONNECT_S = 10.0  # --reconnect-seconds: how long a lost live source is waited for


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
