"""A live mask is drawn only while fresh (:mod:`polyp_live.realtime.core.freshness`): never across a gap, never
older than the bound; the frames shown without one are counted; and one stop request per signal burst."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

from polyp_live.realtime.core.freshness import MASK_AGE_CAP_S, MASK_AGE_PERIODS, MaskFreshness
from polyp_live.realtime.core.pipeline import Pipeline, PipelineConfig
from polyp_live.realtime.sources.reconnect import ReconnectingSource
from polyp_live.realtime.sources.simulated import SimulatedCamera
from polyp_live.realtime.types import Frame, Gap, GapReason, Prediction, StageTimes
from tests.realtime_fakes import BrightSpotEngine

PERIOD = 0.04


def frame(index: int, captured: float, gap: bool = False) -> Frame:
    cut = Gap(index * PERIOD, 2.0, GapReason.RECONNECT, -3.0) if gap else None
    return Frame(index, np.zeros((4, 4, 3), np.uint8), index * PERIOD, captured, gap=cut)


def prediction(of: Frame) -> Prediction:
    return Prediction(of, np.zeros((4, 4), np.uint8), (), StageTimes())


def test_a_mask_from_before_a_gap_is_never_drawn() -> None:
    fresh = MaskFreshness(PERIOD)
    old = prediction(frame(10, 100.0))
    fresh.mask_ready(old, 100.02)
    after = frame(11, 100.04, gap=True)
    fresh.gap_before(after)
    assert fresh.usable(after, old, 100.05) is None  # 50 ms old, but from before the reconnect
    assert fresh.usable(frame(12, 100.08), old, 100.09) is None
    assert fresh.usable(frame(9, 99.96), old, 100.0) is old  # before the gap, both: drawn
    assert fresh.withheld() == (("gap", 2),)


def test_the_age_bound_follows_the_model_and_is_capped() -> None:
    fresh = MaskFreshness(PERIOD)
    for k in range(20):  # a model at 20 ms: bound = 2 x 20 ms + 3 periods
        fresh.mask_ready(prediction(frame(k, float(k))), k + 0.02)
    assert fresh.max_age_s == pytest.approx(2 * 0.02 + MASK_AGE_PERIODS * PERIOD)
    mask = prediction(frame(20, 20.0))
    assert fresh.usable(frame(21, 20.1), mask, 20.1) is mask  # 100 ms: under 160 ms
    assert fresh.usable(frame(25, 20.3), mask, 20.3) is None  # 300 ms: the model fell behind
    assert fresh.withheld() == (("age", 1),)
    for k in range(100):  # a model at 2 s: the bound stops at the cap
        fresh.mask_ready(prediction(frame(100 + k, float(k))), k + 2.0)
    assert fresh.max_age_s == MASK_AGE_CAP_S


def test_a_frame_with_its_own_mask_or_none_is_left_alone() -> None:
    fresh = MaskFreshness(PERIOD)
    own = frame(3, 10.0, gap=True)
    fresh.gap_before(own)
    mask = prediction(own)
    assert fresh.usable(own, mask, 99.0) is mask and fresh.usable(own, None, 10.0) is None
    assert fresh.withheld() == ()


class HiccupEngine(BrightSpotEngine):
    """A model that stalls once (a GPU hiccup, a CPU taken by another job) for ``hiccup_s`` at call ``at``."""

    def __init__(self, at: int, hiccup_s: float) -> None:
        super().__init__(64, delay_s=0.01)
        self.at, self.hiccup_s = at, hiccup_s

    def infer(self, batch: Any) -> np.ndarray:
        if self.calls + 1 == self.at:
            time.sleep(self.hiccup_s)
        return super().infer(batch)


def test_a_model_hiccup_shows_frames_without_a_stale_mask_and_counts_them() -> None:
    camera = SimulatedCamera(50.0, 96, 64, frames=100)
    pipeline = Pipeline(camera, HiccupEngine(at=15, hiccup_s=0.8), PipelineConfig())
    with pipeline:
        results = list(pipeline)
    summary = pipeline.summary()
    withheld = dict(summary.counts.masks_withheld)
    assert withheld.get("age", 0) >= 10, summary.counts  # 0.8 s at 50 fps: ~40 frames with no fresh mask
    drawn = [r for r in results if r.prediction is not None]
    ages = [r.frame.capture_time - r.prediction.frame.capture_time for r in drawn]
    assert max(ages) <= MASK_AGE_CAP_S and max(ages) < 0.8  # the mask from before the hiccup was never drawn
    mask_age = next(item for item in summary.latency if item.stage == "mask_age")
    assert summary.mask_max_age_ms is not None and mask_age.max_ms < 800.0
    assert summary.counts.out == len(results)  # still shown: withheld masks are not dropped frames


def test_no_mask_is_drawn_across_a_reconnect() -> None:
    camera = SimulatedCamera(50.0, 96, 64, frames=80, outages=((0.4, 0.5),))
    source = ReconnectingSource(camera, max_wait_s=3.0)
    pipeline = Pipeline(source, BrightSpotEngine(64, delay_s=0.1), PipelineConfig())
    with pipeline:
        results = list(pipeline)
    summary = pipeline.summary()
    assert source.reconnects == 1
    (gap,) = summary.gaps  # the reconnect marks the first frame after it, also for a device's capture clock
    assert gap.reason == GapReason.RECONNECT and gap.seconds >= 0.3
    first_after = min(r.index for r in results if r.frame.source_ts >= gap.at_s)
    crossing = [r.index for r in results if r.index >= first_after and r.mask_index is not None
                and r.mask_index < first_after]
    assert not crossing, f"frames {crossing} drawn with a mask from before the reconnect"
    assert dict(summary.counts.masks_withheld).get("gap", 0) >= 1


# --------------------------------------------------------------------------- signals
def test_signal_copies_within_the_window_are_one_stop_request() -> None:
    from polyp_live.realtime.core.signals import StopRequests

    now = [0.0]
    stops: list[int] = []
    requests = StopRequests(lambda: stops.append(1), burst_s=0.5, clock=lambda: now[0])
    requests(signal.SIGINT)
    now[0] = 0.04
    requests(signal.SIGINT)  # timeout's copy to the process group, 40 ms later
    requests(signal.SIGTERM)
    assert stops == [1] and requests.copies == 2 and requests.requested
    now[0] = 3.0
    requests(signal.SIGTERM)  # still stopping: not an abort
    with pytest.raises(KeyboardInterrupt):
        requests(signal.SIGINT)  # a later Ctrl+C aborts


def test_a_copy_after_a_fast_stop_is_still_the_same_request() -> None:
    """The block ends 10 ms after the first SIGINT (a pipeline that drained at once); the process group's copy 50 ms
    later must not reach Python's default handler (a KeyboardInterrupt traceback while the process exits)."""
    from polyp_live.realtime.core.signals import StopRequests, handling_stop_signals

    requests = StopRequests(lambda: None, burst_s=0.3)
    late = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    with handling_stop_signals(requests):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        late.start()
    late.join()
    assert requests.copies == 1 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_real_sigint_burst_stops_once_and_a_later_one_aborts() -> None:
    from polyp_live.realtime.cli import stop_on_signals

    class Stoppable:
        stops = 0

        def stop(self) -> None:
            self.stops += 1

    target = Stoppable()
    with stop_on_signals(target) as requests:  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.04)  # the Python handler runs between the two copies
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.04)
        assert target.stops == 1 and requests.copies == 1
        time.sleep(0.6)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_polyp_batch_takes_a_supervisors_signal_burst_as_one_stop_request() -> None:
    """polyp-batch under ``timeout -s INT``: the copy to the process group must not abandon the running videos."""
    from polyp_live.realtime.batch.ray_pool import graceful_interrupt

    with graceful_interrupt() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.04)
        os.kill(os.getpid(), signal.SIGINT)  # the group's copy: no KeyboardInterrupt
        time.sleep(0.04)
        assert stop.requested and stop.copies == 1
        time.sleep(0.6)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a later Ctrl+C: stop the running videos now
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
