"""Pictures as decoders and encoders hold them: 8-bit YUV 4:2:0 (I420), so that full-HD frames need not make two
round trips through RGB at full resolution on their way from the decoder to the encoder.

:class:`Yuv420` wraps PyAV's ``to_ndarray(format="yuv420p")`` buffer (``(H * 3 // 2, W)``: the Y plane, then U and
V at half size) and gives its planes as views. Colours follow what PyAV/FFmpeg's ``rgb24`` conversion does for
video that does not say otherwise: ITU-R BT.601, limited range (Y 16-235, U/V 16-240), measured here on the bundled
clips (mean difference to FFmpeg's RGB about one grey level, from chroma interpolation and rounding).

Only what needs RGB converts, and only as many pixels as it needs: the model's input is made from the planes at
the input size (:func:`polyp_live.train.preprocess.resize_frame`), the field of view is found on a strided look
(:func:`strided_rgb`), and the viewer, PNG outputs and thumbnails call :meth:`Yuv420.to_rgb`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# BT.601 limited range: RGB = M @ (Y - 16, U - 128, V - 128)
_TO_RGB = np.array([[1.164383, 0.0, 1.596027],
                    [1.164383, -0.391762, -0.812968],
                    [1.164383, 2.017232, 0.0]], dtype=np.float32)
_TO_YUV = np.array([[0.256788, 0.504129, 0.097906],
                    [-0.148223, -0.290993, 0.439216],
                    [0.439216, -0.367788, -0.071427]], dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Yuv420:
    """One 8-bit 4:2:0 picture of even width and height (an I420 buffer, read-only by convention)."""

    data: np.ndarray  # uint8 (H * 3 // 2, W)

    def __post_init__(self) -> None:
        if self.data.dtype != np.uint8 or self.data.ndim != 2 or self.data.shape[0] % 3 or self.data.shape[1] % 2:
            raise ValueError(f"expected an I420 uint8 buffer (H * 3 / 2, W) with even sides, got {self.data.shape}")
        if (self.data.shape[0] * 2 // 3) % 2:
            raise ValueError(f"a 4:2:0 picture needs an even height, got {self.data.shape[0] * 2 // 3}")

    @classmethod
    def from_planes(cls, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> Yuv420:
        h, w = y.shape
        data = np.empty((h * 3 // 2, w), np.uint8)
        data[:h] = y
        flat = data[h:].reshape(-1)
        flat[: u.size] = u.reshape(-1)
        flat[u.size :] = v.reshape(-1)
        return cls(data)

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> Yuv420:
        """RGB ``uint8`` (even sides) -> 4:2:0 (chroma averaged over 2x2)."""
        return cls(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420))

    @property
    def height(self) -> int:
        return self.data.shape[0] * 2 // 3

    @property
    def width(self) -> int:
        return self.data.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def y(self) -> np.ndarray:
        return self.data[: self.height]

    def _chroma(self, which: int) -> np.ndarray:
        h, w = self.height // 2, self.width // 2
        flat = self.data[self.height :].reshape(-1)
        return flat[which * h * w : (which + 1) * h * w].reshape(h, w)

    @property
    def u(self) -> np.ndarray:
        return self._chroma(0)

    @property
    def v(self) -> np.ndarray:
        return self._chroma(1)

    def copy(self) -> Yuv420:
        return Yuv420(self.data.copy())

    def to_rgb(self) -> np.ndarray:
        """The whole picture in RGB ``uint8`` (OpenCV's I420 conversion: BT.601 limited, as FFmpeg's)."""
        return cv2.cvtColor(self.data, cv2.COLOR_YUV2RGB_I420)


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Planes of one size (4:4:4) -> RGB ``uint8`` ``(h, w, 3)``, BT.601 limited range."""
    stacked = np.stack([y.astype(np.float32) - 16.0, u.astype(np.float32) - 128.0, v.astype(np.float32) - 128.0],
                       axis=-1)
    return np.clip(stacked @ _TO_RGB.T + 0.5, 0, 255).astype(np.uint8)


def rgb_to_yuv(color: tuple[int, int, int]) -> tuple[int, int, int]:
    """One RGB colour -> its limited-range (Y, U, V)."""
    y, u, v = _TO_YUV @ np.asarray(color, np.float32)
    return round(float(y) + 16), round(float(u) + 128), round(float(v) + 128)


def strided_rgb(picture: Yuv420, step: int) -> np.ndarray:
    """A small RGB view of the picture, every ``step``-th pixel (the field-of-view look), without converting the
    rest."""
    y = picture.y[::step, ::step]
    rows = np.arange(y.shape[0]) * step // 2  # the chroma sample of every looked-at pixel (any step, odd too)
    cols = np.arange(y.shape[1]) * step // 2
    at = np.ix_(rows, cols)
    return yuv_to_rgb(y, picture.u[at], picture.v[at])
