"""Counters that add up (types.FrameCounts): frames in (taken from the source) = out + dropped by stage, and
= inferred + not inferred by queue, on live runs with drops, a live --sync run and a file run; recorded = the
MP4's frames = JSONL records; a source's stale drops and start-up delay reach the summary; --max-frames counts
frames taken from the source."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from polyp_live.realtime.cli import build_parser
from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads
from polyp_live.realtime.ports import SinkBase
from polyp_live.realtime.sinks.report import format_summary
from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink
from polyp_live.realtime.sources.files import VideoFileSource
from polyp_live.realtime.sources.reconnect import ReconnectingSource
from polyp_live.realtime.sources.simulated import SimulatedCamera
from polyp_live.realtime.types import FrameCounts, Result, RunSummary, StopReason
from tests.fault_helpers import decode_all, read_jsonl
from tests.realtime_fakes import BrightSpotEngine, write_disc_video


class SlowSink(SinkBase):
    """A sink that takes ``delay_s`` per result (a slow disk / encoder): the live ``results`` queue drops."""

    name = "slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.written = 0

    def write(self, result: Result) -> None:
        time.sleep(self.delay_s)
        self.written += 1

    def close(self) -> None:
        pass


def check_balances(summary: RunSummary, queues: dict[str, int]) -> FrameCounts:
    """Both balances hold exactly, and the counts agree with the queues' own drop counters."""
    counts = summary.counts
    assert counts is not None and counts.cut == 0 and counts.cut_model == 0
    assert counts.taken == summary.frames_in and counts.out == summary.frames_out
    assert counts.taken == counts.out + sum(n for _, n in counts.dropped)
    assert counts.taken == counts.inferred + sum(n for _, n in counts.not_inferred)
    assert summary.frames_dropped == sum(n for _, n in counts.dropped)
    assert all(queues[name] == n for name, n in (*counts.dropped, *counts.not_inferred))
    return counts


def run_live(tmp_path: Path, config: PipelineConfig, sink_delay_s: float) -> tuple[Pipeline, RunSummary, int]:
    camera = SimulatedCamera(60.0, 96, 64, frames=90)
    info = camera.open()
    engine = BrightSpotEngine(64, delay_s=0.08)
    sinks = [VideoWriterSink(tmp_path / "live.mp4", info, preset="ultrafast"), JsonlSink(tmp_path / "live.jsonl"),
             SlowSink(sink_delay_s)]
    pipeline = Pipeline(camera, engine, config, sinks)
    with pipeline:
        for _ in pipeline:
            pass
    assert not pipeline_threads()
    return pipeline, pipeline.summary(), engine.calls


def test_a_live_run_with_drops_adds_up(tmp_path: Path) -> None:
    pipeline, summary, calls = run_live(tmp_path, PipelineConfig(), sink_delay_s=0.03)
    counts = check_balances(summary, {q.name: q.dropped for q in pipeline.queues.values()})
    assert counts.inferred == calls and dict(counts.not_inferred).get("frames", 0) >= 30  # the slow model skipped
    assert dict(counts.dropped).get("results", 0) >= 5  # the slow sink made the results queue drop
    records = read_jsonl(tmp_path / "live.jsonl")
    assert counts.recorded == decode_all(tmp_path / "live.mp4") == len(records) == counts.out
    assert counts.shown is None and counts.stale == 0  # headless; a simulated camera is never stale
    text = format_summary(summary)
    dropped_line = next(line for line in text.splitlines() if line.startswith("  dropped "))
    assert dropped_line.endswith("(in - out: a newer frame took its place in a latest-wins queue)")
    assert f"= {summary.frames_dropped} " in dropped_line
    assert f"= {counts.taken - counts.inferred} (in - inferred" in text
    stats = json.loads(json.dumps(summary.to_dict()))
    assert stats["counts"]["taken"] == stats["frames_in"] and stats["counts"]["dropped"] == dict(counts.dropped)


def test_a_live_sync_run_adds_up(tmp_path: Path) -> None:
    pipeline, summary, calls = run_live(tmp_path, PipelineConfig(sync=True), sink_delay_s=0.0)
    counts = check_balances(summary, {q.name: q.dropped for q in pipeline.queues.values()})
    assert summary.mode == "live-sync" and counts.inferred == calls
    assert counts.out <= counts.inferred and dict(counts.dropped).get("frames", 0) >= 30  # shown = own mask only
    assert counts.recorded == decode_all(tmp_path / "live.mp4") == len(read_jsonl(tmp_path / "live.jsonl"))


def test_a_file_run_adds_up_with_nothing_dropped(tmp_path: Path) -> None:
    clip = write_disc_video(tmp_path / "clip.mp4", 30)
    source = VideoFileSource(clip)
    info = source.open()
    sinks = [VideoWriterSink(tmp_path / "o.mp4", info), JsonlSink(tmp_path / "o.jsonl")]
    pipeline = Pipeline(source, BrightSpotEngine(64, max_batch=4, preferred_batch=4), PipelineConfig(), sinks)
    with pipeline:
        for _ in pipeline:
            pass
    summary = pipeline.summary()
    counts = check_balances(summary, {q.name: q.dropped for q in pipeline.queues.values()})
    assert counts.taken == counts.inferred == counts.out == counts.recorded == 30
    assert counts.dropped == counts.not_inferred == counts.after_output == () and summary.gaps == ()
    text = format_summary(summary)
    assert "in 30, out 30, dropped 0" in text and "inferred 30, recorded 30" in text and "not inferred" not in text


def test_max_frames_counts_frames_taken_from_the_source(tmp_path: Path) -> None:
    camera = SimulatedCamera(60.0, 96, 64)
    pipeline = Pipeline(camera, BrightSpotEngine(64, delay_s=0.08), PipelineConfig(max_frames=40),
                        [SlowSink(0.03)])
    with pipeline:
        for _ in pipeline:
            pass
    summary = pipeline.summary()
    counts = check_balances(summary, {q.name: q.dropped for q in pipeline.queues.values()})
    assert summary.stopped == StopReason.MAX_FRAMES and counts.taken == 40 and counts.out < 40
    assert "taken from the source" in " ".join(build_parser().format_help().split())


class StaleCamera(SimulatedCamera):
    """A live source that, like a network stream (realtime/sources/network.py), discarded stale frames at start-up."""

    stale_dropped = 7
    startup_s = 0.25


def test_stale_drops_and_start_up_delay_of_a_wrapped_source_reach_the_summary() -> None:
    source = ReconnectingSource(StaleCamera(30.0, 64, 48, frames=15))
    pipeline = Pipeline(source, BrightSpotEngine(64), PipelineConfig())
    with pipeline:
        for _ in pipeline:
            pass
    summary = pipeline.summary()
    counts = check_balances(summary, {q.name: q.dropped for q in pipeline.queues.values()})
    assert counts.stale == 7 and summary.startup_s == pytest.approx(0.25)
    assert summary.first_output_s is not None and 0.0 < summary.first_output_s < 5.0
    text = format_summary(summary)
    assert "stale        7 discarded by the source" in text
    assert "start-up     first fresh frame 0.25 s after opening the source, first result" in text
