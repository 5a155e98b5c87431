"""The POLYP alarm: when a frame-level decision becomes something a clinician is told, and when it stops.

One home, used by the live view, file annotation, polyp-batch and polyp-eval's video metrics: the alarm turns on
when frames with a reported region (:mod:`polyp_live.train.decision`) follow each other for ``on_frames`` frames,
and off after ``off_frames`` frames in a row without one. A gap in the input (a reconnect, a stall: the caller
passes ``gap=True``) turns it off at once: what comes after is another moment of the procedure. ``on_frames=1,
off_frames=1`` is no filter (the alarm is the per-frame decision).

Deployed systems flicker: most false activations last fewer than 3 frames, and hiding activations of up to 6 frames
removes most of them. The defaults (:data:`DEFAULT_ON_FRAMES`, :data:`DEFAULT_OFF_FRAMES`) were chosen from the
video metrics on CVC-ClinicDB and the PolypGen polyp-free sequences (``benchmarks/results/eval/``, README).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ON_FRAMES = 3
DEFAULT_OFF_FRAMES = 5


@dataclass(frozen=True)
class AlarmConfig:
    """Frames in a row with a reported region before the alarm turns on, and without one before it turns off."""

    on_frames: int = DEFAULT_ON_FRAMES
    off_frames: int = DEFAULT_OFF_FRAMES

    def __post_init__(self) -> None:
        for name in ("on_frames", "off_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
                raise ValueError(f"alarm {name.replace('_', ' ')} must be a whole number 1..1000, got {value!r}")

    @classmethod
    def unfiltered(cls) -> AlarmConfig:
        return cls(1, 1)


@dataclass(frozen=True)
class AlarmState:
    """The alarm after one frame: on or off, whether it switched at this frame, and the run of frames that led
    there."""

    on: bool
    switched: bool
    streak: int  # frames in a row with (alarm off) or without (alarm on) a reported region


class AlarmFilter:
    """The alarm's state machine (one per stream; feed it the decisions in frame order)."""

    def __init__(self, config: AlarmConfig | None = None) -> None:
        self.config = config or AlarmConfig()
        self.on = False
        self._streak = 0
        self.switches = 0  # on/off changes so far
        self.activations = 0  # off -> on changes so far

    def reset(self) -> None:
        self.on, self._streak = False, 0

    def update(self, polyp: bool, gap: bool = False) -> AlarmState:
        """The alarm after a frame whose decision is ``polyp``; ``gap``: the input broke off just before it."""
        was = self.on
        if gap and self.on:
            self.on, self._streak = False, 0
        if self.on:
            self._streak = 0 if polyp else self._streak + 1
            if self._streak >= self.config.off_frames:
                self.on, self._streak = False, 0
        else:
            self._streak = self._streak + 1 if polyp else 0
            if self._streak >= self.config.on_frames:
                self.on, self._streak = True, 0
        switched = self.on != was
        if switched:
            self.switches += 1
            self.activations += int(self.on)
        return AlarmState(self.on, switched, self._streak)
