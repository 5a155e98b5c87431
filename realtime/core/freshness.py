"""Live mode draws the newest mask on each frame; this decides whether that mask is still fresh enough to draw.

A mask from another moment must never appear on the live image: after a reconnect, a camera switch or any gap
in the input the scene may be a different one, and after a model hiccup the outline lags the picture. So a mask
is drawn on a frame only when

* no gap (:attr:`~polyp_live.realtime.types.Frame.gap`: a reconnect, a stall, a clock jump) lies between the
  mask's frame and the frame it would be drawn on, and
* it is young enough: its age when drawn (now minus its own frame's capture time, the ``mask_age`` of the
  summary) is at most :meth:`MaskFreshness.max_age_s` = ``2 x`` the model's recent p95 latency (capture to mask
  ready, over the last :data:`MODEL_WINDOW` masks) ``+`` :data:`MASK_AGE_PERIODS` frame periods, and never more
  than :data:`MASK_AGE_CAP_S`. In steady state the newest mask is at most about two model latencies old (the
  model takes the newest frame as soon as it is free), so a mask older than that bound means the model fell
  behind; the frame periods absorb capture jitter. The bound follows the model's speed, so a slow CPU model is
  not blanked, while a mask from more than a second earlier is never drawn whatever the model.

Otherwise the frame is shown without a mask and counted (``FrameCounts.masks_withheld``, by reason).
"""

from __future__ import annotations

import threading
from collections import deque
from enum import Enum

import numpy as np

from polyp_live.realtime.types import Counts, Frame, Prediction

MASK_AGE_PERIODS = 3.0  # frame periods added to twice the model's p95 latency (capture jitter, display)
MASK_AGE_CAP_S = 1.0  # a mask older than this is from another moment, whatever the model's speed
MODEL_WINDOW = 64  # masks over which the model's p95 latency is taken
GAP_MEMORY = 64  # gaps remembered (by frame index); older ones are far beyond the age bound


class Withheld(str, Enum):
    """Why a live frame was shown without the newest mask."""

    GAP = "gap"  # the mask's frame lies before a gap (reconnect, stall, clock jump) that this frame lies after
    AGE = "age"  # the mask is older than the bound


class MaskFreshness:
    """Thread-safe: the capture thread reports gaps, the postprocess thread mask latencies, the overlay asks."""

    def __init__(self, period_s: float) -> None:
        if not period_s > 0:
            raise ValueError(f"frame period must be > 0, got {period_s}")
        self.period_s = period_s
        self._lock = threading.Lock()
        self._gaps: deque[int] = deque(maxlen=GAP_MEMORY)  # indices of frames with a gap before them
        self._latency: deque[float] = deque(maxlen=MODEL_WINDOW)
        self._max_age_s = MASK_AGE_CAP_S
        self._withheld = {reason: 0 for reason in Withheld}

    def gap_before(self, frame: Frame) -> None:
        """``frame`` comes after a gap (capture thread, in frame order)."""
        with self._lock:
            self._gaps.append(frame.index)

    def mask_ready(self, prediction: Prediction, now: float) -> None:
        """A mask became the newest at monotonic time ``now`` (postprocess thread)."""
        with self._lock:
            self._latency.append(max(0.0, now - prediction.frame.capture_time))
            p95 = float(np.percentile(np.fromiter(self._latency, dtype=np.float64), 95))
            self._max_age_s = min(MASK_AGE_CAP_S, 2.0 * p95 + MASK_AGE_PERIODS * self.period_s)

    @property
    def max_age_s(self) -> float:
        """The current bound on a drawn mask's age (seconds)."""
        with self._lock:
            return self._max_age_s

    def gap_between(self, first: int, second: int) -> bool:
        """Whether a gap lies between frames ``first`` and ``second`` (in either order)."""
        low, high = min(first, second), max(first, second)
        with self._lock:
            return any(low < index <= high for index in self._gaps)

    def usable(self, frame: Frame, prediction: Prediction | None, now: float) -> Prediction | None:
        """``prediction`` if it may be drawn on ``frame`` at ``now``; else ``None``, counted by reason."""
        if prediction is None or prediction.frame is frame:
            return prediction
        reason = None
        if self.gap_between(prediction.frame.index, frame.index):
            reason = Withheld.GAP
        elif now - prediction.frame.capture_time > self.max_age_s:
            reason = Withheld.AGE
        if reason is None:
            return prediction
        with self._lock:
            self._withheld[reason] += 1
        return None

    def withheld(self) -> Counts:
        """Frames shown without the newest mask, by reason (only reasons that happened)."""
        with self._lock:
            return tuple((reason.value, n) for reason, n in self._withheld.items() if n)
