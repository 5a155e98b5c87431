"""One continuous, monotonic timeline per recording (realtime/timebase.py): a live source whose clock jumps
(a sender restart, a reconnect, a wrap-around) is re-based by the real (arrival) gap, the gap is recorded
(JSONL event, summary, --stats JSON) and the MP4, JSONL times and episodes stay monotonic and wall-clock-true."""

from __future__ import annotations

import itertools
import json
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.sinks.report import format_summary
from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink
from polyp_live.realtime.sources.base import Source
from polyp_live.realtime.sources.files import VideoFileSource
from polyp_live.realtime.sources.reconnect import ReconnectingSource
from polyp_live.realtime.timebase import CLOCK_TOLERANCE_S, GAP_MIN_S, MPEG_TS_WRAP_S, StreamClock, merge_gaps
from polyp_live.realtime.types import Frame, Gap, GapReason, Result, SourceInfo
from tests.fault_helpers import read_jsonl
from tests.realtime_fakes import BrightSpotEngine, disc_frame, ts_segment

FPS = 25.0
PERIOD = 1.0 / FPS


def test_a_file_that_goes_backward_continues_one_period_on() -> None:
    clock = StreamClock(PERIOD, "joined.ts")
    placed = [clock.place(k * PERIOD) for k in range(10)] + [clock.place(k * PERIOD) for k in range(10)]
    assert [t for t, _ in placed] == pytest.approx([k * PERIOD for k in range(20)])
    gaps = [g for _, g in placed if g is not None]
    assert len(gaps) == 1 and gaps[0].reason == GapReason.CLOCK_JUMP
    assert gaps[0].seconds == pytest.approx(PERIOD) and gaps[0].stream_jump_s == pytest.approx(-9 * PERIOD)


def test_a_live_sender_restart_advances_by_the_real_gap() -> None:
    """The issue's case: 11.2 s -> 1.4 s on the stream clock after a 4 s silence."""
    clock = StreamClock(PERIOD, "udp://127.0.0.1:5000")
    before = [clock.place(10.0 + k * PERIOD, 100.0 + k * PERIOD) for k in range(31)]  # stream 10.0 .. 11.2
    after = [clock.place(1.4 + k * PERIOD, 100.0 + 30 * PERIOD + 4.0 + k * PERIOD) for k in range(30)]
    times = [t for t, _ in before + after]
    assert all(b > a for a, b in itertools.pairwise(times))  # strictly increasing, never two at once
    assert after[0][0] - before[-1][0] == pytest.approx(4.0)  # the wall-clock gap, not 1/90000 s
    assert [t for t, _ in after] == pytest.approx([after[0][0] + k * PERIOD for k in range(30)])  # own spacing
    gap = after[0][1]
    assert gap is not None and gap.reason == GapReason.CLOCK_JUMP and gap.seconds == pytest.approx(4.0)
    assert gap.at_s == after[0][0] and gap.stream_jump_s == pytest.approx(1.4 - 11.2)
    assert [g for _, g in before + after[1:]] == [None] * 60 and clock.rebased == 1


def test_a_live_clock_that_leaps_forward_is_rebased_on_arrival() -> None:
    clock = StreamClock(PERIOD)
    clock.place(5.0, 50.0)
    first = clock.place(5.0 + PERIOD, 50.0 + PERIOD)
    leap = clock.place(3600.0, 50.0 + 2 * PERIOD)  # a new sender clock, one period later in real time
    assert first[1] is None and leap[1] is not None and leap[1].reason == GapReason.CLOCK_JUMP
    assert leap[0] == pytest.approx(2 * PERIOD)  # one frame period on, not an hour


def test_a_stall_the_stream_clock_agrees_with_is_kept_and_reported() -> None:
    clock = StreamClock(PERIOD)
    clock.place(0.0, 10.0)
    placed, gap = clock.place(3.0, 13.0)  # nothing for 3 s, and the stream clock says so too: frames lost
    assert placed == pytest.approx(3.0) and gap is not None and gap.reason == GapReason.STALL
    assert clock.rebased == 0


def test_a_frame_that_comes_late_is_placed_at_its_arrival() -> None:
    """A network stall: the next frame (one period on, by its clock) comes 2.5 s later; the timeline shows the
    wait that really was (what the viewer saw), then goes on with the stream's spacing."""
    clock = StreamClock(PERIOD)
    clock.place(0.0, 10.0)
    placed, gap = clock.place(PERIOD, 12.5)
    assert placed == pytest.approx(2.5) and gap is not None and gap.reason == GapReason.STALL
    assert gap.stream_jump_s == pytest.approx(PERIOD) and clock.rebased == 1
    assert clock.place(2 * PERIOD, 12.51) == (pytest.approx(2.5 + PERIOD), None)


