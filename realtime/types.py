"""Typed, frozen records that flow one way through the realtime pipeline.

``Frame`` (from a source) -> ``Inference`` (logits from the engine) -> ``Prediction`` (mask, regions)
-> ``Result`` (annotated image, ready for the sinks). Stage timings ride along in ``StageTimes``;
the end of a run is described by ``RunSummary``. Arrays inside the records are treated as read-only by
every stage (the overlay draws on a copy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from fractions import Fraction
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from polyp_live.train.fov import FieldOfView
    from polyp_live.train.preprocess import InputPlan
    from polyp_live.train.yuv import Yuv420

THREAD_PREFIX = "polyp-live-"  # every thread of a run is named so (tests see that none is left after a run)
STAGES = ("capture", "preprocess", "inference", "postprocess", "overlay", "output")


class _TextEnum(str, Enum):
    """A ``str``-valued enum that prints, formats and serialises to JSON as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class RunMode(_TextEnum):
    """How a run treats its frames (see :mod:`polyp_live.realtime.core.pipeline`)."""

    FILE = "file"  # every frame, in order, back-pressure
    LIVE = "live"  # latest frame wins; shown at once with the newest mask
    LIVE_SYNC = "live-sync"  # latest frame wins; shown only with its own mask


class StopReason(_TextEnum):
    """Why a run ended (``RunSummary.stopped``)."""

    END_OF_INPUT = "end of input"
    MAX_FRAMES = "max frames"  # --max-frames reached
    STOPPED = "stopped"  # Pipeline.stop() before the input ended: Ctrl+C, SIGTERM, window closed
    ERROR = "error"  # a stage failed (RunSummary.error says which and why)


class GapReason(_TextEnum):
    """Why the timeline has a gap or was re-based before a frame (``Gap.reason``; see
    :mod:`polyp_live.realtime.timebase`)."""

    CLOCK_JUMP = "clock jump"  # the stream clock went backward or away from the arrival times: re-based
    RECONNECT = "reconnect"  # the source was reopened after a disconnect: re-based on the arrival time
    WRAP = "wrap-around"  # a 33-bit MPEG-TS clock wrapped: unwrapped
    STALL = "stall"  # no frame for longer than timebase.GAP_MIN_S / a frame far later than its clock says


@dataclass(frozen=True)
class Gap:
    """A discontinuity of the input before a frame: time on the output timeline with no frame, or a re-base."""

    at_s: float  # output time (source_ts) of the first frame after the gap
    seconds: float  # output time since the previous frame (how long nothing came; one period for a file re-base)
    reason: GapReason
    stream_jump_s: float  # how far the source's own clock moved between the two frames (negative: backward)

    def to_dict(self) -> dict[str, Any]:
        return {"time": round(self.at_s, 6), "gap_s": round(self.seconds, 6), "reason": str(self.reason),
                "stream_jump_s": round(self.stream_jump_s, 6)}


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows before the first frame: size, rate, length (``None`` = unknown / live)."""

    description: str
    width: int
    height: int
    fps: float
    live: bool
    frame_count: int | None = None
    time_base: Fraction = Fraction(1, 1000)  # of the source's timestamps; the MP4 writer reuses it
    rate: Fraction | None = None  # exact nominal frame rate where the container states one
    sample_aspect: Fraction | None = None  # pixel aspect ratio when not square (anamorphic); the MP4 keeps it


@dataclass(frozen=True)
class Frame:
    """One decoded picture -- RGB ``uint8`` ``(H, W, 3)``, or the decoder's 4:2:0 planes
    (:class:`polyp_live.train.yuv.Yuv420`: file mode without a viewer, so full-HD frames skip two round trips
    through RGB) -- with its stream timestamp and local capture time. ``rgb`` converts a 4:2:0 picture on first use
    (the viewer, PNG outputs); the model's input, the overlay and the encoder work on the planes."""

    index: int  # 0-based position in the source (counts frames read, dropped ones included)
    image: np.ndarray | Yuv420
    # seconds since the first frame (polyp_live.realtime.timebase): stream pts rebased, or the capture clock
    source_ts: float
    capture_time: float  # time.monotonic() when the frame left the source
    capture_s: float = 0.0  # how long reading/decoding it took
    gap: Gap | None = None  # the input broke off (or its clock was re-based) just before this frame

    @cached_property
    def rgb(self) -> np.ndarray:
        return self.image if isinstance(self.image, np.ndarray) else self.image.to_rgb()

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent in each stage for one frame (0.0 = not run for this frame)."""

    capture: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    overlay: float = 0.0
    output: float = 0.0

    def with_stage(self, stage: str, seconds: float) -> StageTimes:
        return replace(self, **{stage: float(seconds)})

    def as_ms(self) -> dict[str, float]:
        return {name: round(value * 1000.0, 3) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class Batch:
    """Frames prepared for the engine together (``data`` is whatever ``Engine.prepare`` returned), each through its
    plan (field-of-view crop and letterbox: :class:`polyp_live.train.preprocess.InputPlan`)."""

    frames: tuple[Frame, ...]
    data: Any
    preprocess_s: float
    plans: tuple[InputPlan, ...] = ()


@dataclass(frozen=True)
class Inference:
    """The engine's logits for one frame, at the model's input size ``(h, w)``, and the plan that maps them back
    onto the frame (``None``: the whole frame squashed)."""

    frame: Frame
    logits: np.ndarray  # float32 (h, w)
    times: StageTimes
    batch_size: int = 1
    plan: InputPlan | None = None


@dataclass(frozen=True)
class Region:
    """One connected polyp region in frame pixels; the box is half-open ``[x0, x1) x [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int
    area_fraction: float  # region pixels / field-of-view pixels (the whole frame without a crop)
    mean_prob: float  # mean polyp probability inside the region: its score (polyp_live.train.decision)
    track_id: int | None = None  # the region followed across frames (polyp_live.train.tracking)
    confirmed: bool = False  # its track is a polyp (seen in enough frames)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "box": [self.x0, self.y0, self.x1, self.y1],
            "area_fraction": round(self.area_fraction, 6),
            "mean_prob": round(self.mean_prob, 4),
        }
        if self.track_id is not None:
            data["track"] = self.track_id
            data["confirmed"] = self.confirmed
        return data


