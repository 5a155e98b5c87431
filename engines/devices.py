"""Device helpers of the engines; what devices this machine has, and the device-name rule, is
:mod:`polyp_live.train.devices`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from polyp_live.engines.errors import BackendUnavailableError, EngineError
from polyp_live.train.contract import ModelContract
from polyp_live.train.devices import resolve_device
from polyp_live.train.errors import DeviceError, DeviceUnavailableError

if TYPE_CHECKING:
    from polyp_live.train.preprocess import InputPlan

logger = logging.getLogger(__name__)


def engine_device(device: str = "auto") -> str:
    """:func:`polyp_live.train.devices.resolve_device` with the engines' errors: a CUDA GPU this machine lacks is a
    :class:`BackendUnavailableError`, a bad name an :class:`EngineError`."""
    try:
        return resolve_device(device)
    except DeviceUnavailableError as exc:
        raise BackendUnavailableError(str(exc)) from None
    except DeviceError as exc:
        raise EngineError(str(exc)) from None


def device_index(device: str) -> int:
    return int(device.partition(":")[2] or 0)


def gpu_prepare(frames: Sequence[np.ndarray], contract: ModelContract, device: Any, dtype: Any,
                plans: Sequence[InputPlan] | None = None) -> Any:
    """RGB ``uint8`` frames -> ``(N, 3, h, w)`` CUDA tensor of ``dtype`` in ``channels_last``.

    Uploads the ``uint8`` frames (4x less traffic than float32) and crops, resizes, letterboxes and normalizes on
    the GPU with :func:`polyp_live.train.preprocess.preprocess_torch`, the same transform as the CPU path.
    ``plans`` default to :func:`polyp_live.train.preprocess.plan_frame` per frame, as on the CPU.
    """
    import torch

    from polyp_live.train.preprocess import plan_frame, preprocess_torch

    if plans is None:
        plans = [plan_frame(frame, contract) for frame in frames]
    if len({f.shape for f in frames}) == 1 and all(plan.squashes_whole_frame for plan in plans):
        host = torch.from_numpy(np.stack(frames))
        batch = preprocess_torch(host.to(device, non_blocking=True), contract)
    else:
        batch = torch.cat([preprocess_torch(torch.from_numpy(f[None]).to(device), contract, plans=[plan])
                           for f, plan in zip(frames, plans, strict=True)])
    return batch.to(dtype=dtype).contiguous(memory_format=torch.channels_last)
