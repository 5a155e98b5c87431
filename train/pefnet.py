"""PEFNet: an encoder (ConvNeXt or EfficientNet-Lite), a UNet-style decoder, Multi-Kernel Positional Embedding.

Nguyen-Mau et al., "PEFNet: Positional Embedding Feature for Polyp Segmentation" /
"Multi Kernel Positional Embedding ConvNeXt for Polyp Segmentation" (RIVF 2022).

Decoder, from the deepest feature, for each skip (strides 16, 8, 4):
``ConvTranspose 4x4/2 + BN + SiLU`` to the skip's width, add the skip, a Multi-Kernel block,
then an MPE block (Multi-Kernel block + fixed 2D sinusoidal positional embedding, paper Eq. 1).
After the stride-4 skip one more up block to half the width (stride 2), an MPE block, a 1x1
head and a x2 bilinear upsample give logits at the input size. The forward pass returns
logits; callers apply the sigmoid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_PE_CACHE_LIMIT = 16


def sinusoidal_embedding_2d(channels: int, height: int, width: int) -> np.ndarray:
    """Fixed 2D sinusoidal positional embedding, shape ``(channels, height, width)``, float32.

    The first half of the channels encodes the column (x), the second half the row (y), each as
    interleaved ``sin(pos / 10000^(2k/d)), cos(...)`` pairs with ``d = channels / 2`` (paper Eq. 1,
    the 2D form of Vaswani et al.). Channels that do not fill a pair stay zero. A pure function of
    its arguments, so the embedding is a constant for a given input size.
    """
    half = channels // 2
    pairs = half // 2
    out = np.zeros((channels, height, width), dtype=np.float64)
    if pairs == 0:
        return out.astype(np.float32)
    freq = 1.0 / (10000.0 ** (np.arange(pairs, dtype=np.float64) * 2.0 / half))
    xs = np.arange(width, dtype=np.float64)[None, :] * freq[:, None]  # (pairs, W)
    ys = np.arange(height, dtype=np.float64)[None, :] * freq[:, None]  # (pairs, H)
    out[0 : 2 * pairs : 2] = np.sin(xs)[:, None, :]
    out[1 : 2 * pairs : 2] = np.cos(xs)[:, None, :]
    out[half : half + 2 * pairs : 2] = np.sin(ys)[:, :, None]
    out[half + 1 : half + 2 * pairs : 2] = np.cos(ys)[:, :, None]
    return out.astype(np.float32)


class ConvBNAct(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.SiLU(inplace=True),
        )


class MultiKernelBlock(nn.Module):
    """Sum of 1x1, 3x3 and 5x5 conv-BN-SiLU branches at the same width."""

    def __init__(self, channels: int, kernels: Sequence[int] = (1, 3, 5)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(ConvBNAct(channels, channels, k) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


class MPEBlock(nn.Module):
    """Multi-Kernel block, then add the fixed sinusoidal positional embedding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.mk = MultiKernelBlock(channels)
        self._pe: dict[tuple[int, int, str, torch.dtype], torch.Tensor] = {}

    def positional_embedding(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        key = (int(height), int(width), str(like.device), like.dtype)
        pe = self._pe.get(key)
        if pe is None:
            if len(self._pe) >= _PE_CACHE_LIMIT:
                self._pe.clear()
            array = sinusoidal_embedding_2d(self.channels, int(height), int(width))
            pe = torch.from_numpy(array).unsqueeze(0).to(device=like.device, dtype=like.dtype)
            self._pe[key] = pe
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mk(x)
        return x + self.positional_embedding(x.shape[-2], x.shape[-1], x)


class UpBlock(nn.Sequential):
    """ConvTranspose 4x4 stride 2 (exactly doubles H and W) + BN + SiLU."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.SiLU(inplace=True),
        )


class SkipProjection(nn.Sequential):
    """1x1 conv + BN: brings a skip to the decoder width when the two differ."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))


def _skip(in_ch: int, out_ch: int) -> nn.Module:
    return nn.Identity() if in_ch == out_ch else SkipProjection(in_ch, out_ch)


class DecoderStage(nn.Module):
    """Up block to ``out_ch``, add the (projected) skip, a Multi-Kernel block, an MPE block (or none)."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int | None = None, mpe: bool = True) -> None:
        super().__init__()
        out_ch = skip_ch if out_ch is None else out_ch
        self.up = UpBlock(in_ch, out_ch)
        self.skip = _skip(skip_ch, out_ch)
        self.mk = MultiKernelBlock(out_ch)
        self.mpe: nn.Module = MPEBlock(out_ch) if mpe else nn.Identity()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.mpe(self.mk(self.up(x) + self.skip(skip)))


class PEFNet(nn.Module):
    """Segmentation network; ``forward`` maps ``(N, 3, H, W)`` to logits ``(N, 1, H, W)``.

    ``encoder(x)`` returns features at strides 4, 8, 16, 32 (ConvNeXt) or 2, 4, 8, 16, 32
    (EfficientNet-Lite), ``skip_channels`` wide. ``decoder_widths`` are the decoder's widths at
    strides 16, 8, 4 and 2; by default the skips' own widths and half the stride-4 width, as in the
    paper. A stride-2 feature, when the encoder gives one, is added (projected) before the last MPE
    block. ``mpe=False`` removes every MPE block (the paper's ablation).
    """

    def __init__(self, encoder: nn.Module, skip_channels: Sequence[int],
                 decoder_widths: Sequence[int] | None = None, mpe: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        channels = list(skip_channels)
        if len(channels) not in (4, 5):
            raise ValueError(f"PEFNet needs 4 or 5 encoder levels, got {channels}")
        deep = channels[-4:]  # strides 4, 8, 16, 32
        widths = list(decoder_widths) if decoder_widths else [deep[2], deep[1], deep[0], max(deep[0] // 2, 1)]
        ins = [deep[3], *widths[:2]]
        self.decoder = nn.ModuleList(
            DecoderStage(ins[i], deep[2 - i], widths[i], mpe=mpe) for i in range(3)
        )
        self.has_stride2 = len(channels) == 5
        self.final_up = UpBlock(widths[2], widths[3])
        if self.has_stride2:
            self.final_skip = SkipProjection(channels[0], widths[3])
        self.final_mpe: nn.Module = MPEBlock(widths[3]) if mpe else nn.Identity()
        self.head = nn.Conv2d(widths[3], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        y = features[-1]
        for stage, skip in zip(self.decoder, reversed(features[-4:-1]), strict=True):
            y = stage(y, skip)
        y = self.final_up(y)
        if self.has_stride2:
            y = y + self.final_skip(features[0])
        y = self.head(self.final_mpe(y))
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def millions(count: int) -> float:
    return math.floor(count / 1e4 + 0.5) / 100