@dataclass(frozen=True)
class Prediction:
    """Postprocessed model output for ``frame``: binary mask at the frame's size and its reported regions (the
    product's decision, :mod:`polyp_live.train.decision`: a frame shows a polyp when it has one)."""

    frame: Frame
    mask: np.ndarray  # uint8 {0, 1}, (H, W) like the frame
    regions: tuple[Region, ...]
    times: StageTimes
    fov: FieldOfView | None = None  # the endoscope's picture the model saw (None: the whole frame)
    alarm: bool | None = None  # the POLYP alarm after this frame (polyp_live.train.alarm); None: no alarm filter ran

    @property
    def shows_polyp(self) -> bool:
        """What the user is shown: the alarm where it ran, else the frame-level decision."""
        return self.alarm if self.alarm is not None else self.polyp_present

    @property
    def polyp_present(self) -> bool:
        return bool(self.regions)


@dataclass(frozen=True)
class Result:
    """What the sinks receive: the shown frame, the prediction drawn on it and the annotated image.

    In file mode and live ``--sync`` mode ``prediction.frame is frame``. In live mode the frame is shown
    at once with the newest prediction available, which may come from an earlier frame
    (``mask_index < index``), or none yet (``prediction is None``).
    """

    frame: Frame
    prediction: Prediction | None
    annotated: np.ndarray | Yuv420  # RGB uint8 (H, W, 3), or 4:2:0 planes like the frame's
    times: StageTimes
    gaps: tuple[Gap, ...] = ()  # gaps since the previous result, this frame's and those of dropped frames (output)

    @property
    def index(self) -> int:
        return self.frame.index

    @cached_property
    def annotated_rgb(self) -> np.ndarray:
        """The annotated picture in RGB (converted once where it is 4:2:0: the viewer, thumbnails)."""
        return self.annotated if isinstance(self.annotated, np.ndarray) else self.annotated.to_rgb()

    @property
    def polyp_present(self) -> bool:
        return self.prediction is not None and self.prediction.polyp_present

    @property
    def shows_polyp(self) -> bool:
        """The POLYP alarm on this frame (the frame-level decision where no alarm filter ran)."""
        return self.prediction is not None and self.prediction.shows_polyp

    @property
    def regions(self) -> tuple[Region, ...]:
        return self.prediction.regions if self.prediction is not None else ()

    @property
    def mask(self) -> np.ndarray | None:
        return self.prediction.mask if self.prediction is not None else None

    @property
    def mask_index(self) -> int | None:
        return self.prediction.frame.index if self.prediction is not None else None


@dataclass(frozen=True)
class LatencyStats:
    """Percentiles of one stage's per-frame latency, in milliseconds."""

    stage: str
    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class PolypRecord:
    """One distinct polyp of a run: a confirmed track (:mod:`polyp_live.train.tracking`)."""

    track_id: int
    first_index: int
    last_index: int
    first_time: float  # source seconds
    last_time: float
    frames: int  # frames its region was reported in
    largest_area: float  # fraction of the field of view
    best_index: int  # the frame where its region was largest
    best_time: float

    @property
    def duration(self) -> float:
        return self.last_time - self.first_time