def test_arrival_jitter_and_a_start_up_burst_are_not_gaps() -> None:
    """A backlog delivered 6x fast at start-up, then frames on time with +-half-period jitter: no re-base."""
    clock = StreamClock(PERIOD)
    arrival = [k * PERIOD / 6 for k in range(80)] + [80 * PERIOD / 6 + k * PERIOD + (k % 3 - 1) * PERIOD / 2
                                                     for k in range(1, 100)]
    placed = [clock.place(k * PERIOD, a) for k, a in enumerate(arrival)]
    assert [g for _, g in placed] == [None] * len(arrival) and clock.rebased == 0
    assert [t for t, _ in placed] == pytest.approx([k * PERIOD for k in range(len(arrival))])
    assert CLOCK_TOLERANCE_S >= 10 * PERIOD and GAP_MIN_S >= 10 * PERIOD  # jitter of a few periods is no jump


def test_an_mpeg_ts_wrap_around_is_unwrapped() -> None:
    clock = StreamClock(PERIOD)
    last = MPEG_TS_WRAP_S - PERIOD
    clock.place(last - PERIOD)
    clock.place(last)
    placed, gap = clock.place(0.0)  # 2**33 ticks at 90 kHz later: the 33-bit counter wrapped
    assert placed == pytest.approx(2 * PERIOD, abs=1e-6) and gap is not None and gap.reason == GapReason.WRAP
    assert clock.place(PERIOD)[0] == pytest.approx(3 * PERIOD, abs=1e-6)


def test_merged_gaps_span_from_the_first_start_to_the_last_end() -> None:
    """What a source that discards stale frames does with the gaps of the frames it discards."""
    reconnect = Gap(at_s=10.0, seconds=3.0, reason=GapReason.RECONNECT, stream_jump_s=-5.0)
    stall = Gap(at_s=12.0, seconds=1.5, reason=GapReason.STALL, stream_jump_s=0.04)
    assert merge_gaps(None, stall) is stall and merge_gaps(reconnect, None) is reconnect
    assert merge_gaps(None, None) is None
    assert merge_gaps(reconnect, stall) == Gap(at_s=12.0, seconds=5.0, reason=GapReason.RECONNECT,
                                               stream_jump_s=pytest.approx(-4.96))


def test_a_reconnected_file_source_marks_the_gap(tmp_path: Path) -> None:
    """VideoFileSource keeps its clock across a reopen (what ReconnectingSource does): the stream starts over at
    its first pts, and the timeline goes on by the real time the outage took."""
    clip = tmp_path / "stream.ts"
    clip.write_bytes(ts_segment(clip, 96, 64, 10))
    source = VideoFileSource(clip, live=True)
    source.open()
    first = [source.read() for _ in range(5)]
    source.close()
    time.sleep(0.3)
    source.open()
    again = source.read()
    source.close()
    assert all(f is not None and f.gap is None for f in first) and again is not None
    assert again.gap is not None and again.gap.reason == GapReason.RECONNECT
    assert again.source_ts - first[-1].source_ts == pytest.approx(again.gap.seconds)
    assert 0.3 <= again.gap.seconds <= 0.3 + 2.0  # the real outage (plus decode time on a loaded machine)
    assert again.index == 5  # indices go on too


