"""Distinct polyps: reported regions linked across frames into tracks, a track confirmed becomes a polyp.

A small IoU/centroid tracker, written here rather than taken from a library: the maintained trackers of the field
do not fit the dependency rules -- supervision's ByteTrack and Roboflow's ``trackers`` install ``opencv-python``,
whose Qt plugins clash with PyQt6, and norfair 2.x pins ``numpy<2`` (this project runs NumPy 2 under PyTorch and
OpenCV) and brings scipy, filterpy and rich for a Kalman model of pedestrians. A colonoscopy frame holds zero to
two polyp regions that move smoothly between frames; matching them needs box overlap and centre distance, not a
motion model.

Per frame, each reported region's box (frame pixels) is matched greedily to the live tracks, confirmed tracks
first and best first among them: a pair
matches when the boxes overlap by IoU >= :data:`MIN_IOU` or their centres are closer than :data:`CENTRE_FRACTION`
of the larger box's diagonal (a polyp sliding across the view). Unmatched regions start tentative tracks. A track
is *confirmed* -- a polyp -- after ``confirm_hits`` matched frames; it ends after ``max_misses`` frames without a
match, or at a gap in the input. The count is an estimate, as in deployed systems' per-procedure reports: a polyp
that leaves the view for longer than that and comes back is counted again, and a polyp that takes the place of
another within that time (a hard cut in an edited clip) can continue its track.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_IOU = 0.1
CENTRE_FRACTION = 0.75
DEFAULT_CONFIRM_HITS = 3
DEFAULT_MAX_MISSES = 12  # about half a second at 25 fps


@dataclass(frozen=True)
class Box:
    """A reported region in frame pixels (half-open), its area fraction and score."""

    x0: int
    y0: int
    x1: int
    y1: int
    area: float = 0.0
    score: float = 0.0

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = (self.x1 - self.x0) * (self.y1 - self.y0) + (other.x1 - other.x0) * (other.y1 - other.y0) - inter
        return inter / union if union > 0 else 0.0

    def centre_distance(self, other: Box) -> float:
        return math.hypot((self.x0 + self.x1 - other.x0 - other.x1) / 2, (self.y0 + self.y1 - other.y0 - other.y1) / 2)

    @property
    def diagonal(self) -> float:
        return math.hypot(self.x1 - self.x0, self.y1 - self.y0)


@dataclass
class Track:
    """One region followed across frames."""

    track_id: int
    box: Box
    first_index: int
    first_time: float
    last_index: int
    last_time: float
    hits: int = 1
    misses: int = 0
    confirmed: bool = False
    best_index: int = 0  # the frame where its region was largest
    best_time: float = 0.0
    best_box: Box = field(default_factory=lambda: Box(0, 0, 0, 0))

    @property
    def duration(self) -> float:
        return self.last_time - self.first_time


@dataclass(frozen=True)
class TrackUpdate:
    """One frame's result: a track id per reported region (in the regions' order) and which are confirmed."""

    track_ids: tuple[int, ...]
    confirmed: tuple[bool, ...]
    new_polyps: tuple[int, ...]  # tracks confirmed at this frame


class PolypTracker:
    """Tracks of one stream; feed it every decided frame in order (:meth:`update`)."""

    def __init__(self, confirm_hits: int = DEFAULT_CONFIRM_HITS, max_misses: int = DEFAULT_MAX_MISSES) -> None:
        if confirm_hits < 1 or max_misses < 1:
            raise ValueError("confirm_hits and max_misses must be at least 1")
        self.confirm_hits = confirm_hits
        self.max_misses = max_misses
        self.live: list[Track] = []
        self.polyps: list[Track] = []  # every confirmed track, in order of confirmation (ended ones included)
        self._next_id = 1

    def _similarity(self, track: Track, box: Box) -> float:
        iou = track.box.iou(box)
        if iou >= MIN_IOU:
            return 1.0 + iou
        reach = CENTRE_FRACTION * max(track.box.diagonal, box.diagonal)
        distance = track.box.centre_distance(box)
        return 1.0 - distance / reach if reach > 0 and distance < reach else 0.0

    def update(self, index: int, time_s: float, boxes: Sequence[Box], gap: bool = False,
               confirm: bool = True) -> TrackUpdate:
        """Match this frame's reported regions; returns their track ids. ``confirm``: tracks may be confirmed at
        this frame (the procedure view passes the POLYP alarm, so that a polyp is only ever counted while the
        clinician is told of it)."""
        if gap:
            self.live = []
        # confirmed tracks first (ByteTrack's priority): a tentative track started by a fleeting false region
        # beside a polyp must not take the polyp's region from the polyp's own track when the polyp moves
        pairs = sorted(((t.confirmed, self._similarity(t, b), ti, bi) for ti, t in enumerate(self.live)
                        for bi, b in enumerate(boxes)), reverse=True)
        matched: dict[int, Track] = {}
        used: set[int] = set()
        for _, score, ti, bi in pairs:
            if score <= 0.0 or ti in used or bi in matched:
                continue
            used.add(ti)
            matched[bi] = self.live[ti]
        new_polyps: list[int] = []
        for bi, box in enumerate(boxes):
            track = matched.get(bi)
            if track is None:
                track = Track(self._next_id, box, index, time_s, index, time_s, best_index=index, best_time=time_s,
                              best_box=box)
                self._next_id += 1
                self.live.append(track)
                matched[bi] = track
            else:
                track.box, track.last_index, track.last_time = box, index, time_s
                track.hits += 1
                track.misses = 0
            if box.area > track.best_box.area:
                track.best_index, track.best_time, track.best_box = index, time_s, box
            if confirm and not track.confirmed and track.hits >= self.confirm_hits:
                track.confirmed = True
                self.polyps.append(track)
                new_polyps.append(track.track_id)
        seen = {id(t) for t in matched.values()}
        for track in self.live:
            if id(track) not in seen:
                track.misses += 1
        self.live = [t for t in self.live if t.misses < self.max_misses]
        ordered = [matched[bi] for bi in range(len(boxes))]
        return TrackUpdate(tuple(t.track_id for t in ordered), tuple(t.confirmed for t in ordered), tuple(new_polyps))
