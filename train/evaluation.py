"""Scores of a model on frames, as the product decides: segmentation, detection, polyp-free frames, sequences.

Every frame goes through the model contract's geometry (:mod:`polyp_live.train.preprocess`: field-of-view crop,
letterbox) and the product's decision (:mod:`polyp_live.train.decision` at the operating point); what the user would
see -- the reported regions, mapped back onto the whole frame -- is compared with the ground truth at the frame's
own resolution (:func:`score_frame`). Per data set (:func:`summarize`):

* **Dice / IoU**: per frame, averaged over the frames that show a polyp (on a polyp-free frame they say nothing);
* **sensitivity**: the share of polyp frames where a reported region overlaps the ground truth;
* **missed**: polyp frames with Dice < :data:`MISSED_DICE`;
* **false alarms**: the share of polyp-free frames with any reported region, and the mean false area (reported
  pixels outside the ground truth, as a fraction of the frame) on them;
* where the frames are sequences (``seqNN/...``): one row per sequence, **per-polyp sensitivity** (a sequence
  follows one polyp, as CVC-ClinicDB's do: found when any of its frames is) and **first detection** (how many
  frames after the sequence's first polyp frame the first hit comes; files in natural order).

Each frame also keeps its candidate regions at a few pixel thresholds (:data:`SWEEP_THRESHOLDS`), so that an
operating point can be chosen without running the model again (:func:`sweep`, :func:`choose_operating_point`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from polyp_live.train.decision import OperatingPoint, decide
from polyp_live.train.metrics import per_image_scores
from polyp_live.train.preprocess import InputPlan, content_to_frame, resize_mask_planned, sigmoid

MISSED_DICE = 0.1
SWEEP_THRESHOLDS = (0.4, 0.5, 0.6, 0.7)
SWEEP_AREAS = (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05)
SWEEP_SCORES = (0.0, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@dataclass(frozen=True)
class Candidate:
    """A region at one pixel threshold: its area (fraction of the map), score, and whether it touches the truth."""

    threshold: float
    area: float
    score: float
    hit: bool


@dataclass(frozen=True)
class FrameScore:
    key: str
    sequence: str
    order: int  # position in its sequence (natural file order)
    has_polyp: bool
    dice: float
    iou: float
    alarm: bool  # the frame shows a polyp (a reported region)
    hit: bool  # a reported region overlaps the ground truth
    false_area: float  # reported pixels outside the truth, fraction of the frame
    candidates: tuple[Candidate, ...] = ()


def natural_key(text: str) -> tuple[Any, ...]:
    """``seq1/2`` before ``seq1/10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def score_frame(logits: np.ndarray, mask: np.ndarray, plan: InputPlan, point: OperatingPoint, key: str = "",
                sequence: str = "", order: int = 0, sweep: bool = True, resolution: str = "original") -> FrameScore:
    """One frame's scores from the model's logits ``(h, w)`` at the input size and its ``{0, 1}`` mask, compared
    at the frame's resolution (``resolution="input"``: in the model's map, the mask resized nearest)."""
    content = plan.content(sigmoid(logits))
    decision = decide(content, point)
    if resolution == "input":
        shown = np.ascontiguousarray(decision.cleaned) >= point.threshold
        truth = plan.content(resize_mask_planned(mask, plan)) > 0
    else:
        shown = content_to_frame(decision.cleaned, plan) >= point.threshold
        truth = mask > 0
    scores = per_image_scores(torch.from_numpy(shown)[None], torch.from_numpy(truth)[None])
    candidates: list[Candidate] = []
    if sweep:
        truth_map = plan.content(resize_mask_planned(mask, plan)) > 0
        for threshold in SWEEP_THRESHOLDS:
            found = decide(content, OperatingPoint(threshold, 0.0, 0.0))
            for c in found.components:
                hit = bool(truth_map[found.labels == c.label].any()) if found.labels is not None else False
                candidates.append(Candidate(threshold, c.area, c.score, hit))
    return FrameScore(key, sequence, order, bool(truth.any()), float(scores["dice"][0]), float(scores["iou"][0]),
                      decision.polyp, bool((shown & truth).any()), float((shown & ~truth).mean()),
                      tuple(candidates))


