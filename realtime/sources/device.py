"""Capture devices (V4L2 through OpenCV); the V4L2 path needs a camera and is checked here only for its
error messages.
"""

from __future__ import annotations

import logging
import os
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2

from polyp_live.realtime.errors import SourceDisconnected, SourceError, SourceUnavailable
from polyp_live.realtime.sources.base import Source
from polyp_live.realtime.types import Frame, SourceInfo

logger = logging.getLogger(__name__)


MAX_DEVICE_INDEX = 255  # V4L2 numbers /dev/video0 .. /dev/video255


class CaptureDeviceSource(Source):
    """A V4L2 capture device through OpenCV (MJPG when offered, 1-frame driver buffer).

    The pipeline's capture thread is the reader thread: it reads continuously and keeps only the
    newest frame (a latest-wins queue), so frames never pile up in the driver or in the pipeline.
    A failed read raises :class:`SourceDisconnected`; wrap in :class:`ReconnectingSource` to reconnect.
    """

    def __init__(self, device: str | int, resolution: tuple[int, int] | None = None, fps: float | None = None) -> None:
        super().__init__()
        self.device = device
        self.resolution = resolution
        self.fps = fps
        self._cap: Any = None
        self._index = 0
        self._t0: float | None = None

    def _check_node(self) -> None:
        if isinstance(self.device, int):
            return
        node = Path(self.device)
        if not node.exists():
            raise SourceUnavailable(f"capture device {node} not found (connected? list them with: ls /dev/video*)")
        if not os.access(node, os.R_OK | os.W_OK):
            raise SourceError(f"no permission to open {node}; add your user to the 'video' group and log in again")

    def open(self) -> SourceInfo:
        self._check_node()
        try:
            cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        except (cv2.error, OverflowError, TypeError) as exc:
            raise SourceError(f"cannot open capture device {self.device}: {exc}") from None
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f"cannot open capture device {self.device} (in use by another program, or not a "
                                    "camera)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if self.resolution:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.resolution[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.resolution[1])
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, probe = cap.read()
        if not ok or probe is None:
            cap.release()
            raise SourceUnavailable(f"capture device {self.device} opened but gives no frames (busy or unsupported "
                                    "format)")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS) or self.fps or 30.0
        self._info = SourceInfo(
            description=str(self.device), width=probe.shape[1], height=probe.shape[0], fps=float(fps), live=True,
            time_base=Fraction(1, 1000), rate=Fraction(float(fps)).limit_denominator(1001),
        )
        if self._t0 is None:
            self._t0 = time.monotonic()
        return self._info

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceDisconnected(f"capture device {self.device} is closed")
        start = time.monotonic()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise SourceDisconnected(f"capture device {self.device} stopped delivering frames")
        now = time.monotonic()
        frame = Frame(self._index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), now - (self._t0 or now), now, now - start)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def device_node(spec: str) -> str | int:
    """``--device``: a device node path or an index 0..MAX_DEVICE_INDEX (one-line :class:`SourceError` else)."""
    text = spec.strip()
    if not text:
        raise SourceError("--device needs a capture device, e.g. /dev/video0 or 0 (list them with: ls /dev/video*)")
    if text.isdigit():
        if int(text) > MAX_DEVICE_INDEX:
            raise SourceError(f"capture device index {text} is out of range 0..{MAX_DEVICE_INDEX} "
                              "(list the devices with: ls /dev/video*)")
        return int(text)
    return spec
