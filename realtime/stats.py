"""Run statistics: per-stage latency percentiles, polyp episodes and the end-of-run summary.

Episodes: each run of consecutive output frames with a polyp is an appearance; two appearances
separated by at most ``gap_frames`` frames without a polyp (default 5, i.e. 0.2 s at 25 fps) are merged
into one episode, so a flicker of the detector does not split it. An episode's start/end times are
the source timestamps of its first and last frame with a polyp.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import fields

import numpy as np

from realtime.types import STAGES, Episode, LatencyStats, Result, StageTimes

DEFAULT_EPISODE_GAP_FRAMES = 5


def latency_stats(stage: str, seconds: Sequence[float]) -> LatencyStats:
    """Percentiles (linear interpolation) of per-frame latencies given in seconds, reported in ms."""
    if not seconds:
        return LatencyStats(stage, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return LatencyStats(stage, int(ms.size), round(float(ms.mean()), 3), round(float(p50), 3), round(float(p95), 3),
                        round(float(p99), 3), round(float(ms.max()), 3))


def find_episodes(
    flags: Iterable[tuple[int, float, bool]], gap_frames: int = DEFAULT_EPISODE_GAP_FRAMES
) -> tuple[Episode, ...]:
    """``(index, source_time, polyp_present)`` in output order -> episodes, merging gaps <= ``gap_frames``.

    The gap is counted in output frames (frames dropped in live mode are not seen and do not count).
    """
    episodes: list[Episode] = []
    start: tuple[int, float] | None = None
    last: tuple[int, float] | None = None
    present = 0
    misses = 0
    for index, when, flag in flags:
        if flag:
            if start is None:
                start, present = (index, when), 0
            last = (index, when)
            present += 1
            misses = 0
        elif start is not None:
            misses += 1
            if misses > gap_frames:
                episodes.append(Episode(start[0], last[0], start[1], last[1], present))  # type: ignore[index]
                start, last, misses = None, None, 0
    if start is not None and last is not None:
        episodes.append(Episode(start[0], last[0], start[1], last[1], present))
    return tuple(episodes)


class RunStats:
    """Collects per-frame timings and polyp flags from the output stage (thread-safe)."""

    def __init__(self, live: bool = False) -> None:
        self.live = live
        self._lock = threading.Lock()
        self._stage: dict[str, list[float]] = {name: [] for name in STAGES}
        self._end_to_end: list[float] = []
        self._mask_age: list[float] = []
        self._flags: list[tuple[int, float, bool]] = []
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
            self._flags.append((result.index, result.frame.source_ts, result.polyp_present))
            if self.first_output is None:
                self.first_output = done
            self.last_output = done

    @property
    def frames_with_polyp(self) -> int:
        with self._lock:
            return sum(1 for _, _, flag in self._flags if flag)

    def latency(self) -> tuple[LatencyStats, ...]:
        with self._lock:
            items = [latency_stats(name, self._stage[name]) for name in STAGES]
            items.append(latency_stats("end_to_end", self._end_to_end))
            if self._mask_age:
                items.append(latency_stats("mask_age", self._mask_age))
            return tuple(items)

    def episodes(self, gap_frames: int = DEFAULT_EPISODE_GAP_FRAMES) -> tuple[Episode, ...]:
        with self._lock:
            flags = list(self._flags)
        return find_episodes(flags, gap_frames)

    def recent_fps(self) -> float:
        """Output rate over the last 30 frames (for the HUD and status bar)."""
        with self._lock:
            if len(self._recent) < 2:
                return 0.0
            span = self._recent[-1] - self._recent[0]
            return (len(self._recent) - 1) / span if span > 0 else 0.0
