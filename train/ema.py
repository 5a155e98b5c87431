"""Exponential moving average of a model's weights (``--ema 0.999``).

The average starts as a copy of the model; after each optimizer step every floating-point tensor
of the state dict (parameters and BatchNorm statistics) moves toward the model's by
``1 - decay``; integer buffers are copied. The trainer evaluates and saves the averaged model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        src = model.state_dict()
        floats_dst, floats_src = [], []
        for name, dst in self.module.state_dict().items():
            if dst.is_floating_point():
                floats_dst.append(dst)
                floats_src.append(src[name].detach())
            else:
                dst.copy_(src[name])
        if floats_dst:
            torch._foreach_lerp_(floats_dst, floats_src, 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
