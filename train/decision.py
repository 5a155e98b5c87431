"""The frame-level decision: which regions of polyp pixels are reported, and so whether a frame shows a polyp.

One home for the product's decision: polyp-live's JSON Lines ``polyp`` and its overlay, polyp-batch, polyp-eval's
detection metrics and the trainer's score on polyp-free frames all call :func:`decide`. The operating point comes
from the model contract (:class:`polyp_live.train.contract.ModelContract`: ``threshold``, ``min_area``,
``min_score``), chosen on validation data and stored with the weights; options may override it.

A *region* is an 8-connected component of ``probability >= threshold`` in the model's map (the field of view's part
of it). It is *reported* when its area is at least ``min_area`` of the map and its *score*, the mean probability of
its pixels, at least ``min_score``. A frame shows a polyp when it has a reported region. Working at the model's
resolution keeps this cheap for 1080p frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from polyp_live.train.contract import ModelContract


@dataclass(frozen=True)
class OperatingPoint:
    """Pixel threshold, smallest reported region (fraction of the map) and lowest reported score."""

    threshold: float
    min_area: float
    min_score: float

    @classmethod
    def of(cls, contract: ModelContract, *, threshold: float | None = None, min_area: float | None = None,
           min_score: float | None = None) -> OperatingPoint:
        """The contract's operating point, with any value given here instead."""
        return cls(contract.threshold if threshold is None else float(threshold),
                   contract.min_area if min_area is None else float(min_area),
                   contract.min_score if min_score is None else float(min_score))


@dataclass(frozen=True)
class Component:
    """One connected region of polyp pixels: half-open box in map pixels, area fraction of the map, mean
    probability, and whether the operating point reports it."""

    x0: int
    y0: int
    x1: int
    y1: int
    area: float
    score: float
    reported: bool
    label: int  # its value in Decision.labels


@dataclass(frozen=True)
class Decision:
    """A map's regions (largest first), the map with the unreported ones set to 0 (``cleaned``) and the label
    image (``None`` when there is no region)."""

    cleaned: np.ndarray
    components: tuple[Component, ...]
    labels: np.ndarray | None = None

    @property
    def reported(self) -> tuple[Component, ...]:
        return tuple(c for c in self.components if c.reported)

    @property
    def polyp(self) -> bool:
        """The frame shows a polyp: at least one reported region."""
        return any(c.reported for c in self.components)


def decide(prob: np.ndarray, point: OperatingPoint) -> Decision:
    """Regions of a ``float32`` ``(h, w)`` probability map and which of them ``point`` reports."""
    binary = (prob >= point.threshold).view(np.uint8)
    if not binary.any():
        return Decision(prob, ())
    total = float(prob.size)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    found: list[Component] = []
    cleaned = prob
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        inside = labels[y : y + h, x : x + w] == label
        score = float(prob[y : y + h, x : x + w][inside].mean())
        reported = area / total >= point.min_area and score >= point.min_score
        if not reported:
            if cleaned is prob:
                cleaned = prob.copy()
            cleaned[y : y + h, x : x + w][inside] = 0.0
        found.append(Component(x, y, x + w, y + h, area / total, score, reported, label))
    found.sort(key=lambda c: c.area, reverse=True)
    return Decision(cleaned, tuple(found), labels)
