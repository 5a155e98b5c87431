"""The one time base of every output: seconds since the input's first frame, never going backward.

A frame's ``source_ts`` -- the JSONL ``time``, the MP4 timestamps and the episode start/end times all come
from it -- is the stream's own timestamp (pts x time base, so variable frame rates and gaps are kept) minus
the first frame's: a stream that starts at 36000 s (an MPEG-TS from a running recorder) starts at 0. Where
the stream clock goes backward or stands still (MPEG-TS segments joined, a recorder restart), the frame is
placed one nominal frame period after the previous one and the clock continues from there, so times stay
strictly increasing and the later part keeps its own spacing.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class StreamClock:
    """Turns stream timestamps (seconds) into the output time base; one per source, fed in decode order."""

    def __init__(self, period_s: float, description: str = "input") -> None:
        self.period_s = period_s
        self.description = description
        self._shift: float | None = None  # added to stream seconds
        self._last: float | None = None
        self.rebased = 0  # times the clock went backward and was re-based

    def __call__(self, stream_s: float) -> float:
        if self._shift is None:
            self._shift = -stream_s
        candidate = stream_s + self._shift
        if self._last is not None and candidate <= self._last:
            if not self.rebased:
                logger.warning("%s: timestamps go back by %.3f s after %.3f s (joined segments or a recorder "
                               "restart?); later frames continue one frame period on", self.description,
                               self._last - candidate, self._last)
            self.rebased += 1
            self._shift += self._last + self.period_s - candidate
            candidate = self._last + self.period_s
        self._last = candidate
        return candidate
