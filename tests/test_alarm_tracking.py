"""The procedure view's logic on made-up sequences with known answers: the alarm filter, the polyp tracker and the
video metrics (per-polyp sensitivity, first detection, flicker, false alarms per minute)."""

from __future__ import annotations

import math

import pytest

from polyp_live.train.alarm import AlarmConfig, AlarmFilter
from polyp_live.train.evaluation import FrameScore
from polyp_live.train.tracking import Box, PolypTracker
from polyp_live.train.video_metrics import play_sequence, video_summary


def run(decisions: str, config: AlarmConfig, gaps: frozenset[int] = frozenset()) -> str:
    alarm = AlarmFilter(config)
    return "".join("1" if alarm.update(c == "1", gap=i in gaps).on else "0" for i, c in enumerate(decisions))


def test_alarm_turns_on_after_n_and_off_after_m() -> None:
    config = AlarmConfig(on_frames=3, off_frames=2)
    assert run("0110111100100", config) == "0000001110000"  # on at the 3rd frame in a row, off at the 2nd without
    assert run("1101101101", config) == "0000000000"  # flicker never persists 3 frames: no alarm
    assert run("1111", AlarmConfig.unfiltered()) == "1111" and run("1010", AlarmConfig.unfiltered()) == "1010"
    assert run("1111111", config, gaps=frozenset({4})) == "0011001"  # a gap turns it off; it must build again


def test_alarm_counts_switches_and_rejects_bad_settings() -> None:
    alarm = AlarmFilter(AlarmConfig(2, 2))
    for c in "1100110011":
        alarm.update(c == "1")
    assert alarm.activations == 3 and alarm.switches == 5
    with pytest.raises(ValueError, match="on frames"):
        AlarmConfig(on_frames=0)


def box(x: int, y: int, side: int = 40) -> Box:
    return Box(x, y, x + side, y + side, area=side * side / 640 / 480)


def test_tracker_follows_a_moving_polyp_and_counts_distinct_ones() -> None:
    tracker = PolypTracker(confirm_hits=3, max_misses=4)
    ids = []
    for i in range(10):  # one polyp sliding right 10 px a frame, missed at frames 4 and 5
        boxes = [] if i in (4, 5) else [box(100 + 10 * i, 200)]
        ids += tracker.update(i, i / 25, boxes).track_ids
    assert len(set(ids)) == 1 and len(tracker.polyps) == 1
    first = tracker.polyps[0]
    assert first.confirmed and first.first_index == 0 and first.last_index == 9 and first.hits == 8
    for i in range(10, 16):  # gone for 6 frames: the track ends
        tracker.update(i, i / 25, [])
    for i in range(16, 20):  # a second polyp elsewhere, and a one-frame false region that is never confirmed
        boxes = [box(500, 50)] + ([box(20, 400, 10)] if i == 17 else [])
        update = tracker.update(i, i / 25, boxes)
    assert len(tracker.polyps) == 2 and update.confirmed == (True,)
    assert tracker.polyps[1].track_id != first.track_id


def test_tracker_keeps_two_polyps_apart_and_a_gap_ends_tracks() -> None:
    tracker = PolypTracker(confirm_hits=2, max_misses=10)
    for i in range(4):
        update = tracker.update(i, i / 25, [box(50 + 5 * i, 50), box(400 - 5 * i, 300)])
    assert len(set(update.track_ids)) == 2 and len(tracker.polyps) == 2
    after = tracker.update(4, 5.0, [box(70, 50)], gap=True)
    assert after.track_ids[0] not in update.track_ids  # after a gap: another moment, a new track


def test_a_fleeting_region_beside_a_polyp_does_not_take_its_track() -> None:
    """As on CVC-ClinicDB's sequence 1: a small false region appears beside a confirmed polyp, then the polyp jumps
    towards it. The confirmed track keeps the polyp; the false region's tentative track is left to expire."""
    tracker = PolypTracker(confirm_hits=3, max_misses=12)
    for i in range(4):
        polyp = tracker.update(i, i / 25, [Box(140, 200, 300, 280)]).track_ids[0]
    tracker.update(4, 4 / 25, [Box(140, 200, 300, 280), Box(135, 215, 150, 235)])  # a fleeting region at the left
    moved = tracker.update(5, 5 / 25, [Box(40, 60, 135, 270)])  # the polyp jumped left and grew (big motion)
    assert moved.track_ids == (polyp,) and len(tracker.polyps) == 1


def frames(decisions: str, truth: str, hits: str | None = None, sequence: str = "s") -> list[FrameScore]:
    hits = hits or "".join("1" if d == "1" and t == "1" else "0" for d, t in zip(decisions, truth, strict=True))
    return [FrameScore(f"{sequence}/{i}", sequence, i, t == "1", 0.0, 0.0, d == "1", h == "1", 0.0)
            for i, (d, t, h) in enumerate(zip(decisions, truth, hits, strict=True))]


def test_video_metrics_known_answers() -> None:
    polyp = frames("0011110111", "1111111111")  # polyp from frame 0; decisions from frame 2
    row = play_sequence("s", polyp, AlarmConfig(3, 2), fps=25.0)
    assert row.found and row.first_detection_ms == pytest.approx(4 * 40.0) and row.false_alarms == 0
    free = frames("0110011100111110", "0" * 16, sequence="neg")
    unfiltered = play_sequence("neg", free, AlarmConfig.unfiltered(), 25.0)
    filtered = play_sequence("neg", free, AlarmConfig(3, 2), 25.0)
    assert unfiltered.false_alarms == 3 and filtered.false_alarms == 2 and not filtered.found
    summary, rows = video_summary("set", polyp + free, AlarmConfig(3, 2), fps=25.0)
    assert summary.polyps == 1 and summary.polyps_found == 1 and len(rows) == 2
    minutes = 26 / 25 / 60
    assert summary.false_alarms_per_minute == pytest.approx(2 / minutes)
    assert summary.median_first_detection_ms == pytest.approx(160.0)
    missed = play_sequence("m", frames("1010101010", "1111111111"), AlarmConfig(3, 2), 25.0)
    assert not missed.found and missed.first_detection_ms is None
    assert math.isnan(video_summary("x", free, AlarmConfig(3, 2))[0].per_polyp_sensitivity)
