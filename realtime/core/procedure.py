"""The procedure view's stage: the POLYP alarm and the distinct polyps, over the predictions in frame order.

Pure stage logic (no threads): :class:`ProcedureTracker` runs in the postprocess thread, where predictions come in
frame order, and attaches the alarm state (:mod:`polyp_live.train.alarm`) and each region's track
(:mod:`polyp_live.train.tracking`) to the prediction; the overlay draws regions only while the alarm is on (an
unconfirmed region is not drawn), and the summary lists the confirmed tracks as distinct polyps. A track is confirmed
only at a frame where the alarm is on, so that flicker that never raised the alarm is never counted as a polyp.
"""

from __future__ import annotations

from dataclasses import replace

from polyp_live.realtime.types import PolypRecord, Prediction
from polyp_live.train.alarm import AlarmConfig, AlarmFilter
from polyp_live.train.tracking import DEFAULT_MAX_MISSES, Box, PolypTracker


class ProcedureTracker:
    """The alarm and the tracker of one stream."""

    def __init__(self, config: AlarmConfig | None = None, max_misses: int = DEFAULT_MAX_MISSES) -> None:
        self.config = config or AlarmConfig()
        self.alarm = AlarmFilter(self.config)
        self.tracker = PolypTracker(confirm_hits=self.config.on_frames, max_misses=max_misses)

    def step(self, prediction: Prediction, gap: bool = False) -> Prediction:
        """This prediction with its alarm state and its regions' tracks; ``gap``: the input broke off before it."""
        boxes = [Box(r.x0, r.y0, r.x1, r.y1, r.area_fraction, r.mean_prob) for r in prediction.regions]
        frame = prediction.frame
        state = self.alarm.update(prediction.polyp_present, gap)
        update = self.tracker.update(frame.index, frame.source_ts, boxes, gap, confirm=state.on)
        regions = tuple(replace(region, track_id=track, confirmed=confirmed) for region, track, confirmed
                        in zip(prediction.regions, update.track_ids, update.confirmed, strict=True))
        return replace(prediction, regions=regions, alarm=state.on)

    def polyps(self) -> tuple[PolypRecord, ...]:
        """The distinct polyps so far."""
        return tuple(PolypRecord(t.track_id, t.first_index, t.last_index, round(t.first_time, 3),
                                 round(t.last_time, 3), t.hits, round(t.best_box.area, 6), t.best_index,
                                 round(t.best_time, 3)) for t in self.tracker.polyps)

    @property
    def distinct_polyps(self) -> int:
        return len(self.tracker.polyps)
