"""Logits -> probabilities -> (optionally smoothed) -> the product's decision -> mask at frame size and regions.

Pure functions plus one small stateful :class:`TemporalSmoother`; no threads. Which regions are reported is
:func:`polyp_live.train.decision.decide`'s (one home, shared with polyp-eval); here they are mapped back onto the
frame through the input plan (field-of-view crop, letterbox). Verified in ``tests/test_realtime_stages.py`` on
synthetic probability maps with known regions.
"""

from __future__ import annotations

import cv2
import numpy as np

from polyp_live.realtime.types import Region
from polyp_live.train.decision import Component, OperatingPoint, decide
from polyp_live.train.preprocess import InputPlan, sigmoid


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


def scale_component(component: Component, plan: InputPlan | None, map_shape: tuple[int, int], height: int,
                    width: int) -> Region:
    """A region's box in map pixels (the field of view's part of the model's map) -> a :class:`Region` in frame
    pixels (box rounded outwards)."""
    if plan is None:
        x_off, y_off, sx, sy = 0, 0, width / map_shape[1], height / map_shape[0]
    else:
        box = plan.fov
        x_off, y_off, sx, sy = box.x0, box.y0, box.width / map_shape[1], box.height / map_shape[0]
    return Region(
        max(0, int(np.floor(x_off + component.x0 * sx))), max(0, int(np.floor(y_off + component.y0 * sy))),
        min(width, int(np.ceil(x_off + component.x1 * sx))), min(height, int(np.ceil(y_off + component.y1 * sy))),
        component.area, component.score,
    )


def mask_at_frame_size(prob: np.ndarray, plan: InputPlan | None, height: int, width: int,
                       threshold: float) -> np.ndarray:
    """Probabilities of the field of view resized onto the frame (bilinear, smoother edges than a resized binary
    mask; nothing outside the field of view) and thresholded."""
    if plan is None:
        if prob.shape != (height, width):
            prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        return (prob >= threshold).view(np.uint8)
    box = plan.fov
    mask = np.zeros((height, width), np.uint8)
    patch = prob if prob.shape == (box.height, box.width) else cv2.resize(
        np.ascontiguousarray(prob), (box.width, box.height), interpolation=cv2.INTER_LINEAR)
    mask[box.y0 : box.y1, box.x0 : box.x1] = (patch >= threshold).view(np.uint8)
    return mask


def postprocess_logits(
    logits: np.ndarray,
    height: int,
    width: int,
    point: OperatingPoint,
    *,
    plan: InputPlan | None = None,
    smoother: TemporalSmoother | None = None,
    smooth: float | None = None,
) -> tuple[np.ndarray, tuple[Region, ...], np.ndarray]:
    """Model logits -> ``(mask uint8 {0,1} at frame size, reported regions in frame pixels, probabilities at model
    size)``.

    The field of view's part of the map (``plan``; ``None``: the whole map squashed onto the whole frame) is
    decided on at model resolution (:func:`polyp_live.train.decision.decide`: the operating point's threshold,
    minimum area and score); the mask shows the reported regions only, resized bilinearly onto the frame. No
    reported region: an all-zero mask, no resize.
    """
    prob = probabilities(logits)
    if smoother is not None:
        prob = smoother(prob, smooth or 0.0)
    content = plan.content(prob) if plan is not None else prob
    decision = decide(content, point)
    reported = decision.reported
    if not reported:
        return np.zeros((height, width), dtype=np.uint8), (), prob
    regions = tuple(scale_component(c, plan, content.shape, height, width) for c in reported)
    return mask_at_frame_size(decision.cleaned, plan, height, width, point.threshold), regions, prob
