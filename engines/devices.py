"""What devices this machine has, asked through torch (imported lazily; CPU-only torch is fine)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.errors import BackendUnavailableError, EngineError
from train.contract import ModelContract

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    target: str  # compute capability as "sm89"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except RuntimeError:  # a broken driver: treat as no GPU
        return False


def gpu_info(index: int = 0) -> GpuInfo | None:
    """The CUDA GPU ``index``, or None when there is none."""
    if not cuda_available():
        return None
    import torch

    if index >= torch.cuda.device_count():
        return None
    major, minor = torch.cuda.get_device_capability(index)
    return GpuInfo(index, torch.cuda.get_device_name(index), f"sm{major}{minor}")


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda:0"`` when a GPU is present else ``"cpu"``; ``"cuda"`` -> ``"cuda:0"``; validated."""
    text = str(device).strip().lower()
    if text == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise EngineError(f"bad device {device!r}; use auto, cpu, cuda or cuda:N")
        if gpu_info(int(index_text)) is None:
            raise BackendUnavailableError(f"device {device!r} requested but no such CUDA GPU is available here")
        return f"cuda:{int(index_text)}"
    raise EngineError(f"bad device {device!r}; use auto, cpu, cuda or cuda:N")


def device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def gpu_prepare(frames: Sequence[np.ndarray], contract: ModelContract, device: Any, dtype: Any) -> Any:
    """RGB ``uint8`` frames -> ``(N, 3, h, w)`` CUDA tensor of ``dtype`` in ``channels_last``.

    Uploads the ``uint8`` frames (4x less traffic than float32) and resizes and normalizes on the
    GPU with :func:`train.preprocess.preprocess_torch`, the same transform as the CPU path.
    """
    import torch

    from train.preprocess import preprocess_torch

    if len({f.shape for f in frames}) == 1:
        host = torch.from_numpy(np.stack(frames))
        batch = preprocess_torch(host.to(device, non_blocking=True), contract)
    else:
        batch = torch.cat([preprocess_torch(torch.from_numpy(f[None]).to(device), contract) for f in frames])
    return batch.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
