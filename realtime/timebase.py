"""The one time base of every output: seconds since the input's first frame, never going backward.

A frame's ``source_ts`` -- the JSONL ``time``, the MP4 timestamps and the episode start/end times all come
from it -- is the stream's own timestamp (pts x time base, so variable frame rates and gaps are kept) minus
the first frame's: a stream that starts at 36000 s (an MPEG-TS from a running recorder) starts at 0.

Where the stream clock is not to be trusted, :class:`StreamClock` re-bases it (the time base continues from
the previous frame, never backward, never two frames at one time) and reports a :class:`~polyp_live.realtime.types.Gap`:

* **files** (no arrival time): where the clock goes backward or stands still (MPEG-TS segments joined, a
  recorder restart) the frame is placed one nominal frame period after the previous one
  (``CLOCK_JUMP``); a forward step longer than ``GAP_MIN_S`` is kept as it is (the file has no frames
  there) and reported as a ``STALL``.
* **live sources** (each frame's arrival time, ``time.monotonic()``, is known): where the stream clock
  goes backward, or moves more than ``CLOCK_TOLERANCE_S`` away from how much time really passed between
  two arrivals, the frame is placed after the previous one by the real (arrival) gap, at least one frame
  period: ``CLOCK_JUMP`` (backward, or leapt ahead: a sender that restarts), ``STALL`` (the frame came
  that much later than its clock says: the input stalled), ``RECONNECT`` (after
  :meth:`StreamClock.discontinuity`: the source was reopened). A 33-bit MPEG-TS wrap-around is unwrapped
  (``WRAP``). A step longer than ``GAP_MIN_S`` on which stream clock and arrival agree is also a ``STALL``
  (frames were lost), kept as it is. Frames are never invented: a gap is time with no frame.
"""

from __future__ import annotations

import logging

from polyp_live.realtime.types import Gap, GapReason

logger = logging.getLogger(__name__)

CLOCK_TOLERANCE_S = 1.0  # live: how far the stream clock may disagree with the arrival times before it is re-based
GAP_MIN_S = 1.0  # a step between two frames longer than this is reported as a gap (STALL)
MPEG_TS_WRAP_S = 2**33 / 90_000  # MPEG-TS timestamps are 33 bits at 90 kHz: they wrap after ~26.5 h


