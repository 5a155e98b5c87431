"""Pure stage logic of the realtime pipeline: postprocess, overlay, episodes, queues, settings, records."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import polyp_live.realtime.core.stats as stats_module
from polyp_live.realtime.core.overlay import draw_overlay
from polyp_live.realtime.core.postprocess import TemporalSmoother, postprocess_logits
from polyp_live.realtime.core.queues import EMPTY, END, BlockingQueue, LatestQueue
from polyp_live.realtime.core.stages import inference_stage, overlay_stage, postprocess_stage, preprocess_stage
from polyp_live.realtime.core.stats import find_episodes, latency_stats
from polyp_live.realtime.settings import RenderSettings, SettingsBox
from polyp_live.realtime.sinks.report import format_summary, input_warnings
from polyp_live.realtime.sinks.writers import result_record
from polyp_live.realtime.types import Frame, Prediction, Region, Result, StageTimes
from polyp_live.train.contract import ModelContract
from polyp_live.train.decision import OperatingPoint, decide
from polyp_live.train.fov import FieldOfView
from polyp_live.train.preprocess import plan_input
from tests.realtime_fakes import BrightSpotEngine, disc_frame

POINT = OperatingPoint(0.5, 0.0, 0.0)


def logit_map(h: int, w: int, boxes: list[tuple[int, int, int, int]], high: float = 6.0) -> np.ndarray:
    logits = np.full((1, h, w), -6.0, dtype=np.float32)
    for x0, y0, x1, y1 in boxes:
        logits[0, y0:y1, x0:x1] = high
    return logits


def test_postprocess_finds_regions_scaled_to_the_frame() -> None:
    logits = logit_map(64, 64, [(8, 8, 24, 16), (40, 40, 56, 60)])
    mask, regions, prob = postprocess_logits(logits, 128, 256, POINT)
    assert mask.shape == (128, 256) and mask.dtype == np.uint8
    assert len(regions) == 2
    big, small = regions  # largest first
    assert (big.x0, big.y0, big.x1, big.y1) == (160, 80, 224, 120)  # (40,40,56,60) * (4, 2)
    assert (small.x0, small.y0, small.x1, small.y1) == (32, 16, 96, 32)
    assert big.area_fraction == pytest.approx(16 * 20 / 64**2)
    assert big.mean_prob == pytest.approx(1 / (1 + np.exp(-6.0)), rel=1e-5)
    # the mask fills the boxes (bilinear edges may differ by a pixel)
    assert mask[85:115, 165:220].all() and not mask[:, :20].any()
    assert abs(int(mask.sum()) - 16 * 20 * 8 - 16 * 8 * 8) < 0.1 * (16 * 20 * 8 + 16 * 8 * 8)
    assert prob.shape == (64, 64)


def test_postprocess_removes_small_regions_and_handles_empty_maps() -> None:
    logits = logit_map(64, 64, [(0, 0, 2, 2), (30, 30, 50, 50)])
    mask, regions, _ = postprocess_logits(logits, 64, 64, OperatingPoint(0.5, 0.01, 0.0))
    assert len(regions) == 1 and regions[0].x0 == 30
    assert not mask[:2, :2].any() and mask[35, 35] == 1
    mask, regions, _ = postprocess_logits(logit_map(64, 64, []), 480, 640, POINT)
    assert regions == () and mask.shape == (480, 640) and not mask.any()


def test_the_decision_reports_by_threshold_area_and_score() -> None:
    prob = np.zeros((10, 10), np.float32)
    prob[2:4, 2:4] = 0.6  # 4 px, score 0.6
    prob[6:9, 6:9] = 0.9  # 9 px, score 0.9
    assert len(decide(prob, OperatingPoint(0.5, 0.0, 0.0)).reported) == 2
    assert len(decide(prob, OperatingPoint(0.7, 0.0, 0.0)).components) == 1
    by_area = decide(prob, OperatingPoint(0.5, 0.05, 0.0))  # 5 of 100 px: the 4 px region is not reported
    assert [c.area for c in by_area.reported] == [0.09] and len(by_area.components) == 2 and by_area.polyp
    assert by_area.cleaned[2, 2] == 0.0 and by_area.cleaned[7, 7] == pytest.approx(0.9)
    by_score = decide(prob, OperatingPoint(0.5, 0.0, 0.95))
    assert not by_score.polyp and by_score.reported == () and not by_score.cleaned.any()


def test_postprocess_maps_a_letterboxed_field_of_view_back_onto_the_frame() -> None:
    """A 1280x720 tower frame whose picture is x 420-1130, y 10-712: the model saw it letterboxed into 256x256;
    a region in the map comes back inside the picture, nothing outside it, area relative to the picture."""
    contract = ModelContract("lite0", (256, 256), field_of_view=True, keep_aspect=True)
    plan = plan_input(720, 1280, contract, FieldOfView(420, 10, 1130, 712))
    (top, left), (h, w) = plan.offset, plan.size
    logits = np.full((1, 256, 256), -6.0, np.float32)
    logits[0, top + 100 : top + 140, left + 60 : left + 120] = 6.0  # 40 x 60 map pixels inside the content
    logits[0, :top, :] = 6.0  # a false band in the padding is never looked at
    mask, regions, _ = postprocess_logits(logits, 720, 1280, POINT, plan=plan)
    assert len(regions) == 1
    region = regions[0]
    sx, sy = 710 / w, 702 / h
    assert abs(region.x0 - (420 + 60 * sx)) <= 2 and abs(region.x1 - (420 + 120 * sx)) <= 2
    assert abs(region.y0 - (10 + 100 * sy)) <= 2 and abs(region.y1 - (10 + 140 * sy)) <= 2
    assert region.area_fraction == pytest.approx(40 * 60 / (h * w))
    assert not mask[:, :420].any() and not mask[:10].any() and mask[region.y0 + 5, region.x0 + 5] == 1


def test_temporal_smoother_is_an_ema() -> None:
    smoother = TemporalSmoother()
    ones, zeros = np.ones((4, 4), np.float32), np.zeros((4, 4), np.float32)
    assert smoother(ones, 0.5).mean() == 1.0
    assert smoother(zeros, 0.5).mean() == pytest.approx(0.5)
    assert smoother(zeros, 0.5).mean() == pytest.approx(0.25)
    assert smoother(zeros, 0.0).mean() == 0.0  # factor 0: no memory


def test_overlay_changes_only_pixels_inside_the_mask() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    mask[30:70, 40:100] = 1
    mask[80:90, 120:130] = 1
    regions = (Region(40, 30, 100, 70, 0.1, 0.9), Region(120, 80, 130, 90, 0.01, 0.8))
    out = draw_overlay(frame, mask, regions, opacity=0.5, contour=True)
    outside = mask == 0
    assert np.array_equal(out[outside], frame[outside])
    assert (out[mask == 1] != frame[mask == 1]).any(axis=1).mean() > 0.95
    expected = np.clip(np.rint(frame[50, 70] * 0.5 + np.array((40, 230, 90)) * 0.5), 0, 255)
    assert np.abs(out[50, 70].astype(int) - expected).max() <= 1  # fill is a 50 % blend
    assert tuple(out[30, 70]) == (40, 230, 90)  # contour on the mask's edge
    untouched = draw_overlay(frame, mask, regions, show_overlay=False)
    assert np.array_equal(untouched, frame)


def test_overlay_does_not_modify_the_input_frame() -> None:
    frame = disc_frame(60, 80, (40, 30), 10)
    before = frame.copy()
    mask = np.zeros((60, 80), np.uint8)
    mask[20:40, 30:50] = 1
    draw_overlay(frame, mask, (Region(30, 20, 50, 40, 0.1, 0.9),), boxes=True, hud=["12 fps"])
    assert np.array_equal(frame, before)


def test_stage_functions_chain_without_threads() -> None:
    engine = BrightSpotEngine(64)
    frames = [Frame(i, disc_frame(96, 128, (30 + 20 * i, 48), 16), i / 25, time.monotonic()) for i in range(3)]
    batch = preprocess_stage(engine, frames)
    assert batch.data.shape == (3, 3, 64, 64) and batch.preprocess_s > 0
    inferences = inference_stage(engine, batch)
    assert [inf.frame.index for inf in inferences] == [0, 1, 2] and inferences[0].batch_size == 3
    settings = RenderSettings()
    contract = engine.contract.with_operating_point(0.5, 0.0, 0.0)
    for i, inference in enumerate(inferences):
        prediction = postprocess_stage(inference, settings, contract)
        assert prediction.polyp_present and len(prediction.regions) == 1
        region = prediction.regions[0]
        cx = (region.x0 + region.x1) / 2
        assert abs(cx - (30 + 20 * i)) <= 3 and abs((region.y0 + region.y1) / 2 - 48) <= 3
        result = overlay_stage(inference.frame, prediction, settings)
        assert result.times.inference > 0 and result.times.overlay > 0 and result.mask_index == i
        record = result_record(result)
        assert record["index"] == i and record["polyp"] is True and len(record["regions"]) == 1
    strict = RenderSettings(threshold=0.9999999)
    assert not postprocess_stage(inferences[0], strict, contract).polyp_present


def test_episodes_merge_short_gaps_only() -> None:
    flags = [(i, i / 25, f) for i, f in enumerate([0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0])]
    episodes = find_episodes(flags, gap_frames=2)
    assert [(e.start_index, e.end_index, e.frames_with_polyp) for e in episodes] == [(1, 6, 4), (14, 15, 2)]
    assert episodes[0].start_time == pytest.approx(1 / 25) and episodes[0].end_time == pytest.approx(6 / 25)
    assert len(find_episodes(flags, gap_frames=0)) == 3
    assert len(find_episodes(flags, gap_frames=10)) == 1
    assert find_episodes([]) == ()


def test_latency_percentiles() -> None:
    stats = latency_stats("inference", [i / 1000 for i in range(1, 101)])
    assert stats.count == 100 and stats.p50_ms == pytest.approx(50.5) and stats.max_ms == pytest.approx(100)
    assert stats.p99_ms == pytest.approx(99.01)


def test_latest_queue_drops_and_counts_oldest() -> None:
    queue = LatestQueue("q", 2)
    for i in range(5):
        assert queue.put(i)
    assert queue.dropped == 3 and queue.get() == 3 and queue.get() == 4
    assert queue.get(timeout=0.01) is EMPTY
    queue.close()
    assert queue.get() is END and not queue.put(9)


def test_blocking_queue_never_drops_and_applies_back_pressure() -> None:
    queue = BlockingQueue("q", 2)
    received: list[int] = []

    def consume() -> None:
        while (item := queue.get()) is not END:
            time.sleep(0.002)
            received.append(item)

    consumer = threading.Thread(target=consume)
    consumer.start()
    started = time.monotonic()
    for i in range(50):
        assert queue.put(i)
        assert len(queue) <= 2
    queue.close()
    consumer.join(5)
    assert received == list(range(50)) and queue.dropped == 0 and queue.max_depth <= 2
    assert time.monotonic() - started > 0.05  # the producer waited for the slow consumer


def test_blocking_queue_cancel_releases_a_waiting_producer() -> None:
    queue = BlockingQueue("q", 1)
    queue.put(1)
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.append(queue.put(2)))
    producer.start()
    time.sleep(0.05)
    assert producer.is_alive()
    queue.cancel()
    producer.join(2)
    assert outcome == [False]


def test_settings_box_swaps_validated_frozen_settings() -> None:
    box = SettingsBox()
    first = box.get()
    second = box.update(opacity=0.8)
    assert first.opacity == 0.4 and second.opacity == 0.8 and box.get() is second
    with pytest.raises(ValueError):
        box.update(threshold=1.5)
    assert box.get() is second


def test_summary_text_and_truncation_warning() -> None:
    from polyp_live.realtime.types import Episode, LatencyStats, RunSummary

    summary = RunSummary(
        source="a.mp4", mode="file", engine="fake", backend="fake", precision="fp32", device="cpu", frames_in=10,
        frames_out=10, frames_dropped=0, drops=(), decode_errors=0, wall_s=1.0, throughput_fps=10.0,
        latency=(LatencyStats("inference", 10, 5, 5, 6, 7, 8),), frames_with_polyp=3,
        episodes=(Episode(2, 4, 0.08, 0.16, 3),), episode_gap_frames=5, stopped="end of input", expected_frames=40,
    )
    text = format_summary(summary)
    assert "in 10, out 10" in text and "inference" in text and "frames 2-4" in text
    assert "10 of 40 frames" in input_warnings(summary)[0]
    assert input_warnings(summary, max_frames=10) == []
    assert summary.to_dict()["latency"]["inference"]["p95_ms"] == 6


def test_run_stats_use_constant_memory_and_keep_whole_run_percentiles() -> None:
    """Live and file runs alike: a 10-hour recording must not grow the process (a list per stage did)."""
    image = np.zeros((4, 4, 3), np.uint8)
    live, offline = stats_module.RunStats(live=True), stats_module.RunStats(live=False)
    flags = [i % 10 < 3 for i in range(400)]  # a polyp in frames 0-2, 10-12, ...
    rng = np.random.default_rng(0)
    inference = rng.lognormal(np.log(0.03), 0.5, size=len(flags))
    for i, flag in enumerate(flags):
        frame = Frame(i, image, i / 25, capture_time=100.0 + i)
        region = (Region(0, 0, 1, 1, 0.1, 0.9),) if flag else ()
        times = StageTimes(inference=float(inference[i]))
        result = Result(frame, Prediction(frame, np.zeros((4, 4), np.uint8), region, times), image, times)
        for stats in (live, offline):
            stats.add(result, done=100.0 + i + 0.05)
    exact = latency_stats("inference", list(inference))
    for stats in (live, offline):
        got = next(s for s in stats.latency() if s.stage == "inference")
        assert got.count == exact.count == 400
        assert got.max_ms == exact.max_ms and got.mean_ms == pytest.approx(exact.mean_ms, abs=1e-3)
        for field in ("p50_ms", "p95_ms", "p99_ms"):  # histogram bins are 1 % wide
            assert getattr(got, field) == pytest.approx(getattr(exact, field), rel=0.02)
        histograms = [*stats._stage.values(), stats._end_to_end, stats._mask_age]
        assert all(isinstance(h, stats_module.LatencyHistogram) and h.counts.nbytes < 20_000 for h in histograms)
    # episodes and polyp counts are exact in both modes (kept online, not per frame)
    expected = find_episodes([(i, i / 25, f) for i, f in enumerate(flags)])
    assert live.episodes() == offline.episodes() == expected and len(expected) == 40
    assert live.frames_with_polyp == offline.frames_with_polyp == sum(flags)
