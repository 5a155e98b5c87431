"""What devices this machine has, asked through torch (imported lazily; CPU-only torch is fine).

The one home of the device-name rule (``auto``, ``cpu``, ``cuda``, ``cuda:N``): training, the engines
and the benchmarks all resolve ``--device`` through :func:`resolve_device`.
"""

from __future__ import annotations

from dataclasses import dataclass

from polyp_live.train.errors import DeviceError, DeviceUnavailableError


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
    """``"auto"`` -> ``"cuda:0"`` when a GPU is present else ``"cpu"``; ``"cuda"`` -> ``"cuda:0"``; validated.

    Raises :class:`~polyp_live.train.errors.DeviceError` for a bad name and its subclass
    :class:`~polyp_live.train.errors.DeviceUnavailableError` for a CUDA GPU this machine does not have.
    """
    text = str(device).strip().lower()
    if text == "auto":
        return "cuda:0" if cuda_available() else "cpu"
    if text == "cpu":
        return "cpu"
    if text == "cuda" or text.startswith("cuda:"):
        index_text = text.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise DeviceError(f"bad device {device!r}; use auto, cpu, cuda or cuda:N")
        if gpu_info(int(index_text)) is None:
            raise DeviceUnavailableError(f"device {device!r} requested but no such CUDA GPU is available here")
        return f"cuda:{int(index_text)}"
    raise DeviceError(f"bad device {device!r}; use auto, cpu, cuda or cuda:N")
