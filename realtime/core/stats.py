"""Run statistics: per-stage latency percentiles, polyp episodes and the end-of-run summary.

Episodes: each run of consecutive output frames with the POLYP alarm on (:mod:`polyp_live.train.alarm`; where no
alarm filter ran, with a reported region) is an episode; runs separated by at most ``gap_frames`` frames are
merged (default 0: the alarm's own off delay already bridges a detector's flicker). An episode's start/end times are
the source timestamps of its first and last frame with a polyp. An episode never spans a gap in the input
of ``timebase.GAP_MIN_S`` or more (a reconnect, a stall: nothing was seen then): it ends before the gap.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import fields

import numpy as np

from polyp_live.realtime.timebase import GAP_MIN_S
from polyp_live.realtime.types import STAGES, Episode, LatencyStats, Result, StageTimes

DEFAULT_EPISODE_GAP_FRAMES = 0


def latency_stats(stage: str, seconds: Sequence[float]) -> LatencyStats:
    """Percentiles (linear interpolation) of per-frame latencies given in seconds, reported in ms."""
    if not seconds:
        return LatencyStats(stage, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LatencyStats(stage, int(ms.size), round(float(ms.mean()), 3), round(float(p50), 3), round(float(p95), 3),
                        round(float(p99), 3), round(float(ms.max()), 3))


class EpisodeTracker:
    """Builds episodes online from ``(index, source_time, polyp_present)`` in output order.

    Memory is O(number of episodes), not O(frames), so a live run of hours keeps no per-frame list.
    Gaps are counted in output frames (frames dropped in live mode are not seen and do not count).
    """

    def __init__(self, gap_frames: int = DEFAULT_EPISODE_GAP_FRAMES) -> None:
        self.gap_frames = gap_frames
        self.closed: list[Episode] = []
        self._start: tuple[int, float] | None = None
        self._last: tuple[int, float] = (0, 0.0)
        self._present = 0
        self._misses = 0

    def update(self, index: int, when: float, flag: bool, gap_s: float = 0.0) -> None:
        """One output frame; ``gap_s``: seconds of input gap just before it (an open episode ends there)."""
        if gap_s >= GAP_MIN_S and self._start is not None:
            self.closed.append(self._episode(self._start))
            self._start, self._misses = None, 0
        if flag:
            if self._start is None:
                self._start, self._present = (index, when), 0
            self._last = (index, when)
            self._present += 1
            self._misses = 0
        elif self._start is not None:
            self._misses += 1
            if self._misses > self.gap_frames:
                self.closed.append(self._episode(self._start))
                self._start, self._misses = None, 0

    def _episode(self, start: tuple[int, float]) -> Episode:
        return Episode(start[0], self._last[0], start[1], self._last[1], self._present)

    def episodes(self) -> tuple[Episode, ...]:
        """The closed episodes plus the one still open, if any."""
        open_one = [self._episode(self._start)] if self._start is not None else []
        return (*self.closed, *open_one)


def find_episodes(
    flags: Iterable[tuple[int, float, bool]], gap_frames: int = DEFAULT_EPISODE_GAP_FRAMES
) -> tuple[Episode, ...]:
    """``(index, source_time, polyp_present)`` in output order -> episodes, merging gaps <= ``gap_frames``."""
    tracker = EpisodeTracker(gap_frames)
    for index, when, flag in flags:
        tracker.update(index, when, flag)
    return tracker.episodes()


class LatencyHistogram:
    """Whole-run latency percentiles in constant memory, for runs that last hours (live or a long file).

    Log-spaced bins from 10 µs to 100 s, 1 % wide: a percentile is exact to within 1 %; count, mean and
    max are exact. (A list of every frame's time grew by 32 bytes per stage and frame: +39 MB of RSS over a
    90,000-frame file.)
    """

    EDGES = np.geomspace(1e-5, 100.0, int(np.log(1e7) / np.log(1.01)) + 1)
    CENTRES = np.concatenate(([EDGES[0]], np.sqrt(EDGES[1:] * EDGES[:-1]), [EDGES[-1]]))  # one per bin

    def __init__(self) -> None:
        self.counts = np.zeros(self.EDGES.size + 1, dtype=np.int64)
        self.total = 0.0
        self.maximum = 0.0

    def append(self, seconds: float) -> None:
        self.counts[int(np.searchsorted(self.EDGES, seconds))] += 1
        self.total += seconds
        self.maximum = max(self.maximum, seconds)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def stats(self, stage: str) -> LatencyStats:
        count = len(self)
        if not count:
            return LatencyStats(stage, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
        cumulative = np.cumsum(self.counts)

        def percentile(q: float) -> float:
            index = int(np.searchsorted(cumulative, q / 100.0 * count))
            return round(min(float(self.CENTRES[index]), self.maximum) * 1000.0, 3)

        return LatencyStats(stage, count, round(self.total / count * 1000.0, 3), percentile(50), percentile(95),
                            percentile(99), round(self.maximum * 1000.0, 3))


class RunStats:
    """Collects per-frame timings and polyp flags from the output stage (thread-safe), in memory that does not
    grow with the number of frames (histograms, online episodes)."""

    def __init__(self, live: bool = False, gap_frames: int = DEFAULT_EPISODE_GAP_FRAMES) -> None:
        self.live = live
        self._lock = threading.Lock()
        self._stage = {name: LatencyHistogram() for name in STAGES}
        self._end_to_end = LatencyHistogram()
        self._mask_age = LatencyHistogram()
        self._episodes = EpisodeTracker(gap_frames)
        self._frames_with_polyp = 0
        self.frames_out = 0
        self.first_output: float | None = None
        self.last_output: float | None = None
        self._recent: deque[float] = deque(maxlen=30)
        self.last_latency_s = 0.0

    def add_times(self, times: StageTimes, stages: Sequence[str] = STAGES) -> None:
        """Record the non-zero stage times of one frame (``stages`` limits which)."""
        with self._lock:
            self._add_times(times, stages)

    def _add_times(self, times: StageTimes, stages: Sequence[str]) -> None:
        for item in fields(times):
            value = getattr(times, item.name)
            if value > 0.0 and item.name in stages:
                self._stage[item.name].append(value)

    def add(self, result: Result, done: float, stages: Sequence[str] = STAGES) -> None:
        """Record one result whose output stage finished at monotonic time ``done``."""
        with self._lock:
            self.frames_out += 1
            self._add_times(result.times, stages)
            self.last_latency_s = done - result.frame.capture_time
            self._end_to_end.append(self.last_latency_s)
            self._recent.append(done)
            if result.prediction is not None and result.prediction.frame is not result.frame:
                self._mask_age.append(done - result.prediction.frame.capture_time)
            gap_s = max((gap.seconds for gap in result.gaps), default=0.0)
            self._episodes.update(result.index, result.frame.source_ts, result.shows_polyp, gap_s)
            self._frames_with_polyp += bool(result.polyp_present)
            if self.first_output is None:
                self.first_output = done
            self.last_output = done

    @property
    def frames_with_polyp(self) -> int:
        with self._lock:
            return self._frames_with_polyp

    def latency(self) -> tuple[LatencyStats, ...]:
        with self._lock:
            items = [self._stage[name].stats(name) for name in STAGES]
            items.append(self._end_to_end.stats("end_to_end"))
            if len(self._mask_age):
                items.append(self._mask_age.stats("mask_age"))
            return tuple(items)

    def episodes(self) -> tuple[Episode, ...]:
        with self._lock:
            return self._episodes.episodes()

    def recent_fps(self) -> float:
        """Output rate over the last 30 frames (for the HUD and status bar)."""
        with self._lock:
            if len(self._recent) < 2:
                return 0.0
            span = self._recent[-1] - self._recent[0]
            return (len(self._recent) - 1) / span if span > 0 else 0.0

