"""The paper's augmentations, batched in torch on the training device (CPU or CUDA, same code).

PEFNet trains with center crop, random rotation, grid distortion, cutout, horizontal and vertical
flips and a resize to the input size. Here every geometric step is folded into ONE sampling grid
per sample, applied with :func:`torch.nn.functional.grid_sample` to the image (bilinear) and to the
mask (bilinear, then threshold 0.5), so image and mask stay aligned by construction and the whole
batch is augmented on the GPU (the trainer must not be input-bound). albumentations is not used.

For an output pixel at normalized coordinates ``p`` (``[-1, 1]``, ``align_corners=False``) the
source position is ``centre + scale * R(angle) * (flip * p) + d(p)``:

* crop: a random square window of ``scale`` in ``crop_scale`` of the source side, centred at a
  random ``centre`` that keeps the window inside the image (``scale = 1`` is the full image);
* rotation: ``angle`` uniform in ``±rotate_deg`` with probability ``rotate_p``; corners outside
  the source read zeros in the image and background in the mask;
* flips: each axis with probability 0.5;
* grid distortion: a smooth displacement ``d`` (a ``grid_cells``-square grid of offsets uniform in
  ``±distort * cell size``, upsampled bilinearly), with probability ``distort_p``;
* the grid has the output size, so the resize happens in the same sampling.

Cutout zeroes ``cutout_holes`` random rectangles (sides up to ``cutout_size`` of the output side)
in the IMAGE ONLY, with probability ``cutout_p``: the mask keeps the polyp, teaching the model to
fill in occluded parts. Pixel value 0 is black in the ``uint8`` image, i.e. -1 after normalization.

The output image is ``uint8`` NHWC (rounded), so the trainer normalizes it with
:func:`polyp_live.train.preprocess.preprocess_torch` exactly as at inference time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.75, 1.0)
    rotate_deg: float = 30.0
    rotate_p: float = 0.5
    flip_p: float = 0.5
    distort: float = 0.3
    distort_p: float = 0.3
    grid_cells: int = 5
    cutout_holes: int = 4
    cutout_size: float = 0.15
    cutout_p: float = 0.5
    color_jitter: float = 0.0  # brightness / contrast / saturation each scaled by 1 ± this (0: off)
    color_p: float = 0.8
    white_balance: float = 0.0  # per-channel gains 1 ± this: light sources and processors (FICE, LCI) (0: off)

    def describe(self) -> str:
        jitter = f", colour jitter ±{self.color_jitter:g} p={self.color_p:g}" if self.color_jitter > 0 else ""
        if self.white_balance > 0:
            jitter += f", white balance ±{self.white_balance:g} p={self.color_p:g}"
        return (
            f"crop {self.crop_scale[0]:g}-{self.crop_scale[1]:g}, rotate ±{self.rotate_deg:g}° p={self.rotate_p:g}, "
            f"hflip/vflip p={self.flip_p:g}, grid distortion {self.distort:g} p={self.distort_p:g}, "
            f"cutout {self.cutout_holes}x{self.cutout_size:g} p={self.cutout_p:g} (image only), resize"
        ) + jitter


NO_AUGMENT = AugmentConfig(crop_scale=(1.0, 1.0), rotate_p=0.0, flip_p=0.0, distort_p=0.0, cutout_p=0.0)


def _uniform(n: int, low: float, high: float, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device, generator=gen)


def _bernoulli(n: int, p: float, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, device=device, generator=gen) < p).float()


def sampling_grid(n: int, size: tuple[int, int], cfg: AugmentConfig, gen: torch.Generator | None,
                  device: torch.device) -> torch.Tensor:
    """The ``(n, h, w, 2)`` grid (x, y in ``[-1, 1]``) combining crop, rotation, flips and distortion."""
    h, w = size
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * (2.0 / w) - 1.0
    base_y, base_x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w)
    scale = _uniform(n, cfg.crop_scale[0], cfg.crop_scale[1], gen, device)
    cx = _uniform(n, -1.0, 1.0, gen, device) * (1.0 - scale)
    cy = _uniform(n, -1.0, 1.0, gen, device) * (1.0 - scale)
    angle = _uniform(n, -cfg.rotate_deg, cfg.rotate_deg, gen, device) * math.pi / 180.0
    angle = angle * _bernoulli(n, cfg.rotate_p, gen, device)
    fx = 1.0 - 2.0 * _bernoulli(n, cfg.flip_p, gen, device)
    fy = 1.0 - 2.0 * _bernoulli(n, cfg.flip_p, gen, device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    px = base_x[None] * fx[:, None, None]
    py = base_y[None] * fy[:, None, None]
    s = scale[:, None, None]
    gx = cx[:, None, None] + s * (cos[:, None, None] * px - sin[:, None, None] * py)
    gy = cy[:, None, None] + s * (sin[:, None, None] * px + cos[:, None, None] * py)
    grid = torch.stack((gx, gy), dim=-1)
    if cfg.distort_p > 0 and cfg.distort > 0:
        cells = max(int(cfg.grid_cells), 2)
        amplitude = cfg.distort * 2.0 / cells
        coarse = (torch.rand((n, 2, cells, cells), device=device, generator=gen) * 2.0 - 1.0) * amplitude
        coarse = coarse * _bernoulli(n, cfg.distort_p, gen, device)[:, None, None, None]
        field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def cutout_mask(n: int, size: tuple[int, int], cfg: AugmentConfig, gen: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """``(n, h, w)`` bool, True where cutout zeroes the image."""
    h, w = size
    k = max(int(cfg.cutout_holes), 1)
    hh = (torch.rand((n, k), device=device, generator=gen) * cfg.cutout_size * h).long() + 1
    ww = (torch.rand((n, k), device=device, generator=gen) * cfg.cutout_size * w).long() + 1
    y0 = (torch.rand((n, k), device=device, generator=gen) * h).long()
    x0 = (torch.rand((n, k), device=device, generator=gen) * w).long()
    on = (torch.rand((n, 1), device=device, generator=gen) < cfg.cutout_p)
    ys = torch.arange(h, device=device)[None, None, :]
    xs = torch.arange(w, device=device)[None, None, :]
    in_y = (ys >= y0[..., None]) & (ys < (y0 + hh)[..., None])  # (n, k, h)
    in_x = (xs >= x0[..., None]) & (xs < (x0 + ww)[..., None])  # (n, k, w)
    holes = (in_y[..., :, None] & in_x[..., None, :] & on[..., None, None]).any(dim=1)
    return holes


def augment_batch(images: torch.Tensor, masks: torch.Tensor, size: tuple[int, int], cfg: AugmentConfig,
                  gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch on its device.

    ``images``: ``uint8`` ``(N, H, W, 3)``; ``masks``: ``uint8`` ``(N, H, W)`` holding ``0..255``
    (threshold 128) or ``{0, 1}`` (pass ``masks * 255``). Returns ``uint8`` ``(N, h, w, 3)`` images and
    ``float32`` ``{0, 1}`` ``(N, 1, h, w)`` masks at ``size = (h, w)``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {tuple(images.shape)} {images.dtype}")
    if masks.shape != images.shape[:3]:
        raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")
    n, device = images.shape[0], images.device
    grid = sampling_grid(n, size, cfg, gen, device)
    x = images.permute(0, 3, 1, 2).float()
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = masks.unsqueeze(1).float()
    warped_mask = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    target = (warped_mask >= 127.5).float()
    out = warped.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    if cfg.cutout_p > 0 and cfg.cutout_holes > 0 and cfg.cutout_size > 0:
        holes = cutout_mask(n, size, cfg, gen, device)
        out = out.masked_fill(holes[..., None], 0)
    if cfg.color_jitter > 0 and cfg.color_p > 0:
        out = color_jitter(out, cfg, gen)
    if cfg.white_balance > 0 and cfg.color_p > 0:
        out = white_balance(out, cfg, gen)
    return out, target


def color_jitter(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None) -> torch.Tensor:
    """Random brightness, contrast and saturation per sample (``uint8`` NHWC in and out), image only.

    Colonoscopes differ in white balance and exposure; the mask is untouched.
    """
    n, device, j = images.shape[0], images.device, cfg.color_jitter
    on = _bernoulli(n, cfg.color_p, gen, device)[:, None, None, None]
    factors = [1.0 + on * _uniform(n, -j, j, gen, device)[:, None, None, None] for _ in range(3)]
    x = images.float() * factors[0]
    grey = x.mean(dim=(1, 2, 3), keepdim=True)
    x = grey + (x - grey) * factors[1]
    luma = x.mean(dim=3, keepdim=True)
    x = luma + (x - luma) * factors[2]
    return x.round_().clamp_(0, 255).to(torch.uint8)


def white_balance(images: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None) -> torch.Tensor:
    """Random per-channel gains ``1 ± cfg.white_balance`` per sample (``uint8`` NHWC in and out), image only.

    Towers differ in light source and colour processing (white light, FICE, LCI: yellow to orange casts); a
    brightness/contrast/saturation jitter keeps the hue, this moves it. The mask is untouched.
    """
    n, device, j = images.shape[0], images.device, cfg.white_balance
    on = _bernoulli(n, cfg.color_p, gen, device)[:, None]
    gains = 1.0 + on * (2.0 * torch.rand(n, 3, device=device, generator=gen) - 1.0) * j
    x = images.float() * gains[:, None, None, :]
    return x.round_().clamp_(0, 255).to(torch.uint8)
