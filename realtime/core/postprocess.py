"""Logits -> probabilities -> (optionally smoothed) -> binary mask at frame size -> regions.

Pure functions plus one small stateful :class:`TemporalSmoother`; no threads. Verified in
``tests/test_realtime_stages.py`` on synthetic probability maps with known regions.
"""

from __future__ import annotations

import cv2
import numpy as np

from polyp_live.realtime.types import Region
from polyp_live.train.preprocess import sigmoid


class TemporalSmoother:
    """Exponential moving average of probability maps across frames: ``p = (1 - a) * new + a * previous``.

    ``factor`` ``a`` in [0, 1) comes with each map (the live setting, validated by
    :class:`polyp_live.realtime.settings.RenderSettings`): 0 disables smoothing. The state resets when the map size
    changes.
    """

    def __init__(self) -> None:
        self._state: np.ndarray | None = None

    def __call__(self, prob: np.ndarray, factor: float) -> np.ndarray:
        a = factor
        if a <= 0.0 or self._state is None or self._state.shape != prob.shape:
            self._state = prob.astype(np.float32, copy=True)
        else:
            self._state = (1.0 - a) * prob + a * self._state
        return self._state


def probabilities(logits: np.ndarray) -> np.ndarray:
    """``(h, w)`` or ``(1, h, w)`` logits -> ``float32`` ``(h, w)`` probabilities."""
    logits = np.asarray(logits)
    if logits.ndim == 3:
        logits = logits[0]
    return sigmoid(logits)


def find_regions(
    prob: np.ndarray, threshold: float, min_area_fraction: float = 0.0
) -> tuple[np.ndarray, tuple[tuple[int, int, int, int, float, float], ...]]:
    """Connected components (8-connected) of ``prob >= threshold`` at the map's own resolution.

    Returns the map with removed components (smaller than ``min_area_fraction`` of the map) set to 0
    and one ``(x0, y0, x1, y1, area_fraction, mean_prob)`` per kept component (half-open boxes in map
    pixels), largest first. Working at model resolution keeps this cheap for 1080p frames.
    """
    binary = (prob >= threshold).view(np.uint8)
    if not binary.any():
        return prob, ()
    total = float(prob.size)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    kept: list[tuple[int, int, int, int, float, float]] = []
    cleaned = prob
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        inside = labels[y : y + h, x : x + w] == label
        if area / total < min_area_fraction:
            if cleaned is prob:
                cleaned = prob.copy()
            cleaned[y : y + h, x : x + w][inside] = 0.0
            continue
        kept.append((x, y, x + w, y + h, area / total, float(prob[y : y + h, x : x + w][inside].mean())))
    kept.sort(key=lambda item: item[4], reverse=True)
    return cleaned, tuple(kept)


def scale_region(
    item: tuple[int, int, int, int, float, float], sy: float, sx: float, height: int, width: int
) -> Region:
    """A component box in map pixels -> a :class:`Region` in frame pixels (box rounded outwards)."""
    x0, y0, x1, y1, area_fraction, mean_prob = item
    return Region(
        max(0, int(np.floor(x0 * sx))), max(0, int(np.floor(y0 * sy))),
        min(width, int(np.ceil(x1 * sx))), min(height, int(np.ceil(y1 * sy))),
        area_fraction, mean_prob,
    )


def mask_at_frame_size(prob: np.ndarray, height: int, width: int, threshold: float) -> np.ndarray:
    """Resize probabilities to the frame (bilinear, smoother edges than a resized binary mask) and threshold."""
    if prob.shape != (height, width):
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    return (prob >= threshold).view(np.uint8)


def postprocess_logits(
    logits: np.ndarray,
    height: int,
    width: int,
    threshold: float,
    *,
    min_area_fraction: float = 0.0,
    smoother: TemporalSmoother | None = None,
    smooth: float | None = None,
) -> tuple[np.ndarray, tuple[Region, ...], np.ndarray]:
    """Model logits -> ``(mask uint8 {0,1} at frame size, regions in frame pixels, probabilities at model size)``.

    Regions (boxes, area fractions, mean probabilities) are measured at model resolution and scaled to
    the frame; the mask is the probability map resized bilinearly to the frame and thresholded, with
    removed small components left out. No polyp: an all-zero mask, no resize.
    """
    prob = probabilities(logits)
    if smoother is not None:
        prob = smoother(prob, smooth or 0.0)
    cleaned, items = find_regions(prob, threshold, min_area_fraction)
    if not items:
        return np.zeros((height, width), dtype=np.uint8), (), prob
    sy, sx = height / prob.shape[0], width / prob.shape[1]
    regions = tuple(scale_region(item, sy, sx, height, width) for item in items)
    return mask_at_frame_size(cleaned, height, width, threshold), regions, prob
