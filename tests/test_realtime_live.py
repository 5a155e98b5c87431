"""Live mode with a simulated real-time camera: stale frames are dropped (not queued), latency stays bounded,
and a camera that vanishes is reconnected (or given up on with a clear error)."""

from __future__ import annotations

import time

import pytest

from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig, pipeline_threads, run_to_completion
from polyp_live.realtime.errors import PipelineError, SourceError
from polyp_live.realtime.sources.reconnect import ReconnectingSource
from polyp_live.realtime.sources.simulated import SimulatedCamera
from tests.realtime_fakes import BrightSpotEngine

SLACK_S = 0.12  # scheduling slack on a loaded 2-core CI machine


def latency(summary, stage: str):
    return next(item for item in summary.latency if item.stage == stage)


def test_slow_engine_drops_frames_and_display_never_waits() -> None:
    fps, infer_s = 60.0, 0.1
    camera = SimulatedCamera(fps, 160, 120, frames=90)
    engine = BrightSpotEngine(64, delay_s=infer_s)
    pipeline = Pipeline(camera, engine, PipelineConfig())
    with pipeline:
        results = list(pipeline)
    summary = pipeline.summary()
    assert summary.mode == "live" and summary.stopped == "end of input"
    # the model saw a fraction of the frames; the rest were dropped, not queued
    assert engine.calls <= 1.5 / infer_s + 2 and dict(summary.drops).get("frames", 0) >= 40
    assert all(q.max_depth <= 1 for q in pipeline.queues.values())
    # every frame is shown at once, with the newest mask available
    assert summary.frames_out >= 0.8 * summary.frames_in
    assert latency(summary, "end_to_end").p95_ms <= (2 / fps + SLACK_S) * 1000
    assert latency(summary, "mask_age").p95_ms <= (infer_s + 2 / fps + SLACK_S) * 1000
    with_mask = [r for r in results if r.prediction is not None]
    assert len(with_mask) >= 0.6 * len(results)
    assert any(r.mask_index < r.index for r in with_mask)  # masks follow the video
    assert not pipeline_threads()


def test_sync_mode_shows_only_frames_with_their_own_mask() -> None:
    fps, infer_s = 60.0, 0.08
    camera = SimulatedCamera(fps, 160, 120, frames=60)
    engine = BrightSpotEngine(64, delay_s=infer_s)
    pipeline = Pipeline(camera, engine, PipelineConfig(sync=True))
    with pipeline:
        results = list(pipeline)
    summary = pipeline.summary()
    assert summary.mode == "live-sync"
    assert results and all(r.prediction is not None and r.mask_index == r.index for r in results)
    assert len(results) <= engine.calls and summary.frames_dropped >= summary.frames_in // 2
    # bounded, not queued: queued frames would wait ~3.8 s by the end (60 frames x 80 ms against 1 s of video);
    # the typical frame meets the live target, a spike on a loaded 2-core machine stays well under a queue's wait
    bound_ms = (infer_s + 2 / fps + SLACK_S) * 1000
    e2e = latency(summary, "end_to_end")
    assert e2e.p50_ms <= bound_ms and e2e.max_ms <= 3 * bound_ms, e2e
    for result in results:  # the mask is the disc of that very frame
        cx, cy, _ = camera.disc_at(result.index)
        region = result.regions[0]
        assert region.x0 <= cx <= region.x1 and region.y0 <= cy <= region.y1


def test_camera_that_vanishes_is_reconnected() -> None:
    camera = SimulatedCamera(50.0, 96, 64, frames=60, outages=((0.3, 0.25),))
    source = ReconnectingSource(camera, max_wait_s=3.0)
    started = time.monotonic()
    summary = run_to_completion(source, BrightSpotEngine(64), PipelineConfig())
    assert source.reconnects == 1 and camera.opens == 2
    assert summary.stopped == "end of input" and summary.error is None
    assert time.monotonic() - started >= 1.1
    assert 20 <= summary.frames_in <= 50  # frames during the outage never existed


def test_camera_that_stays_away_fails_with_a_clear_error() -> None:
    camera = SimulatedCamera(50.0, 96, 64, frames=200, outages=((1.0, 30.0),))  # 1 s: start-up under load
    source = ReconnectingSource(camera, max_wait_s=0.5)
    with pytest.raises(PipelineError, match=r"did not come back within 0\.5 s") as caught:
        run_to_completion(source, BrightSpotEngine(64), PipelineConfig())
    assert caught.value.summary is not None and caught.value.summary.frames_out >= 2
    assert not pipeline_threads()


def test_simulated_camera_skips_ticks_for_a_slow_reader() -> None:
    camera = SimulatedCamera(100.0, 32, 32)
    camera.open()
    first = camera.read()
    time.sleep(0.1)
    second = camera.read()
    assert first is not None and second is not None and second.index - first.index >= 8
    camera.close()
    with pytest.raises(SourceError):
        camera.read()


def test_live_recording_is_a_playable_mp4(tmp_path) -> None:
    from polyp_live.realtime.sinks.writers import JsonlSink, VideoWriterSink
    from tests.realtime_fakes import probe

    camera = SimulatedCamera(30.0, 96, 64, frames=30)
    info = camera.open()
    sinks = [VideoWriterSink(tmp_path / "live.mp4", info), JsonlSink(tmp_path / "live.jsonl")]
    summary = run_to_completion(camera, BrightSpotEngine(64, delay_s=0.03), PipelineConfig(), sinks)
    got = probe(tmp_path / "live.mp4")
    lines = (tmp_path / "live.jsonl").read_text().splitlines()
    assert got["frames"] == summary.frames_out == len(lines) >= 20
    assert (got["width"], got["height"]) == (96, 64)
    assert 0.6 <= got["duration"] <= 1.1  # one second of camera time, shown frames at their capture times
