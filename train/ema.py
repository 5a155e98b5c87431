"""Exponential moving average of a model's weights (``--ema 0.999``).

The average starts as a copy of the model; after each optimizer step every floating-point tensor
of the state dict (parameters and BatchNorm statistics) moves toward the model's by
``1 - decay``; integer buffers are copied. The trainer evaluates and saves the averaged model.
The tensor pairs are collected at the first update (no per-step ``state_dict()`` walk), so move
the model to its device before the first update.
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
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]] | None
        self._pairs = None
        self._source: nn.Module | None = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._pairs is None or self._source is not model:
            self._bind(model)
        floats_dst, floats_src, others = self._pairs  # type: ignore[misc]
        if floats_dst:
            torch._foreach_lerp_(floats_dst, floats_src, 1.0 - self.decay)
        for dst, src in others:
            dst.copy_(src)

    def _bind(self, model: nn.Module) -> None:
        """Pair up the tensors once (the optimizer and load_state_dict update them in place)."""
        src = model.state_dict(keep_vars=True)
        floats_dst, floats_src, others = [], [], []
        for name, dst in self.module.state_dict(keep_vars=True).items():
            if dst.is_floating_point():
                floats_dst.append(dst.data)
                floats_src.append(src[name].data)
            else:
                others.append((dst.data, src[name].data))
        self._pairs = (floats_dst, floats_src, others)
        self._source = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)  # copies in place: the tensor pairs stay valid
