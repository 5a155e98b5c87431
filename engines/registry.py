"""One table from file suffixes to backends, one table of backends, and :func:`open_engine`.

``open_engine("default")`` resolves bundled names through :mod:`polyp_live.train.zoo`, picks the fastest
backend this machine has, and logs what it picked and why:

* ``.safetensors`` on a CUDA machine -> PyTorch FP16 on the GPU;
* ``.safetensors`` on a CPU machine -> ONNX Runtime: the calibrated INT8 model ``NAME.int8.onnx`` beside
  the checkpoint when there is one (the bundled default ships one; ``precision="fp32"`` opts out), else an
  ONNX export made once into a cache keyed by the weights' SHA-256 and input size (:mod:`polyp_live.engines.cache`);
  PyTorch FP32 on the CPU when onnxruntime is missing (the reason is logged);
* ``.onnx`` -> ONNX Runtime (CUDA provider when onnxruntime-gpu is installed);
* ``.engine`` / ``.plan`` -> TensorRT.

Backend modules are imported only when used, so a machine without TensorRT never imports it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from polyp_live.engines.base import Engine
from polyp_live.engines.errors import BackendUnavailableError, EngineError
from polyp_live.train.devices import cuda_available

logger = logging.getLogger(__name__)

SUFFIX_BACKENDS: dict[str, str] = {
    ".safetensors": "torch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}
BACKENDS: dict[str, str] = {
    "torch": "polyp_live.engines.torch_backend:TorchEngine",
    "onnxruntime": "polyp_live.engines.onnxruntime_backend:OnnxRuntimeEngine",
    "tensorrt": "polyp_live.engines.tensorrt_backend:TensorRTEngine",
}


@dataclass(frozen=True)
class EngineOptions:
    """What :func:`open_engine` passes on to a backend's ``load``; ``None``: the backend's default."""

    precision: str | None = None  # fp32 | fp16 | int8
    threads: int | None = None  # CPU threads
    batch: int | None = None  # max batch
    compile: bool | str | None = None  # torch.compile mode
    compile_backend: str | None = None  # torch.compile backend (inductor; "eager" traces only)
    cuda_graphs: bool | None = None
    providers: Sequence[str] | None = None  # ONNX Runtime providers
    warmup: bool | None = None

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> EngineOptions:
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise EngineError(f"unknown engine options {unknown}; valid options: {', '.join(OPTIONS)}")
        return cls(**options)

    def to_kwargs(self) -> dict[str, Any]:
        """The options that are set, as keyword arguments of ``Engine.load``."""
        return {k: v for k, v in asdict(self).items() if v is not None}


OPTIONS = tuple(f.name for f in fields(EngineOptions))


@dataclass(frozen=True)
class EnginePlan:
    """What :func:`open_engine` will open, with which backend, and why."""

    backend: str
    path: Path  # the file given (a checkpoint, even when it runs through an ONNX export)
    via_onnx_cache: bool
    reason: str


def backend_class(name: str) -> type[Engine]:
    """The Engine subclass registered as ``name`` (imported now)."""
    if name not in BACKENDS:
        raise EngineError(f"unknown backend {name!r}; backends: {', '.join(BACKENDS)}")
    module_name, _, class_name = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def available_backends(device: str = "auto") -> dict[str, str | None]:
    """Every backend name -> None when it can run here, else the reason it cannot."""
    return {name: backend_class(name).unavailable_reason(device) for name in BACKENDS}


def resolve_engine_path(path: str | Path) -> Path:
    """A bundled model name, run folder, checkpoint stem or sidecar (:func:`polyp_live.train.zoo.resolve_checkpoint`) or
    a file path -> an existing file with a known suffix."""
    from polyp_live.train.zoo import resolve_checkpoint

    resolved = resolve_checkpoint(path)  # bundled name, run folder, stem, sidecar: one resolver (polyp_live.train.zoo)
    if resolved.suffix.lower() not in SUFFIX_BACKENDS:
        raise EngineError(
            f"{resolved}: unknown model file type {resolved.suffix or '(no suffix)'!r}; "
            f"expected one of {', '.join(SUFFIX_BACKENDS)} or a bundled model name"
        )
    if not resolved.is_file():
        raise EngineError(f"model file not found: {resolved}")
    return resolved


def _auto_choices(natural: str, device: str) -> list[tuple[str, bool, Callable[[], str | None], str]]:
    """Preference list for ``backend="auto"``: (backend, through the ONNX cache, blocker, reason)."""
    if natural != "torch":
        return [(natural, False, lambda: None, f"{natural} runs {natural} files natively")]
    wants_cuda = device.startswith("cuda") or (device == "auto" and cuda_available())

    def no_cuda() -> str | None:
        return None if wants_cuda else "no CUDA GPU"

    def ort_missing() -> str | None:
        return backend_class("onnxruntime").unavailable_reason("cpu")

    return [
        ("torch", False, no_cuda, "a checkpoint on a CUDA machine: PyTorch FP16 on the GPU"),
        ("onnxruntime", True, ort_missing, "a checkpoint on a CPU machine: ONNX Runtime"),
        ("torch", False, lambda: None, "PyTorch FP32 on the CPU"),
    ]


def plan_engine(path: Path, backend: str = "auto", device: str = "auto") -> EnginePlan:
    """Decide the backend for ``path`` (already resolved) without loading anything."""
    natural = SUFFIX_BACKENDS[path.suffix.lower()]
    if backend == "auto":
        skipped = []
        for name, via_cache, blocker, reason in _auto_choices(natural, device):
            why_not = blocker()
            if why_not is None:
                if skipped:
                    reason = f"{reason} ({'; '.join(skipped)})"
                return EnginePlan(name, path, via_cache, reason)
            skipped.append(f"not {name}: {why_not}")
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; backends: auto, {', '.join(BACKENDS)}")
    if backend == natural:
        return EnginePlan(backend, path, False, f"backend {backend} requested")
    if (natural, backend) == ("torch", "onnxruntime"):
        return EnginePlan(backend, path, True, "backend onnxruntime requested for a checkpoint (cached ONNX export)")
    raise EngineError(f"{path}: the {backend} backend cannot open {path.suffix} files; {_conversion_hint(backend)}")


def _conversion_hint(backend: str) -> str:
    hints = {
        "tensorrt": "build an engine first: polyp-export --checkpoint CHECKPOINT --format engine --out model.engine",
        "torch": "the torch backend opens .safetensors checkpoints",
        "onnxruntime": "export one first: polyp-export --checkpoint CHECKPOINT --format onnx --out model.onnx",
    }
    return hints[backend]


def _cpu_onnx(checkpoint: Path, options: EngineOptions) -> tuple[Path, str, EngineOptions]:
    """``(ONNX file, why, options for it)``: what a checkpoint runs as on ONNX Runtime: its calibrated
    ``NAME.int8.onnx`` companion unless ``precision`` asks for fp32/fp16, else a cached export at that
    precision. The checkpoint is read (and its weights hashed) once, here."""
    from polyp_live.engines.cache import cached_onnx, calibrated_companion, companion_path
    from polyp_live.train.checkpoint import read_checkpoint

    info = read_checkpoint(checkpoint)
    precision = options.precision
    if precision in (None, "int8"):
        companion = calibrated_companion(info)
        if companion is not None:
            return companion, f"INT8 from the calibrated {companion.name} beside it", replace(options, precision=None)
        if precision == "int8":
            raise EngineError(
                f"no calibrated INT8 model beside {checkpoint}; make one with: polyp-calibrate --checkpoint "
                f"{checkpoint} --images FRAMES_DIR --target cpu --out {companion_path(checkpoint)}"
            )
    return cached_onnx(info, precision=precision or "fp32"), f"{precision or 'fp32'} ONNX export (cached)", options


def open_engine(path: str | Path = "default", backend: str = "auto", device: str = "auto", **options: Any) -> Engine:
    """Open a model file (or bundled name) with the fastest available backend, warmed up.

    Options (all optional): ``precision`` (fp32 | fp16 | int8), ``threads`` (CPU threads),
    ``batch`` (max batch), ``compile`` (torch.compile mode), ``compile_backend`` (its dynamo backend),
    ``cuda_graphs`` (bool),
    ``providers`` (ONNX Runtime providers).
    """
    opts = EngineOptions.from_kwargs(options)
    resolved = resolve_engine_path(path)
    plan = plan_engine(resolved, backend, device)
    cls = backend_class(plan.backend)
    source = resolved
    if plan.via_onnx_cache:
        reason = cls.unavailable_reason(device)
        if reason:
            raise BackendUnavailableError(f"backend {plan.backend} is not available: {reason}")
        source, why, opts = _cpu_onnx(resolved, opts)
        plan = EnginePlan(plan.backend, plan.path, plan.via_onnx_cache, f"{plan.reason}, {why}")
    logger.info("engine %s: %s backend, because %s", resolved, plan.backend, plan.reason)
    engine = cls.load(source, device=device, **opts.to_kwargs())  # each backend raises BackendUnavailableError itself
    logger.info("engine ready: %s", engine.describe())
    return engine
