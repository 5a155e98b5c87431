"""Play a file at its own frame rate: a source wrapper that hands frames out at their stream timestamps.

File mode otherwise reads as fast as the pipeline takes frames (right for annotating a recording, wrong for
watching one: a 25 fps clip flew by at 37-56 fps in the viewer). :class:`PacedSource` waits until
``frame.source_ts / speed`` seconds after the first frame before returning it. When it falls behind by more
than :data:`RESYNC_S` (the pipeline was paused, or is slower than the clip), it restarts its clock at the
current frame instead of rushing to catch up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

RESYNC_S = 0.25


class PacedSource:
    """Wraps a file source; ``read`` returns each frame no earlier than its timestamp (scaled by ``speed``)."""

    def __init__(self, source: Any, speed: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.source, self.speed = source, speed
        self._clock, self._sleep = clock, sleep
        self._anchor: tuple[float, float] | None = None  # (wall clock, stream time) of the clock's start
        self._stopped = threading.Event()  # stop() (the pipeline's, from any thread) ends a wait at once

    @property
    def opened(self) -> bool:
        return self.source.opened

    @property
    def info(self) -> Any:
        return self.source.info

    @property
    def decode_errors(self) -> int:
        return self.source.decode_errors

    def open(self) -> Any:
        return self.source.open()

    def read(self) -> Any:
        frame = self.source.read()
        if frame is None:
            return None
        now = self._clock()
        if self._anchor is None:
            self._anchor = (now, frame.source_ts)
            return frame
        due = self._anchor[0] + (frame.source_ts - self._anchor[1]) / self.speed
        if now - due > RESYNC_S:
            self._anchor = (now, frame.source_ts)
        elif due > now:
            (self._sleep or self._stopped.wait)(due - now)
        return frame

    def stop(self) -> None:
        """The run is ending (:class:`polyp_live.realtime.ports.Source`): end a wait now and pass the stop on."""
        self._stopped.set()
        self.source.stop()

    def close(self) -> None:
        self.source.close()