@dataclass(frozen=True)
class Episode:
    """One period of the POLYP alarm (or of frames with a polyp, where no alarm ran; see
    :mod:`polyp_live.realtime.core.stats`)."""

    start_index: int
    end_index: int  # inclusive
    start_time: float  # source seconds
    end_time: float  # source seconds of the last frame with a polyp
    frames_with_polyp: int


Counts = tuple[tuple[str, int], ...]  # (stage, frames), in pipeline order; only stages that dropped


@dataclass(frozen=True)
class FrameCounts:
    """The one definition of a run's frame counters (summary, ``--stats`` JSON ``counts``, README).

    Two balances hold at the end of every run: ``taken = out + sum(dropped) + cut`` (the display path) and
    ``taken = inferred + sum(not_inferred) + cut_model`` (the model path); ``cut``/``cut_model`` are frames
    still in flight when a stage failed (0 on a clean end). ``stale`` frames were discarded by the source
    before they were taken (too old for the live policy), so they are in neither balance.
    """

    taken: int  # frames taken from the source (what --max-frames counts; the summary's "in")
    inferred: int  # frames the model ran on
    out: int  # results written to every output: one JSONL record, one MP4 frame, one mask PNG each
    dropped: Counts = ()  # taken frames that never reached the outputs, by latest-wins queue (live mode)
    not_inferred: Counts = ()  # taken frames the model never saw, by queue (live: the model takes the newest)
    stale: int = 0  # discarded by the source as older than the live policy allows (start-up, after a stall)
    masks_dropped: int = 0  # inferred, but a newer mask replaced it before it was drawn (``inferences`` queue)
    # live: shown without the newest mask, which was from before a gap or too old (realtime.core.freshness)
    masks_withheld: Counts = ()
    after_output: Counts = ()  # written to the files but not painted (viewer) / not handed to the iterator
    recorded: int | None = None  # frames in the MP4 (None: no MP4 written)
    shown: int | None = None  # frames the viewer painted (None: no viewer)
    cut: int = 0  # taken, not output, not dropped: in flight when a stage failed
    cut_model: int = 0  # taken, not inferred, not dropped: in flight when a stage failed

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("dropped", "not_inferred", "after_output", "masks_withheld"):
            data[key] = dict(getattr(self, key))
        return data


@dataclass(frozen=True)
class RunSummary:
    """Everything ``polyp-live`` prints at the end of a run (and ``--stats`` writes as JSON)."""

    source: str
    mode: RunMode
    engine: str
    backend: str
    precision: str
    device: str
    frames_in: int
    frames_out: int
    frames_dropped: int
    drops: tuple[tuple[str, int], ...]  # per queue / display
    decode_errors: int
    wall_s: float
    throughput_fps: float
    latency: tuple[LatencyStats, ...]  # per stage, then "end_to_end" (and "mask_age" in live mode)
    frames_with_polyp: int
    episodes: tuple[Episode, ...]
    episode_gap_frames: int
    stopped: StopReason
    error: str | None = None
    expected_frames: int | None = None
    outputs: tuple[str, ...] = field(default_factory=tuple)
    counts: FrameCounts | None = None  # every frame counter, defined once (frames_in/out/dropped are from it)
    gaps: tuple[Gap, ...] = ()  # where the input broke off or its clock was re-based (polyp_live.realtime.timebase)
    startup_s: float | None = None  # live source: from opening to its first fresh frame (None: not known)
    first_output_s: float | None = None  # from the start of the run to the first result written
    mask_max_age_ms: float | None = None  # live: the bound on a drawn mask's age at the end (core.freshness)
    polyps: tuple[PolypRecord, ...] = ()  # distinct polyps (confirmed tracks), in order of appearance
    alarm_frames: tuple[int, int] = (1, 1)  # the alarm's (on, off) frames (polyp_live.train.alarm)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = self.counts.to_dict() if self.counts is not None else None
        data["gaps"] = [gap.to_dict() for gap in self.gaps]
        data["drops"] = dict(self.drops)
        data["latency"] = {item.stage: {k: v for k, v in asdict(item).items() if k != "stage"} for item in self.latency}
        data["outputs"] = list(self.outputs)
        data["polyps"] = [{**asdict(p), "duration": round(p.duration, 3)} for p in self.polyps]
        data["distinct_polyps"] = len(self.polyps)
        return data
