"""A camera simulated in real time, for tests, demos and benchmarks without a capture device.

Frames come at the camera's own rate whether or not anyone reads them (a slow reader skips indices), and
scheduled outages behave as an unplugged device does (reads raise
:class:`~polyp_live.realtime.errors.SourceDisconnected`), so the live pipeline, its drops and the reconnect path can be
exercised on any machine.
"""

from __future__ import annotations

import time
from fractions import Fraction

import cv2
import numpy as np

from polyp_live.realtime.errors import SourceDisconnected, SourceError
from polyp_live.realtime.sources.base import Source
from polyp_live.realtime.types import Frame, SourceInfo


class SimulatedCamera(Source):
    """A camera simulated in real time: frames at ``fps`` with a bright disc on a dark-red background.

    Like a real camera it does not wait for its reader: ``read()`` returns the newest tick, so a slow
    reader skips frame indices. ``outages`` are ``(start_s, duration_s)`` windows after the first
    ``open()`` during which reads raise :class:`SourceDisconnected` and ``open()`` fails, as an unplugged
    device does. ``frames`` limits the number of ticks (``None`` = endless). The disc's position for
    each index is :meth:`disc_at`, so tests can check where masks land.
    """

    def __init__(
        self,
        fps: float = 30.0,
        width: int = 320,
        height: int = 240,
        *,
        frames: int | None = None,
        outages: tuple[tuple[float, float], ...] = (),
        realtime: bool = True,
    ) -> None:
        super().__init__()
        self.fps = float(fps)
        self.width, self.height = width, height
        self.frames = frames
        self.outages = outages
        self.realtime = realtime
        self._t0: float | None = None
        self._last_tick = -1
        self._open = False
        self.opens = 0
        background = np.empty((height, width, 3), dtype=np.uint8)
        background[:] = (90, 30, 25)
        self._background = background

    def _in_outage(self) -> bool:
        if self._t0 is None:
            return False
        elapsed = time.monotonic() - self._t0
        return any(start <= elapsed < start + length for start, length in self.outages)

    def open(self) -> SourceInfo:
        if self._in_outage():
            raise SourceError("simulated camera is unplugged")
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._open = True
        self.opens += 1
        self._info = SourceInfo(
            description=f"simulated camera {self.width}x{self.height}@{self.fps:g}", width=self.width,
            height=self.height, fps=self.fps, live=self.realtime, frame_count=self.frames,
            time_base=Fraction(1, 1000), rate=Fraction(self.fps).limit_denominator(1001),
        )
        return self._info

    def disc_at(self, index: int) -> tuple[int, int, int]:
        """``(cx, cy, radius)`` of the disc in frame ``index``: it circles the frame centre."""
        angle = index * 2.0 * np.pi / 90.0
        radius = max(4, min(self.width, self.height) // 8)
        cx = int(self.width / 2 + self.width / 4 * np.cos(angle))
        cy = int(self.height / 2 + self.height / 4 * np.sin(angle))
        return cx, cy, radius

    def render(self, index: int) -> np.ndarray:
        rgb = self._background.copy()
        cx, cy, radius = self.disc_at(index)
        cv2.circle(rgb, (cx, cy), radius, (250, 240, 220), thickness=-1)
        return rgb

    def read(self) -> Frame | None:
        if not self._open or self._t0 is None:
            raise SourceDisconnected("simulated camera is closed")
        start = time.monotonic()
        if self.realtime:
            tick = self._last_tick + 1
            due = self._t0 + tick / self.fps
            if due > start:
                time.sleep(due - start)
            tick = max(tick, int((time.monotonic() - self._t0) * self.fps))
        else:
            tick = self._last_tick + 1
        if self._in_outage():
            self._open = False
            raise SourceDisconnected("simulated camera stopped delivering frames")
        if self.frames is not None and tick >= self.frames:
            return None
        self._last_tick = tick
        start = time.monotonic()  # capture time = producing the picture, not waiting for the tick
        rgb = self.render(tick)
        now = time.monotonic()
        return Frame(tick, rgb, tick / self.fps, now, now - start)

    def close(self) -> None:
        self._open = False
