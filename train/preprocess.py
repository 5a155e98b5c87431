"""The one preprocessing path: training, every runtime backend and calibration call these.

Frames are RGB ``uint8`` arrays ``(H, W, 3)``. The model input is ``float32`` ``(3, h, w)`` at
the contract's size, normalized as ``(pixel - mean) / std``. :func:`preprocess_torch` is the same
transform for batches already on a torch device (the CUDA path uploads ``uint8`` and resizes and
normalizes there).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from polyp_live.train.contract import ModelContract

if TYPE_CHECKING:
    import torch

_CV2_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", None)
        raise ValueError(f"expected an RGB uint8 frame of shape (H, W, 3), got {got}")


def resize_frame(frame: np.ndarray, contract: ModelContract) -> np.ndarray:
    """Resize an RGB ``uint8`` frame to the contract's input size (still ``uint8``, HWC)."""
    _check_frame(frame)
    height, width = contract.input_size
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=_CV2_INTERPOLATION[contract.resize])


def _scale_offset(contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    std = np.asarray(contract.std, dtype=np.float32)
    mean = np.asarray(contract.mean, dtype=np.float32)
    return (1.0 / std).reshape(3, 1, 1), (-mean / std).reshape(3, 1, 1)


def normalize(resized: np.ndarray, contract: ModelContract, out: np.ndarray | None = None) -> np.ndarray:
    """``uint8`` HWC at the input size -> ``float32`` CHW, ``(pixel - mean) / std``."""
    scale, offset = _scale_offset(contract)
    chw = resized.transpose(2, 0, 1)
    if out is None:
        out = np.empty(chw.shape, dtype=np.float32)
    np.multiply(chw, scale, out=out, casting="unsafe")
    out += offset
    return out


def preprocess(frame: np.ndarray, contract: ModelContract) -> np.ndarray:
    """One RGB ``uint8`` frame -> model input ``float32`` ``(3, h, w)``."""
    return normalize(resize_frame(frame, contract), contract)


def preprocess_batch(frames: Sequence[np.ndarray], contract: ModelContract) -> np.ndarray:
    """RGB ``uint8`` frames (any sizes) -> ``float32`` ``(N, 3, h, w)``."""
    height, width = contract.input_size
    batch = np.empty((len(frames), 3, height, width), dtype=np.float32)
    for i, frame in enumerate(frames):
        normalize(resize_frame(frame, contract), contract, out=batch[i])
    return batch


def preprocess_torch(
    frames_nhwc: torch.Tensor, contract: ModelContract, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The same transform on a ``uint8`` ``(N, H, W, 3)`` tensor on any device -> ``(N, 3, h, w)``.

    The resize reproduces OpenCV's ``cv2.resize`` for the contract's mode (see
    :func:`resize_weights`) as two matrix products in float64, then rounds to whole grey levels as
    OpenCV's ``uint8`` output does, so the GPU path feeds the model the same pixels as the CPU path
    (to within OpenCV's fixed-point rounding: at most one grey level).
    """
    import torch

    if frames_nhwc.dtype != torch.uint8 or frames_nhwc.ndim != 4 or frames_nhwc.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got {tuple(frames_nhwc.shape)} {frames_nhwc.dtype}")
    dtype = dtype or torch.float32
    x = frames_nhwc.permute(0, 3, 1, 2)
    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    if (in_h, in_w) != tuple(contract.input_size):
        out_h, out_w = contract.input_size
        area = contract.resize == "area" and in_h >= out_h and in_w >= out_w
        mode = "area" if area else ("area-up" if contract.resize == "area" else "linear")
        wy = _weights_on(in_h, out_h, mode, x.device)
        wx = _weights_on(in_w, out_w, mode, x.device)
        x = torch.matmul(torch.matmul(wy, x.double()), wx.transpose(0, 1)).round_().clamp_(0, 255)
    mean, std = _mean_std(contract.mean, contract.std, x.device)
    return ((x.float() - mean) / std).to(dtype)


def resize_weights(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """``(n_out, n_in)`` float64 matrix that resamples one axis as ``cv2.resize`` does.

    ``area``: OpenCV's INTER_AREA when both axes shrink: each output pixel averages the input
    interval ``[d * s, (d + 1) * s)`` (``s = n_in / n_out``) weighted by overlap. ``area-up``: OpenCV's
    INTER_AREA otherwise (two taps, weight ``(d + 1) - (sx + 1) / s`` on the right pixel). ``linear``:
    INTER_LINEAR with half-pixel centres. Borders are clamped as OpenCV clamps them.
    """
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale  # computed as OpenCV computes it: floor() below depends on the last bit
    if mode == "area":
        for d in range(n_out):
            start, stop = d * scale, (d + 1) * scale
            for j in range(int(np.floor(start)), min(int(np.ceil(stop)), n_in)):
                weights[d, j] = (min(stop, j + 1) - max(start, j)) / scale
        return weights
    for d in range(n_out):
        if mode == "area-up":
            sx = int(np.floor(d * scale))
            fx = float(np.float32((d + 1) - (sx + 1) * inv_scale))
            fx = 0.0 if fx <= 0 else fx - np.floor(fx)
        else:
            pos = float(np.float32((d + 0.5) * scale - 0.5))
            sx = int(np.floor(pos))
            fx = pos - sx
        if sx < 0:
            sx, fx = 0, 0.0
        if sx >= n_in - 1:
            sx, fx = n_in - 1, 0.0
        weights[d, sx] += 1.0 - fx
        if fx:
            weights[d, sx + 1] += fx
    return weights


@functools.lru_cache(maxsize=32)
def _weights_on(n_in: int, n_out: int, mode: str, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(resize_weights(n_in, n_out, mode)).to(device)


@functools.lru_cache(maxsize=32)
def _mean_std(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, 3, 1, 1)`` mean and std on ``device``, made once: a fresh host-to-GPU copy per call would
    synchronize the CPU with the GPU on every batch (a blocking copy waits for the stream)."""
    import torch

    def make(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32).view(1, 3, 1, 1).to(device)

    return make(mean), make(std)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a binary ``{0, 1}`` ``uint8`` mask with nearest-neighbour sampling."""
    if mask.shape[:2] == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def binarize_mask(mask: np.ndarray, level: int = 128) -> np.ndarray:
    """Grey or RGB mask image (JPEG masks included) -> ``uint8`` ``{0, 1}``, foreground at >= level."""
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return (mask >= level).astype(np.uint8)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function for ``float`` arrays (returns ``float32``)."""
    x = np.asarray(logits, dtype=np.float32)
    return (0.5 * (np.tanh(0.5 * x) + 1.0)).astype(np.float32, copy=False)
