"""EfficientNet-Lite encoder (Tan & Le, 2019; the Lite variants of the TensorFlow release), written here.

Lite = EfficientNet without squeeze-excitation, with ReLU6, and with the stem (32 channels), the
first and the last stage and the head (1280 channels) kept fixed while width and depth scale.
Convolutions pad as TensorFlow's ``"same"``: symmetric at stride 1, asymmetric (more at the
bottom/right) at stride 2, so ImageNet weights converted from the TensorFlow release behave as
they were trained. BatchNorm eps is TensorFlow's 1e-3.

Module names are our own (``stem``, ``blocks.i.{expand,dw,project}``, ``head``, ``classifier``);
:mod:`polyp_live.train.pretrained` renames the common PyTorch port's keys (``_conv_stem``, ``_blocks.N...``)
onto them. The encoder returns the stride 2/4/8/16/32 feature pyramid; the ImageNet head lives in
:class:`EfficientNetLiteClassifier`, which exists to prove an import right (a real photograph is
classified) and is not part of the segmentation model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from polyp_live.train.convnext import DropPath

BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class StageArgs:
    """One stage of the EfficientNet-B0 layout before scaling."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int


# EfficientNet-B0 (= Lite0) stages; the stride-2 levels end after stages 0, 1, 2, 4 and 6.
B0_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 16),
    StageArgs(2, 3, 2, 6, 24),
    StageArgs(2, 5, 2, 6, 40),
    StageArgs(3, 3, 2, 6, 80),
    StageArgs(3, 5, 1, 6, 112),
    StageArgs(4, 5, 2, 6, 192),
    StageArgs(1, 3, 1, 6, 320),
)
PYRAMID_STAGES = (0, 1, 2, 4, 6)  # stage index whose output is the stride 2, 4, 8, 16, 32 feature


@dataclass(frozen=True)
class LiteScaling:
    """Width and depth multipliers of one Lite model (the resolution it was trained at is informative)."""

    width: float
    depth: float
    imagenet_size: int


LITE_SCALING: dict[str, LiteScaling] = {
    "lite0": LiteScaling(1.0, 1.0, 224),
    "lite1": LiteScaling(1.0, 1.1, 240),
    "lite2": LiteScaling(1.1, 1.2, 260),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's ``round_filters``: scale, round to a multiple of 8, never below 90 %."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def stage_plan(width: float, depth: float) -> list[tuple[StageArgs, int, int]]:
    """``(args, repeats, out_channels)`` per stage; the first and last stage keep their repeats (Lite)."""
    plan = []
    last = len(B0_STAGES) - 1
    for i, args in enumerate(B0_STAGES):
        repeats = args.repeats if i in (0, last) else math.ceil(depth * args.repeats)
        plan.append((args, repeats, round_filters(args.out_channels, width)))
    return plan


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow ``"same"`` padding for inputs whose sides divide by the stride."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)
        total = max(kernel - stride, 0)
        self._pad = (total // 2, total - total // 2) * 2  # (left, right, top, bottom)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self._pad):
            x = F.pad(x, self._pad)
        return self._conv_forward(x, self.weight, self.bias)


class ConvBNReLU6(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        layers: list[nn.Module] = [SameConv2d(in_ch, out_ch, kernel, stride, groups),
                                   nn.BatchNorm2d(out_ch, eps=BN_EPS)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (unless ratio 1) -> depthwise kxk -> 1x1 project; residual when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, drop_path: float) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand: nn.Module = ConvBNReLU6(in_ch, mid, 1) if expand != 1 else nn.Identity()
        self.dw = ConvBNReLU6(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNReLU6(mid, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + self.drop_path(y) if self.residual else y


class EfficientNetLiteEncoder(nn.Module):
    """``forward`` returns the features at strides 2, 4, 8, 16 and 32 (``self.channels`` wide)."""

    def __init__(self, name: str, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if name not in LITE_SCALING:
            raise ValueError(f"unknown EfficientNet-Lite {name!r}; valid: {', '.join(LITE_SCALING)}")
        scaling = LITE_SCALING[name]
        plan = stage_plan(scaling.width, scaling.depth)
        total = sum(repeats for _, repeats, _ in plan)
        self.stem = ConvBNReLU6(3, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        self._taps: list[int] = []  # index of the block after which a pyramid level ends
        in_ch = STEM_CHANNELS
        for stage, (args, repeats, out_ch) in enumerate(plan):
            for r in range(repeats):
                rate = drop_path_rate * len(blocks) / total
                blocks.append(MBConv(in_ch, out_ch, args.kernel, args.stride if r == 0 else 1, args.expand, rate))
                in_ch = out_ch
            if stage in PYRAMID_STAGES:
                self._taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.channels = tuple(plan[s][2] for s in PYRAMID_STAGES)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        taps = iter(self._taps)
        tap = next(taps)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == tap:
                features.append(x)
                tap = next(taps, -1)
        return features


class EfficientNetLiteClassifier(nn.Module):
    """The ImageNet classifier (encoder + 1x1 head + pooling + linear): used to check imported weights."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.encoder = EfficientNetLiteEncoder(name)
        self.head = ConvBNReLU6(self.encoder.channels[-1], HEAD_CHANNELS, 1)
        self.classifier = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(self.encoder(x)[-1])
        return self.classifier(features.mean(dim=(2, 3)))

