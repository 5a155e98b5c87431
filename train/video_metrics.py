"""Video metrics: the alarm (:mod:`polyp_live.train.alarm`) over sequences, as a procedure is judged.

Input: each sequence's per-frame scores in file order (:class:`polyp_live.train.evaluation.FrameScore`: the
frame-level decision ``alarm`` -- a reported region -- and ``hit`` -- a reported region on the ground truth), played
at ``fps``. Per sequence, with a given :class:`~polyp_live.train.alarm.AlarmConfig`:

* **found**: the sequence's polyp is found when the alarm is on at a frame whose reported region is on it;
* **first detection**: milliseconds from the sequence's first polyp frame to the first such frame;
* **switches per minute**: the alarm turning on or off (flicker);
* **false alarms per minute**: alarm-on episodes in which no frame's region is on a polyp (every episode on a
  polyp-free sequence).

Time: CVC-ClinicDB's files are consecutive frames of 25 fps video, so their times are real. PolypGen's
polyp-free files are samples of a video (a fraction of a second to seconds apart): they are played as if
consecutive at ``fps``. A false region there must persist across samples that are really further apart, so the
filter's reduction measured on them is an optimistic estimate for real video; the per-minute rates use the played
time, so the *unfiltered* rates overstate real ones as well (more decisions per minute than samples of real time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from polyp_live.train.alarm import AlarmConfig, AlarmFilter
from polyp_live.train.evaluation import FrameScore


@dataclass(frozen=True)
class SequenceVideo:
    name: str
    frames: int
    has_polyp: bool
    found: bool
    first_detection_ms: float | None
    switches: int
    false_alarms: int


def play_sequence(name: str, frames: Sequence[FrameScore], config: AlarmConfig, fps: float) -> SequenceVideo:
    """One sequence through the alarm filter (frames in file order)."""
    ordered = sorted(frames, key=lambda f: f.order)
    alarm = AlarmFilter(config)
    start = next((i for i, f in enumerate(ordered) if f.has_polyp), None)
    first: int | None = None
    false_alarms, episode_on_polyp, found = 0, False, False
    for i, frame in enumerate(ordered):
        state = alarm.update(frame.alarm)
        if state.switched and state.on:
            episode_on_polyp = False
        if state.on and frame.hit:
            episode_on_polyp = True
            found = True
            if first is None and start is not None:
                first = i
        if state.switched and not state.on and not episode_on_polyp:
            false_alarms += 1
    if alarm.on and not episode_on_polyp:
        false_alarms += 1
    delay = (first - start) * 1000.0 / fps if first is not None and start is not None else None
    return SequenceVideo(name, len(ordered), start is not None, found, delay, alarm.switches, false_alarms)


@dataclass(frozen=True)
class VideoSummary:
    """A data set's sequences under one alarm configuration."""

    name: str
    on_frames: int
    off_frames: int
    fps: float
    minutes: float
    polyps: int
    polyps_found: int
    median_first_detection_ms: float
    switches_per_minute: float
    false_alarms_per_minute: float

    @property
    def per_polyp_sensitivity(self) -> float:
        return self.polyps_found / self.polyps if self.polyps else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_polyp_sensitivity": self.per_polyp_sensitivity}


def video_summary(name: str, frames: Sequence[FrameScore], config: AlarmConfig, fps: float = 25.0
                  ) -> tuple[VideoSummary, list[SequenceVideo]]:
    """Every sequence of a data set (frames grouped by ``sequence``; a flat set is one sequence)."""
    groups: dict[str, list[FrameScore]] = {}
    for frame in frames:
        groups.setdefault(frame.sequence, []).append(frame)
    rows = [play_sequence(f"{name}/{s}" if s else name, g, config, fps) for s, g in sorted(groups.items())]
    minutes = sum(r.frames for r in rows) / fps / 60.0
    delays = [r.first_detection_ms for r in rows if r.first_detection_ms is not None]
    polyps = [r for r in rows if r.has_polyp]
    summary = VideoSummary(
        name, config.on_frames, config.off_frames, fps, minutes, len(polyps), sum(r.found for r in polyps),
        float(np.median(delays)) if delays else math.nan,
        sum(r.switches for r in rows) / minutes if minutes else math.nan,
        sum(r.false_alarms for r in rows) / minutes if minutes else math.nan,
    )
    return summary, rows


def alarm_grid(results: Mapping[str, Sequence[FrameScore]], on_values: Sequence[int], off_values: Sequence[int],
               fps: float = 25.0) -> list[VideoSummary]:
    """Every (on, off) pair on every data set: what the defaults are chosen from."""
    return [video_summary(name, frames, AlarmConfig(on, off), fps)[0]
            for on in on_values for off in off_values for name, frames in results.items()]
