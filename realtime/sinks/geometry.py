"""The frame-geometry policy: every frame is processed at its own size; only the MP4 has a fixed size.

The model sees each frame as decoded (an image folder's images at their own sizes, a stream's frames before
and after a resolution change), so masks, mask PNGs and JSONL boxes are in that frame's own pixels (each JSONL
record says its ``size``). The annotated MP4 keeps the first frame's size, rounded up to even (H.264 4:2:0):
a frame of any other size is scaled by :func:`fit` -- aspect ratio kept, centred, black bars -- never cropped
or stretched; a box ``(x0, y0, x1, y1)`` of a ``w x h`` frame lies at ``(x + s*x0, y + s*y0, ...)`` in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Placement:
    """Where a frame goes inside a canvas: scale ``scale``, top-left ``(x, y)``, scaled size ``width x height``."""

    scale: float
    x: int
    y: int
    width: int
    height: int


def even_size(width: int, height: int) -> tuple[int, int]:
    """The smallest even size that holds ``width x height`` (H.264 4:2:0 needs even sides; 1 px clips work)."""
    return width + width % 2, height + height % 2


def fit(width: int, height: int, canvas_width: int, canvas_height: int) -> Placement:
    """Scale ``width x height`` to fit the canvas with its aspect ratio kept, centred."""
    if 0 <= canvas_width - width <= 1 and 0 <= canvas_height - height <= 1:  # an odd side padded to even
        return Placement(1.0, 0, 0, width, height)
    scale = min(canvas_width / width, canvas_height / height)
    w = min(canvas_width, max(1, round(width * scale)))
    h = min(canvas_height, max(1, round(height * scale)))
    return Placement(scale, (canvas_width - w) // 2, (canvas_height - h) // 2, w, h)


def place(image: np.ndarray, canvas_width: int, canvas_height: int) -> np.ndarray:
    """``image`` (H, W, 3) on a black ``canvas_width x canvas_height`` canvas as :func:`fit` says."""
    height, width = image.shape[:2]
    if (width, height) == (canvas_width, canvas_height):
        return image
    spot = fit(width, height, canvas_width, canvas_height)
    canvas = np.zeros((canvas_height, canvas_width, 3), dtype=np.uint8)
    if (spot.width, spot.height) == (width, height):
        scaled = image
    else:
        shrink = spot.width < width
        scaled = cv2.resize(image, (spot.width, spot.height),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    canvas[spot.y: spot.y + spot.height, spot.x: spot.x + spot.width] = scaled
    return canvas