class RestartingSender(Source):
    """A live stream in real time at 25 fps whose sender restarts: ``before`` frames on a stream clock from 10 s,
    ``silence_s`` without frames, then ``after`` frames on a new clock from 1.4 s (what FFmpeg's MPEG-TS muxer
    starts at); ``burst``: the frames after the silence all at once (a backlog). Stamped by the real
    :class:`StreamClock` with each frame's arrival time, as VideoFileSource does."""

    def __init__(self, before: int, silence_s: float, after: int, *, burst: bool = False) -> None:
        super().__init__()
        self.before, self.silence_s, self.after, self.burst = before, silence_s, after, burst
        self.width, self.height = 96, 64
        self._clock = StreamClock(PERIOD, "restarting sender")
        self._stopping = threading.Event()
        self._sent = 0
        self._t0 = 0.0
        self.silence: tuple[float, float] | None = None  # monotonic start and end of the silence

    def open(self) -> SourceInfo:
        self._t0 = time.monotonic()
        self._info = SourceInfo("restarting sender", self.width, self.height, FPS, live=True,
                                time_base=Fraction(1, 90_000), rate=Fraction(25))
        return self._info

    def stop(self) -> None:
        self._stopping.set()

    def read(self) -> Frame | None:
        k = self._sent
        if k >= self.before + self.after or self._stopping.is_set():
            return None
        due = self._t0 + (k if k < self.before or not self.burst else self.before) * PERIOD
        due += self.silence_s if k >= self.before else 0.0
        if k == self.before:
            self.silence = (time.monotonic(), due)
        if self._stopping.wait(max(0.0, due - time.monotonic())):
            return None
        stream_s = 10.0 + k * PERIOD if k < self.before else 1.4 + (k - self.before) * PERIOD
        now = time.monotonic()
        ts, gap = self._clock.place(stream_s, now)
        self._sent += 1
        rgb = disc_frame(self.height, self.width, (self.width // 2, self.height // 2), self.height // 4)
        return Frame(index=k, image=rgb, source_ts=ts, capture_time=now, gap=gap)


def mp4_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(frame.pts * stream.time_base) for frame in container.decode(stream)]


def test_a_sender_restart_keeps_one_monotonic_wall_clock_true_recording(tmp_path: Path) -> None:
    source = RestartingSender(before=25, silence_s=1.5, after=25)
    info = source.open()
    out, jsonl = tmp_path / "rec.mp4", tmp_path / "rec.jsonl"
    sinks = [VideoWriterSink(out, info, preset="ultrafast"), JsonlSink(jsonl)]
    pipeline = Pipeline(ReconnectingSource(source), BrightSpotEngine(64, delay_s=0.01), PipelineConfig(), sinks)
    with pipeline:
        for _ in pipeline:  # (the iterator may miss results: "delivered" drops; the files get every one)
            pass
    summary = pipeline.summary()
    assert summary.mode == "live" and summary.stopped == "end of input" and not pipeline_threads()
    assert source.silence is not None
    silence = source.silence[1] - source.silence[0]

    frames, events = read_jsonl(jsonl), read_jsonl(jsonl, events=True)
    times = mp4_times(out)
    assert len(times) == len(frames) == summary.frames_out >= 25  # JSONL count = MP4 frame count
    assert all(b > a for a, b in itertools.pairwise(times))  # monotonic pts (no 1/90000 s pile-up)
    jtimes = [r["time"] for r in frames]
    assert all(b > a for a, b in itertools.pairwise(jtimes))
    assert times == pytest.approx([t - jtimes[0] for t in jtimes], abs=2 / 90_000)  # one time base for both
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert max(steps) == pytest.approx(silence, abs=0.25)  # the one long step is the real silence
    assert sorted(steps)[-2] < silence / 2  # everything else is frame spacing (dropped frames at most)

    assert len(events) == 1 and events[0]["event"] == "gap" and events[0]["reason"] == "clock jump"
    assert events[0]["gap_s"] == pytest.approx(silence, abs=0.25)
    assert events[0]["stream_jump_s"] == pytest.approx(1.4 - (10.0 + 24 * PERIOD), abs=1e-6)
    after = next(i for i, r in enumerate(frames) if r["time"] >= events[0]["time"])
    lines = jsonl.read_text().splitlines()
    assert '"event":"gap"' in lines[after] and lines.index(lines[after]) == after  # the event just before that frame
    assert [g.reason for g in summary.gaps] == [GapReason.CLOCK_JUMP]

    episodes = summary.episodes  # the disc is in every frame: one episode each side, none across the silence
    assert len(episodes) == 2
    assert all(ep.start_time <= ep.end_time for ep in episodes)
    assert episodes[0].end_time < summary.gaps[0].at_s <= episodes[1].start_time
    text = format_summary(summary)
    assert "gaps         1," in text and "clock jump" in text
    stats = summary.to_dict()
    assert stats["gaps"][0]["reason"] == "clock jump" and stats["gaps"][0]["gap_s"] == events[0]["gap_s"]


class BlockingSink(SinkBase):
    """Takes ``block_s`` to write frame ``index`` (a disk that stalls): meanwhile the live queues keep the newest."""

    name = "stalling"

    def __init__(self, index: int, block_s: float) -> None:
        self.index, self.block_s = index, block_s

    def write(self, result: Result) -> None:
        if result.index == self.index:
            time.sleep(self.block_s)

    def close(self) -> None:
        pass


def test_the_gap_of_a_dropped_frame_is_written_before_the_next_written_frame(tmp_path: Path) -> None:
    """The first frame after the gap never reaches the outputs (the outputs were stalled, a newer frame took its
    place): its gap event still comes, once, before the next frame written."""
    source = RestartingSender(before=10, silence_s=0.2, after=20, burst=True)
    jsonl = tmp_path / "o.jsonl"
    pipeline = Pipeline(source, BrightSpotEngine(64), PipelineConfig(), [BlockingSink(9, 1.5), JsonlSink(jsonl)])
    with pipeline:
        for _ in pipeline:
            pass
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    events = [i for i, r in enumerate(records) if "event" in r]
    assert len(events) == 1 and records[events[0]]["reason"] == "clock jump"
    after = records[events[0] + 1]
    assert after["index"] > 10  # frame 10, which carried the gap, was dropped ...
    assert after["time"] >= records[events[0]]["time"]  # ... and the event precedes the next frame written
    assert len(pipeline.summary().gaps) == 1