class StreamClock:
    """Turns stream timestamps (seconds) into the output time base; one per source, fed in decode order.

    ``place(stream_s, arrival_s)`` returns the frame's output time and the gap before it (``None``: none);
    ``arrival_s=None`` (files) uses the file rule. The clock is kept across a reconnect of its source:
    call :meth:`discontinuity` on reopening and the next frame is re-based on its arrival.
    """

    def __init__(self, period_s: float, description: str = "input") -> None:
        self.period_s = period_s
        self.description = description
        self._shift: float | None = None  # added to stream seconds
        self._last: float | None = None  # output time of the previous frame
        self._last_stream: float | None = None
        self._last_arrival: float | None = None
        self._pending: GapReason | None = None  # set by discontinuity(): the next frame is re-based
        self.rebased = 0  # times the clock was re-based (backward, jumped, reconnected)
        self.gaps = 0  # gaps reported (the pipeline keeps the records)
        self._jumps = 0  # CLOCK_JUMP re-bases: the first is a warning, the rest debug lines

    def __call__(self, stream_s: float, arrival_s: float | None = None) -> float:
        return self.place(stream_s, arrival_s)[0]

    def discontinuity(self, reason: GapReason = GapReason.RECONNECT) -> None:
        """The source was reopened (or otherwise broke off): do not trust the next frame's stream clock."""
        if self._last is not None:
            self._pending = reason

    def place(self, stream_s: float, arrival_s: float | None = None) -> tuple[float, Gap | None]:
        """The output time of a frame with stream time ``stream_s`` that arrived at ``arrival_s``, and its gap."""
        if self._shift is None or self._last is None or self._last_stream is None:
            self._shift = -stream_s
            return self._keep(stream_s, arrival_s, 0.0), None
        step = jump = stream_s - self._last_stream
        reason = self._pending
        if reason is None:
            reason, step = self._judge(step, arrival_s)
        self._pending = None
        if reason is None or reason == GapReason.WRAP:
            if reason == GapReason.WRAP:
                self._shift += MPEG_TS_WRAP_S
            placed = stream_s + self._shift  # exact over hours: no sum of steps
            if placed <= self._last:  # a step below float resolution: still strictly later
                placed = self._last + 1e-6
                self._shift = placed - stream_s
        else:
            arrived = None if arrival_s is None or self._last_arrival is None else arrival_s - self._last_arrival
            placed = self._last + max(self.period_s, arrived or 0.0)
            self._shift = placed - stream_s
            self.rebased += 1
            self._log_rebase(reason, step, placed)
        gap = None
        if reason is not None or placed - self._last > GAP_MIN_S:
            gap = Gap(at_s=placed, seconds=placed - self._last, reason=reason or GapReason.STALL,
                      stream_jump_s=jump)
            self.gaps += 1
        return self._keep(stream_s, arrival_s, placed), gap

    def _judge(self, step: float, arrival_s: float | None) -> tuple[GapReason | None, float]:
        """Whether the stream clock's ``step`` since the previous frame is to be trusted (``None``) or why not."""
        if step < -MPEG_TS_WRAP_S / 2 and abs(step + MPEG_TS_WRAP_S) <= max(CLOCK_TOLERANCE_S, 10 * self.period_s):
            return GapReason.WRAP, step + MPEG_TS_WRAP_S
        if step <= 0.0:
            return GapReason.CLOCK_JUMP, step
        arrived = None if arrival_s is None or self._last_arrival is None else arrival_s - self._last_arrival
        if arrived is not None and step - arrived > CLOCK_TOLERANCE_S:  # the clock leapt ahead of real time
            return GapReason.CLOCK_JUMP, step
        if arrived is not None and arrived - step > CLOCK_TOLERANCE_S:  # it came late: the input stalled
            return GapReason.STALL, step
        return None, step

    def _keep(self, stream_s: float, arrival_s: float | None, placed: float) -> float:
        self._last, self._last_stream, self._last_arrival = placed, stream_s, arrival_s
        return placed

    def _log_rebase(self, reason: GapReason, step: float, placed: float) -> None:
        if reason in (GapReason.RECONNECT, GapReason.STALL):
            logger.info("%s: %s after %.3f s; the timeline goes on at %.3f s", self.description, reason,
                        self._last, placed)
            return
        self._jumps += 1
        if self._jumps > 1:
            logger.debug("%s: timestamps jump by %+.3f s; the timeline goes on at %.3f s", self.description, step,
                         placed)
        elif step <= 0.0:  # the first jump only: a warning
            logger.warning("%s: timestamps go back by %.3f s after %.3f s (joined segments or a recorder restart?); "
                           "the timeline goes on at %.3f s", self.description, -step, self._last, placed)
        else:
            logger.warning("%s: timestamps jump by %+.3f s after %.3f s, far from the time that passed (a sender "
                           "restart?); the timeline goes on at %.3f s", self.description, step, self._last, placed)


def merge_gaps(earlier: Gap | None, later: Gap | None) -> Gap | None:
    """One gap for two: a source that discards frames (stale ones, polyp_live.realtime.sources.network) keeps the gap of
    a discarded frame for the next frame it hands out: ``pending = merge_gaps(pending, frame.gap)`` per discarded frame,
    then ``replace(frame, gap=merge_gaps(pending, frame.gap))``. The merged gap starts where ``earlier`` did, ends at
    ``later`` and keeps the earlier (first) reason; stream jumps add up."""
    if earlier is None or later is None:
        return earlier or later
    start = earlier.at_s - earlier.seconds
    return Gap(at_s=later.at_s, seconds=later.at_s - start, reason=earlier.reason,
               stream_jump_s=earlier.stream_jump_s + later.stream_jump_s)


def held_back(gap: Gap) -> bool:
    """Whether the frame after ``gap`` came later than its own clock says by more than ``CLOCK_TOLERANCE_S`` (a live
    ``STALL`` re-base): it was sent before a stall and held back by it (in the network, or in FFmpeg's parser until
    the next data came), so its picture is seconds old. A step on which clock and arrival agree is not."""
    return gap.reason == GapReason.STALL and gap.seconds - gap.stream_jump_s > CLOCK_TOLERANCE_S