@dataclass(frozen=True)
class Summary:
    """Scores of a set of frames (a data set, or one of its sequences)."""

    name: str
    frames: int
    polyp_frames: int
    free_frames: int
    dice: float
    iou: float
    sensitivity: float
    missed: int
    false_alarm_rate: float
    mean_false_area: float
    polyps: int = 0  # sequences with a polyp
    polyps_found: int = 0
    first_detection: tuple[int | None, ...] = ()  # per polyp sequence: frames to the first hit (None: never)

    @property
    def per_polyp_sensitivity(self) -> float:
        return self.polyps_found / self.polyps if self.polyps else math.nan

    @property
    def median_first_detection(self) -> float:
        found = [f for f in self.first_detection if f is not None]
        return float(np.median(found)) if found else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "per_polyp_sensitivity": self.per_polyp_sensitivity,
                "median_first_detection": self.median_first_detection}


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _first_detection(frames: Sequence[FrameScore]) -> int | None:
    ordered = sorted(frames, key=lambda f: f.order)
    start = next((i for i, f in enumerate(ordered) if f.has_polyp), None)
    if start is None:
        return None
    return next((i - start for i, f in enumerate(ordered[start:], start) if f.hit), None)


def summarize(name: str, frames: Sequence[FrameScore]) -> Summary:
    """A data set's (or a sequence's) scores; see the module docstring."""
    polyp = [f for f in frames if f.has_polyp]
    free = [f for f in frames if not f.has_polyp]
    sequences = sorted({f.sequence for f in frames if f.sequence})
    with_polyp = [s for s in sequences if any(f.has_polyp for f in frames if f.sequence == s)]
    first = tuple(_first_detection([f for f in frames if f.sequence == s]) for s in with_polyp)
    return Summary(
        name, len(frames), len(polyp), len(free),
        _mean([f.dice for f in polyp]), _mean([f.iou for f in polyp]),
        _mean([float(f.hit) for f in polyp]), sum(f.dice < MISSED_DICE for f in polyp),
        _mean([float(f.alarm) for f in free]), _mean([f.false_area for f in free]),
        len(with_polyp), sum(any(f.hit for f in frames if f.sequence == s) for s in with_polyp), first,
    )


def sequence_rows(name: str, frames: Sequence[FrameScore]) -> list[Summary]:
    """One summary per sequence (empty for a flat data set)."""
    sequences = sorted({f.sequence for f in frames if f.sequence}, key=natural_key)
    return [summarize(f"{name}/{s}", [f for f in frames if f.sequence == s]) for s in sequences]


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    min_area: float
    min_score: float
    sensitivity: float
    specificity: float


def _flags(frames: Sequence[FrameScore], threshold: float, area: float, score: float, hits: bool) -> np.ndarray:
    return np.array([any(c.threshold == threshold and c.area >= area and c.score >= score and (c.hit or not hits)
                         for c in f.candidates) for f in frames], dtype=bool)


def sweep(polyp_frames: Sequence[FrameScore], free_frames: Sequence[FrameScore],
          thresholds: Sequence[float] = SWEEP_THRESHOLDS, areas: Sequence[float] = SWEEP_AREAS,
          scores: Sequence[float] = SWEEP_SCORES) -> list[SweepPoint]:
    """Sensitivity (polyp frames with a reported region on the truth) and specificity (polyp-free frames without a
    reported region) of every operating point of the grid, from the frames' candidates (model resolution)."""
    points = []
    for threshold in thresholds:
        for area in areas:
            for score in scores:
                sens = _flags(polyp_frames, threshold, area, score, hits=True).mean() if polyp_frames else math.nan
                spec = 1.0 - _flags(free_frames, threshold, area, score, hits=False).mean() if free_frames else math.nan
                points.append(SweepPoint(threshold, area, score, float(sens), float(spec)))
    return points


def choose_operating_point(points: Sequence[SweepPoint], min_specificity: float,
                           prefer_threshold: float = 0.5) -> SweepPoint | None:
    """The point of best sensitivity among those with at least ``min_specificity`` (then the best specificity);
    ``None`` when no point reaches it. Among tied points (a plateau: on validation data many settings do equally
    well), the pixel threshold closest to ``prefer_threshold`` (the one training scored masks at), then the middle
    of the plateau's minimum areas and, at that area, of its minimum scores: the edges of a plateau are where
    unseen data first loses sensitivity (the strict edge) or gains false alarms (the lenient one)."""
    ok = [p for p in points if p.specificity >= min_specificity]
    if not ok:
        return None
    best = max((p.sensitivity, p.specificity) for p in ok)
    tied = [p for p in ok if (p.sensitivity, p.specificity) == best]
    threshold = min({p.threshold for p in tied}, key=lambda v: (abs(v - prefer_threshold), v))
    tied = [p for p in tied if p.threshold == threshold]
    areas = sorted({p.min_area for p in tied})
    area = areas[len(areas) // 2]
    scores = sorted(p.min_score for p in tied if p.min_area == area)
    return next(p for p in tied if p.min_area == area and p.min_score == scores[len(scores) // 2])
