"""The one preprocessing path: training, every runtime backend and calibration call these.

Frames are RGB ``uint8`` arrays ``(H, W, 3)``. The model input is ``float32`` ``(3, h, w)`` at
the contract's size, normalized as ``(pixel - mean) / std``. :func:`preprocess_torch` is the same
transform for batches already on a torch device (the CUDA path uploads ``uint8`` and resizes and
normalizes there).

Geometry (:class:`InputPlan`, made by :func:`plan_input` / :func:`plan_frame`): where the contract asks for it,
the frame is cropped to the endoscope's field of view (:mod:`polyp_live.train.fov`) and the crop is scaled to fit
the input with its aspect ratio kept, centred, the rest black (letterbox); :func:`to_frame` maps a map at the input
size (logits, probabilities) back onto the whole frame. Without either, the plan is the whole frame squashed to
the input size, exactly the transform of models trained before field-of-view cropping.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from polyp_live.train.contract import ModelContract
from polyp_live.train.fov import FieldOfView, field_of_view_or_whole
from polyp_live.train.yuv import Yuv420, yuv_to_rgb

if TYPE_CHECKING:
    import torch

_CV2_INTERPOLATION = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


def _check_frame(frame: np.ndarray | Yuv420) -> None:
    if isinstance(frame, Yuv420):
        return
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", None)
        raise ValueError(f"expected an RGB uint8 frame of shape (H, W, 3), got {got}")


@dataclass(frozen=True)
class InputPlan:
    """How one frame becomes the model's input: crop to ``fov``, resize to ``size`` ``(h, w)``, place at ``offset``
    ``(top, left)`` in the ``input_size`` canvas (black elsewhere). ``frame`` is the frame's ``(height, width)``."""

    frame: tuple[int, int]
    fov: FieldOfView
    size: tuple[int, int]
    offset: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def squashes_whole_frame(self) -> bool:
        """The plain transform: the whole frame resized to the whole input (no crop, no padding)."""
        return self.fov.is_whole(*self.frame) and self.size == self.input_size

    def content(self, array: np.ndarray) -> np.ndarray:
        """The part of an input-size map (last two axes) that shows the field of view (a view, no copy)."""
        (top, left), (h, w) = self.offset, self.size
        return array[..., top : top + h, left : left + w]

    @classmethod
    def identity(cls, contract: ModelContract) -> InputPlan:
        """The plan of a picture already at the input size (nothing to crop, resize or pad)."""
        size = tuple(contract.input_size)
        return cls(size, FieldOfView.whole(*size), size, (0, 0), size)  # type: ignore[arg-type]

    def crop(self, frame: np.ndarray) -> np.ndarray:
        """The field of view of ``frame`` (a view, no copy)."""
        return frame[self.fov.y0 : self.fov.y1, self.fov.x0 : self.fov.x1]


