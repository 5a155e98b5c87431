"""What ``--resume`` needs beside ``OUT/last``: the learning-rate schedule and the training state files.

``last.state.safetensors`` holds tensors only (model weights as ``model.*``, the EMA as ``ema.*``,
the optimizer's per-parameter state as ``optim.<index>.<name>``); ``last.state.json`` holds the
rest (epoch, schedule, optimizer hyper-parameters, best score, history). Nothing is pickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polyp_live.train.errors import CheckpointError
from polyp_live.train.zoo import STATE_SUFFIX

STATE_FORMAT = "polyp-live.train-state/1"


class CosineSchedule:
    """Per-step learning rate: linear warm-up over ``warmup_steps``, then cosine annealing from ``base_lr``
    to ``base_lr * min_ratio`` at ``total_steps``."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, min_ratio: float, total_steps: int,
                 warmup_steps: int = 0) -> None:
        self.optimizer, self.base_lr, self.min_ratio = optimizer, base_lr, min_ratio
        self.total_steps, self.step_count = max(int(total_steps), 1), 0
        self.warmup_steps = max(int(warmup_steps), 0)
        self._apply()

    def lr(self) -> float:
        if self.step_count < self.warmup_steps:
            return self.base_lr * (self.step_count + 1) / (self.warmup_steps + 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min((self.step_count - self.warmup_steps) / span, 1.0)
        low = self.base_lr * self.min_ratio
        return low + (self.base_lr - low) * 0.5 * (1.0 + math.cos(math.pi * t))

    def _apply(self) -> None:
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def rebuild(self, total_steps: int) -> None:
        self.total_steps = max(int(total_steps), 1)
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "min_ratio": self.min_ratio, "total_steps": self.total_steps,
                "step_count": self.step_count, "warmup_steps": self.warmup_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total_steps, self.step_count = int(state["total_steps"]), int(state["step_count"])
        self.warmup_steps = int(state.get("warmup_steps", 0))
        self._apply()


def state_paths(last: str | Path) -> tuple[Path, Path]:
    """``(OUT/last.state.safetensors, OUT/last.state.json)`` for ``OUT/last`` (any checkpoint spelling)."""
    base = Path(last).with_suffix("") if Path(last).suffix in (".safetensors", ".json") else Path(last)
    return base.with_name(base.name + STATE_SUFFIX + ".safetensors"), base.with_name(base.name + STATE_SUFFIX + ".json")


def write_state(last: str | Path, groups: dict[str, dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
                meta: dict[str, Any]) -> None:
    """Write the state files (tensors first, each through a temporary name)."""
    from polyp_live.train.checkpoint import _jsonable

    tensors_path, json_path = state_paths(last)
    tensors = {f"{group}.{k}": v for group, state in groups.items() for k, v in state.items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = tensors_path.with_name(tensors_path.name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(tensors_path)
    payload = {"format": STATE_FORMAT, **meta, "param_groups": opt["param_groups"]}
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1) + "\n", encoding="utf-8")
    tmp.replace(json_path)


def read_state_meta(last: str | Path) -> dict[str, Any]:
    """The JSON half of the state; missing or foreign files raise :class:`CheckpointError`."""
    tensors_path, json_path = state_paths(last)
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise CheckpointError(f"cannot resume: {path} not found (written beside OUT/last by polyp-train)")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{json_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{json_path}: not a polyp-live training state ({STATE_FORMAT})")
    return meta


def read_state(last: str | Path, optimizer: torch.optim.Optimizer, device: torch.device) -> dict[str, dict[str, Any]]:
    """Load the optimizer state into ``optimizer``; return the other tensor groups (``model``, ``ema``)."""
    tensors_path, _ = state_paths(last)
    meta = read_state_meta(last)
    try:
        tensors = load_file(str(tensors_path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{tensors_path}: not a readable safetensors file ({exc})") from None
    groups: dict[str, dict[str, Any]] = {}
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        group, rest = key.split(".", 1)
        if group == "optim":
            index, name = rest.split(".", 1)
            optim_state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
        else:
            groups.setdefault(group, {})[rest] = value
    try:
        optimizer.load_state_dict({"state": optim_state, "param_groups": meta["param_groups"]})
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{tensors_path}: optimizer state does not fit this model ({exc})") from None
    return groups
