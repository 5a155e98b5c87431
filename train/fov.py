"""The endoscope's field of view: where the endoscope's picture is inside a frame's black borders and UI.

Endoscopy towers send 16:9 frames (720p, 1080p) with a near-square endoscope image (an octagon, a circle or a
rounded rectangle) beside black borders, text, and coloured panels (a green scope-position panel on some); data
set images (Kvasir-SEG, CVC-ClinicDB) keep black corners and burnt-in text. The model should see the endoscope's
picture, uncropped and unsquashed: :mod:`polyp_live.train.preprocess` crops to the field of view found here and
letterboxes it into the model's square input, and maps the mask back to the whole frame.

How it is found (:func:`detect_field_of_view`, one image; about 0.1 ms at 1080p): the frame is looked at through
a strided view about :data:`ANALYSIS_WIDTH` pixels wide (no resize of the full frame); a pixel is *picture* when
its brightest channel exceeds :data:`DARK_LEVEL` and it is not a saturated UI colour (green/cyan/blue panels, where
green or blue exceeds red by :data:`UI_MARGIN`: mucosa under white light is red-dominant); a 3x3 opening removes
text strokes; the largest 8-connected component's box, grown by one analysis pixel and aligned to even pixels
(YUV 4:2:0 planes crop there exactly), is the field of view. Nothing sensible (the component covers less than
:data:`MIN_AREA` of the frame, or fills less than :data:`MIN_FILL` of its own box) gives ``None``: the caller
uses the whole frame.

On video, :class:`FieldOfViewTracker` keeps it stable: it detects on a decaying maximum of recent frames (a dark
moment inside the lumen does not shrink it), moves only when a different box is seen
:data:`CONFIRM_DETECTIONS` times in a row (a tower switching layout, another scope), and falls back to the whole
frame, with one log line, when nothing sensible is found that often.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from polyp_live.train.yuv import Yuv420, strided_rgb

logger = logging.getLogger(__name__)

ANALYSIS_WIDTH = 192  # the analysis view is about this wide: the stride is width // ANALYSIS_WIDTH
DARK_LEVEL = 32  # brightest channel at or below this: border (black borders measure 0-23 in the data sets here)
UI_MARGIN = 60  # green or blue this far above red: a UI panel's colour, not mucosa
MIN_AREA = 0.10  # a field of view covers at least this fraction of the frame
MIN_FILL = 0.5  # ... and its picture fills at least this fraction of its box (circle 0.79, octagon ~0.85)
SAME_IOU = 0.9  # two boxes with at least this IoU are the same field of view (no move: no jitter)
CONFIRM_DETECTIONS = 3  # a different box (or none) seen this many times in a row replaces the current one
DECAY = 0.8  # the tracker's memory: a pixel bright in an earlier frame counts with this weight per frame


@dataclass(frozen=True)
class FieldOfView:
    """The endoscope's picture inside a frame: a half-open box in frame pixels, corners at even coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if not (0 <= self.x0 < self.x1 and 0 <= self.y0 < self.y1):
            raise ValueError(f"field of view {self} is empty or negative")

    @classmethod
    def whole(cls, height: int, width: int) -> FieldOfView:
        return cls(0, 0, width, height)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def is_whole(self, height: int, width: int) -> bool:
        return (self.x0, self.y0, self.x1, self.y1) == (0, 0, width, height)

    def fits(self, height: int, width: int) -> bool:
        return self.x1 <= width and self.y1 <= height

    def iou(self, other: FieldOfView) -> float:
        ix = max(0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union else 0.0

    def to_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


def _stride(width: int) -> int:
    return max(1, width // ANALYSIS_WIDTH)


def picture_map(image: np.ndarray | Yuv420) -> tuple[np.ndarray, int]:
    """``uint8`` {0, 1} map of picture pixels in the strided analysis view, and the stride (an RGB frame or the
    decoder's 4:2:0 planes: only the looked-at pixels are converted)."""
    if isinstance(image, Yuv420):
        step = _stride(image.width)
        view = strided_rgb(image, step)
    else:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {image.shape} {image.dtype}")
        step = _stride(image.shape[1])
        view = image[::step, ::step]
    # per channel, not view.max(axis=2): NumPy reduces a 3-long last axis ~20x slower than two maximum() calls
    red, green, blue = (view[..., c].astype(np.int16) for c in range(3))
    green_blue = np.maximum(green, blue)
    bright = np.maximum(green_blue, red) > DARK_LEVEL
    ui = green_blue > red + UI_MARGIN
    return (bright & ~ui).astype(np.uint8), step


def box_of_picture(picture: np.ndarray, step: int, height: int, width: int) -> FieldOfView | None:
    """The field of view in a picture map (see the module docstring), in frame pixels, or ``None``."""
    opened = cv2.morphologyEx(picture, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    if count < 2:
        return None
    label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[label])
    map_h, map_w = picture.shape
    if w * h < MIN_AREA * map_h * map_w or area < MIN_FILL * w * h:
        return None
    x0 = max(0, (x - 1) * step) // 2 * 2
    y0 = max(0, (y - 1) * step) // 2 * 2
    x1 = min(width, _even_up((x + w + 1) * step))
    y1 = min(height, _even_up((y + h + 1) * step))
    return FieldOfView(x0, y0, x1, y1)


def _even_up(value: int) -> int:
    return value + (value % 2)


def detect_field_of_view(image: np.ndarray | Yuv420) -> FieldOfView | None:
    """The endoscope's field of view in one frame (RGB ``uint8`` or 4:2:0), or ``None`` when nothing sensible is
    found."""
    picture, step = picture_map(image)
    return box_of_picture(picture, step, image.shape[0], image.shape[1])


def field_of_view_or_whole(image: np.ndarray | Yuv420) -> FieldOfView:
    """:func:`detect_field_of_view`, or the whole frame when it finds nothing (single images: training, evaluation)."""
    found = detect_field_of_view(image)
    return found if found is not None else FieldOfView.whole(image.shape[0], image.shape[1])


class FieldOfViewTracker:
    """A video's field of view, stable from frame to frame (see the module docstring). Not thread-safe: one per
    stream, updated by the one thread that preprocesses it."""

    def __init__(self, confirm: int = CONFIRM_DETECTIONS, decay: float = DECAY, name: str = "") -> None:
        self.confirm = confirm
        self.decay = decay
        self.name = name
        self._memory: np.ndarray | None = None
        self._size: tuple[int, int] | None = None
        self._current: FieldOfView | None = None
        self._candidate: FieldOfView | None = None
        self._seen = 0
        self._missed = 0
        self.changes = 0  # how often the field of view moved after the first frame (layout changes)
        self.fallbacks = 0  # how often it fell back to the whole frame

    @property
    def current(self) -> FieldOfView | None:
        return self._current

    def reset(self) -> None:
        self._memory, self._size, self._current, self._candidate = None, None, None, None
        self._seen = self._missed = 0

    def update(self, image: np.ndarray | Yuv420) -> FieldOfView:
        """This frame's field of view (the stable one), after looking at the frame (RGB or 4:2:0)."""
        height, width = image.shape[:2]
        if self._size != (height, width):
            self.reset()
            self._size = (height, width)
        picture, step = picture_map(image)
        if self._memory is None or self._memory.shape != picture.shape:
            self._memory = picture.astype(np.float32)
        else:
            np.maximum(self._memory * self.decay, picture, out=self._memory)
        found = box_of_picture((self._memory >= 0.5).astype(np.uint8), step, height, width)
        whole = FieldOfView.whole(height, width)
        if self._current is None:  # the first frame of a stream (or of a new frame size): take what is there
            self._current = found or whole
            if found is None:
                self.fallbacks += 1
                logger.info("%sno endoscope field of view found in the first frame (%dx%d); the whole frame is used "
                            "until one is", self._prefix(), width, height)
            return self._current
        target = found or whole
        if target.iou(self._current) >= SAME_IOU:
            self._candidate, self._seen = None, 0
            return self._current
        if self._candidate is not None and target.iou(self._candidate) >= SAME_IOU:
            self._seen += 1
        else:
            self._candidate, self._seen = target, 1
        if self._seen >= self.confirm:
            self._current, self._candidate, self._seen = target, None, 0
            if found is None:
                self.fallbacks += 1
                logger.warning("%sno endoscope field of view found for %d frames; using the whole %dx%d frame",
                               self._prefix(), self.confirm, width, height)
            else:
                self.changes += 1
                logger.info("%sendoscope field of view changed to x %d-%d, y %d-%d of %dx%d", self._prefix(),
                            target.x0, target.x1, target.y0, target.y1, width, height)
        return self._current

    def _prefix(self) -> str:
        return f"{self.name}: " if self.name else ""