def plan_input(height: int, width: int, contract: ModelContract, fov: FieldOfView | None = None,
               size: tuple[int, int] | None = None) -> InputPlan:
    """The plan for a ``height`` x ``width`` frame whose field of view is ``fov`` (ignored unless the contract crops
    to it; ``None``: the whole frame), into ``size`` (default: the contract's input size)."""
    target = tuple(size or contract.input_size)
    box = fov if contract.field_of_view and fov is not None and fov.fits(height, width) else None
    box = box or FieldOfView.whole(height, width)
    if contract.keep_aspect:
        scale = min(target[0] / box.height, target[1] / box.width)
        h = min(target[0], max(1, round(box.height * scale)))
        w = min(target[1], max(1, round(box.width * scale)))
        offset = ((target[0] - h) // 2, (target[1] - w) // 2)
    else:
        h, w, offset = target[0], target[1], (0, 0)
    return InputPlan((height, width), box, (h, w), offset, target)  # type: ignore[arg-type]


def plan_frame(frame: np.ndarray | Yuv420, contract: ModelContract,
               size: tuple[int, int] | None = None) -> InputPlan:
    """The plan for one image on its own (training, evaluation, calibration): its field of view is detected in it
    when the contract crops (video keeps a stable one: :class:`polyp_live.train.fov.FieldOfViewTracker`)."""
    _check_frame(frame)
    fov = field_of_view_or_whole(frame) if contract.field_of_view else None
    return plan_input(frame.shape[0], frame.shape[1], contract, fov, size)


def _place(resized: np.ndarray, plan: InputPlan, fill: int | float = 0) -> np.ndarray:
    if resized.shape[:2] == plan.input_size:
        return resized
    canvas = np.full((*plan.input_size, *resized.shape[2:]), fill, dtype=resized.dtype)
    (top, left), (h, w) = plan.offset, plan.size
    canvas[top : top + h, left : left + w] = resized
    return canvas


def resize_frame(frame: np.ndarray | Yuv420, contract: ModelContract, plan: InputPlan | None = None) -> np.ndarray:
    """A frame as the model sees it (RGB ``uint8``, HWC, the plan's input size): cropped, resized with the
    contract's resize mode, letterboxed. ``plan`` defaults to :func:`plan_frame`. A 4:2:0 frame is cropped and
    resized plane by plane and turned into RGB at the input size: the full frame is never converted."""
    _check_frame(frame)
    plan = plan or plan_frame(frame, contract)
    h, w = plan.size
    interpolation = _CV2_INTERPOLATION[contract.resize]
    if isinstance(frame, Yuv420):
        return _place(_resize_yuv(frame, plan.fov, (h, w), interpolation), plan)
    crop = plan.crop(frame)
    resized = crop if crop.shape[:2] == (h, w) else cv2.resize(crop, (w, h), interpolation=interpolation)
    return _place(resized, plan)


def _resize_yuv(frame: Yuv420, box: FieldOfView, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """The field of view of a 4:2:0 picture at ``size`` in RGB: each plane cropped (the box's corners are even)
    and resized to ``size``, then converted (BT.601 limited, as FFmpeg's RGB)."""
    h, w = size
    y = frame.y[box.y0 : box.y1, box.x0 : box.x1]
    x0, y0, x1, y1 = box.x0 // 2, box.y0 // 2, (box.x1 + 1) // 2, (box.y1 + 1) // 2
    planes = [cv2.resize(p, (w, h), interpolation=interpolation) if p.shape != (h, w) else p
              for p in (y, frame.u[y0:y1, x0:x1], frame.v[y0:y1, x0:x1])]
    return yuv_to_rgb(*planes)


def resize_mask_planned(mask: np.ndarray, plan: InputPlan) -> np.ndarray:
    """A ``{0, 1}`` mask of the frame through the same plan (nearest neighbour; padding is background)."""
    crop = plan.crop(mask)
    h, w = plan.size
    resized = crop if crop.shape[:2] == (h, w) else cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST)
    return _place(resized, plan)


def to_frame(values: np.ndarray, plan: InputPlan, fill: float = 0.0,
             interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """An input-size ``float32`` map (logits, probabilities) -> the whole frame: the field of view's part resized
    onto it (bilinear by default), ``fill`` outside it."""
    return content_to_frame(plan.content(values), plan, fill, interpolation)


def content_to_frame(content: np.ndarray, plan: InputPlan, fill: float = 0.0,
                     interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """The field of view's part of a map (``plan.content(map)``, the plan's ``size``) -> the whole frame."""
    height, width = plan.frame
    if plan.squashes_whole_frame:
        if content.shape == (height, width):
            return content
        return cv2.resize(np.ascontiguousarray(content), (width, height), interpolation=interpolation)
    box = plan.fov
    out = np.full((height, width), fill, dtype=content.dtype)
    patch = content if content.shape == (box.height, box.width) else cv2.resize(
        np.ascontiguousarray(content), (box.width, box.height), interpolation=interpolation)
    out[box.y0 : box.y1, box.x0 : box.x1] = patch
    return out


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


def preprocess(frame: np.ndarray, contract: ModelContract, plan: InputPlan | None = None) -> np.ndarray:
    """One RGB ``uint8`` frame -> model input ``float32`` ``(3, h, w)``."""
    return normalize(resize_frame(frame, contract, plan), contract)


def preprocess_batch(frames: Sequence[np.ndarray], contract: ModelContract,
                     plans: Sequence[InputPlan] | None = None) -> np.ndarray:
    """RGB ``uint8`` frames (any sizes) -> ``float32`` ``(N, 3, h, w)``; ``plans`` default to :func:`plan_frame`."""
    height, width = contract.input_size
    batch = np.empty((len(frames), 3, height, width), dtype=np.float32)
    for i, frame in enumerate(frames):
        normalize(resize_frame(frame, contract, plans[i] if plans is not None else None), contract, out=batch[i])
    return batch


def normalize_batch(pixels: Sequence[np.ndarray], contract: ModelContract) -> np.ndarray:
    """Frames already as the model sees them (:func:`resize_frame`, the input size) -> ``float32`` ``(N, 3, h, w)``."""
    height, width = contract.input_size
    batch = np.empty((len(pixels), 3, height, width), dtype=np.float32)
    for i, image in enumerate(pixels):
        if image.shape[:2] != (height, width):
            raise ValueError(f"expected pixels at the input size {height}x{width}, "
                             f"got {image.shape[1]}x{image.shape[0]}")
        normalize(image, contract, out=batch[i])
    return batch


def preprocess_torch(
    frames_nhwc: torch.Tensor, contract: ModelContract, dtype: torch.dtype | None = None,
    plans: Sequence[InputPlan] | None = None,
) -> torch.Tensor:
    """The same transform on a ``uint8`` ``(N, H, W, 3)`` tensor on any device -> ``(N, 3, h, w)``.

    The resize reproduces OpenCV's ``cv2.resize`` for the contract's mode (see
    :func:`resize_weights`) as two matrix products in float64, then rounds to whole grey levels as
    OpenCV's ``uint8`` output does, so the GPU path feeds the model the same pixels as the CPU path
    (to within OpenCV's fixed-point rounding: at most one grey level). ``plans`` (one per frame) crop and letterbox
    as :func:`resize_frame` does; without them every frame is squashed whole (the training path: its images are
    letterboxed when they are cached).
    """
    import torch

    if frames_nhwc.dtype != torch.uint8 or frames_nhwc.ndim != 4 or frames_nhwc.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (N, H, W, 3), got {tuple(frames_nhwc.shape)} {frames_nhwc.dtype}")
    dtype = dtype or torch.float32
    if plans is None or all(plan.squashes_whole_frame for plan in plans):
        x = _resize_torch(frames_nhwc.permute(0, 3, 1, 2), tuple(contract.input_size), contract.resize)
    else:
        x = torch.cat([_planned_torch(frames_nhwc[i], plan, contract.resize) for i, plan in enumerate(plans)])
    mean, std = _mean_std(contract.mean, contract.std, x.device)
    return ((x.float() - mean) / std).to(dtype)


def _resize_torch(x: torch.Tensor, size: tuple[int, int], resize: str) -> torch.Tensor:
    """``(N, 3, H, W)`` -> ``(N, 3, h, w)`` whole grey levels (float64), or ``x`` itself when the size fits."""
    import torch

    in_h, in_w = int(x.shape[-2]), int(x.shape[-1])
    if (in_h, in_w) == size:
        return x
    out_h, out_w = size
    area = resize == "area" and in_h >= out_h and in_w >= out_w
    mode = "area" if area else ("area-up" if resize == "area" else "linear")
    wy = _weights_on(in_h, out_h, mode, x.device)
    wx = _weights_on(in_w, out_w, mode, x.device)
    return torch.matmul(torch.matmul(wy, x.double()), wx.transpose(0, 1)).round_().clamp_(0, 255)


def _planned_torch(frame_hwc: torch.Tensor, plan: InputPlan, resize: str) -> torch.Tensor:
    """One frame through its plan on the device: crop (a view), resize, letterbox (black) -> ``(1, 3, h, w)``."""
    import torch

    box = plan.fov
    crop = frame_hwc[box.y0 : box.y1, box.x0 : box.x1].permute(2, 0, 1)[None]
    resized = _resize_torch(crop, plan.size, resize).double()
    canvas = torch.zeros((1, 3, *plan.input_size), dtype=torch.float64, device=frame_hwc.device)
    (top, left), (h, w) = plan.offset, plan.size
    canvas[..., top : top + h, left : left + w] = resized
    return canvas


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
