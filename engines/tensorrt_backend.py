"""TensorRT backend: a serialized plan (``.engine`` / ``.plan``) built by ``polyp-export --format engine``.

Before TensorRT sees the plan, its sidecar (:mod:`polyp_live.engines.sidecar`) is validated and checked
against this machine: plan SHA-256, TensorRT flavour and version, GPU architecture; any mismatch
is one line saying how to rebuild. Then the plan is deserialized with the flavour that built it
(``tensorrt`` or ``tensorrt_rtx``, see :mod:`polyp_live.engines.trt_flavours`), device I/O buffers are
preallocated as torch CUDA tensors at the maximum batch, and each batch runs with
``execute_async_v3`` on the engine's own CUDA stream, optionally replayed from a CUDA graph
captured per batch size. ``prepare`` uploads ``uint8`` frames and preprocesses on the GPU.

Written from the TensorRT Python API; the sidecar checks are tested on the CPU, the runtime path
only on a GPU machine (tests marked ``gpu``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.engines.base import Engine, EngineInfo
from polyp_live.engines.devices import device_index, engine_device, gpu_prepare
from polyp_live.engines.errors import BackendUnavailableError, EngineError
from polyp_live.engines.onnx_format import INPUT_NAME, OUTPUT_NAME
from polyp_live.engines.sidecar import EngineSidecar, check_loadable, read_sidecar
from polyp_live.engines.trt_flavours import FLAVOURS, import_flavour, installed_flavours, make_logger
from polyp_live.train.devices import cuda_available, gpu_info
from polyp_live.train.hashing import sha256_file
from polyp_live.train.preprocess import InputPlan

logger = logging.getLogger(__name__)

_TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16"}


@dataclass
class _Runtime:
    """TensorRT's objects for one deserialized plan, kept alive together (the context needs the engine,
    the engine the runtime; the logger must outlive all three)."""

    runtime: Any
    engine: Any
    context: Any
    stream: Any  # torch.cuda.Stream
    input: Any  # torch CUDA tensor (max batch, 3, h, w)
    output: Any  # torch CUDA tensor (max batch, 1, h, w)
    device: Any  # torch.device
    logger: Any

    def release(self) -> None:
        """Drop everything: the TensorRT objects in dependency order (context, engine, runtime), then the
        stream and the device buffers."""
        self.context = self.engine = self.runtime = None
        self.stream = self.input = self.output = self.logger = None


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, info: EngineInfo, parts: _Runtime, sidecar: EngineSidecar, cuda_graphs: bool) -> None:
        super().__init__(info)
        self._parts = parts
        self._sidecar = sidecar
        self._use_graphs = cuda_graphs
        self._graphs: dict[int, Any] = {}

    @classmethod
    def unavailable_reason(cls, device: str = "auto") -> str | None:
        if not installed_flavours():
            packages = " or ".join(f.pip_package for f in FLAVOURS.values())
            return f"TensorRT is not installed (pip install {packages})"
        if str(device) == "cpu":
            return "TensorRT runs on a CUDA GPU only (device cpu requested)"
        if not cuda_available():
            return "TensorRT needs a CUDA GPU and a CUDA build of torch (torch.cuda.is_available() is False)"
        return None

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> TensorRTEngine:
        """Options: ``cuda_graphs`` (bool), ``precision`` (checked against the sidecar)."""
        path = Path(path)
        if not path.is_file():
            raise EngineError(f"engine file not found: {path}")
        sidecar = read_sidecar(path)
        _check_requested_precision(path, sidecar, options.get("precision"))
        try:
            module = import_flavour(sidecar.flavour)
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{path}: {exc}, or {sidecar.rebuild_hint(path)}") from None
        if str(device) == "cpu":
            raise BackendUnavailableError(f"{path}: TensorRT engines run on a CUDA GPU, not on device cpu")
        index = device_index(str(device)) if str(device).startswith("cuda") else 0
        gpu = gpu_info(index)
        check_loadable(
            path, sidecar, plan_sha256=sha256_file(path), flavour=module.__name__,
            version=module.__version__, gpu_target=gpu.target if gpu else None,
        )
        if gpu is None:
            raise BackendUnavailableError(f"{path}: TensorRT engines run on a CUDA GPU; none is available here")
        target_device = engine_device(f"cuda:{index}")
        parts = _deserialize(module, path, sidecar, target_device)
        info = EngineInfo(
            backend=cls.name,
            device=target_device,
            precision=sidecar.precision,
            source=str(path),
            contract=sidecar.contract,
            max_batch=sidecar.batch.max,
            preferred_batch=sidecar.batch.opt,
            gpu_preprocess=True,
            detail=f"{sidecar.flavour} {module.__version__} on {gpu.name} ({gpu.target})",
        )
        engine = cls(info, parts, sidecar, bool(options.get("cuda_graphs")))
        if options.get("warmup", True):
            engine.warmup(2)
        return engine

    def prepare(self, frames: Sequence[np.ndarray], plans: Sequence[InputPlan] | None = None) -> Any:
        """Upload ``uint8`` frames and preprocess on the GPU into the engine's input dtype."""
        return gpu_prepare(frames, self.contract, self._parts.device, self._parts.input.dtype, plans)

    def infer(self, batch: Any) -> np.ndarray:
        import torch

        if self._closed:
            raise EngineError("engine is closed")
        self.check_input_shape(tuple(batch.shape))
        count = int(batch.shape[0])
        parts = self._parts
        stream = parts.stream
        source = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
        stream.wait_stream(torch.cuda.current_stream(parts.device))  # a prepared batch comes from that stream
        with torch.cuda.stream(stream):
            rows = count if self._sidecar.batch.dynamic else self._sidecar.batch.max
            parts.input[:count].copy_(source, non_blocking=True)
            if self._sidecar.batch.dynamic:
                parts.context.set_input_shape(INPUT_NAME, (rows, 3, *self.contract.input_size))
            self._execute(rows)
            result = parts.output[:count].float().cpu()
        stream.synchronize()
        return result.numpy()

    def _execute(self, rows: int) -> None:
        context, stream = self._parts.context, self._parts.stream
        if not self._use_graphs:
            if not context.execute_async_v3(stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
            return
        graph = self._graphs.get(rows)
        if graph is None:
            graph = self._capture(rows)
        graph.replay()

    def _capture(self, rows: int) -> Any:
        """Capture one enqueue at ``rows`` as a CUDA graph (after a plain run so TensorRT allocates first)."""
        import torch

        context, stream = self._parts.context, self._parts.stream
        if not context.execute_async_v3(stream.cuda_stream):
            raise EngineError("TensorRT execute_async_v3 failed before CUDA graph capture")
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            context.execute_async_v3(stream.cuda_stream)
        logger.info("captured a CUDA graph of the TensorRT engine at batch %d", rows)
        self._graphs[rows] = graph
        return graph

    def close(self) -> None:
        self._graphs.clear()
        self._parts.release()
        super().close()


def _check_requested_precision(path: Path, sidecar: EngineSidecar, wanted: str | None) -> None:
    if wanted and wanted != sidecar.precision:
        raise EngineError(f"{path} is a {sidecar.precision} engine but precision {wanted} was asked for")


def _deserialize(module: Any, path: Path, sidecar: EngineSidecar, device: str) -> _Runtime:
    import torch

    torch_device = torch.device(device)
    torch.cuda.set_device(torch_device)
    trt_logger = make_logger(module)
    runtime = module.Runtime(trt_logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        hint = sidecar.rebuild_hint(path)
        raise EngineError(f"{path}: TensorRT could not deserialize the plan (see its log); {hint}")
    context = engine.create_execution_context()
    if context is None:
        raise EngineError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")
    h, w = sidecar.contract.input_size
    rows = sidecar.batch.max
    buffers = {
        INPUT_NAME: torch.empty((rows, 3, h, w), dtype=_torch_dtype(module, engine, INPUT_NAME), device=torch_device),
        OUTPUT_NAME: torch.empty((rows, 1, h, w), dtype=_torch_dtype(module, engine, OUTPUT_NAME), device=torch_device),
    }
    for name, tensor in buffers.items():
        context.set_tensor_address(name, tensor.data_ptr())
    if not sidecar.batch.dynamic:
        context.set_input_shape(INPUT_NAME, (rows, 3, h, w))
    return _Runtime(
        runtime=runtime,
        engine=engine,
        context=context,
        stream=torch.cuda.Stream(device=torch_device),
        input=buffers[INPUT_NAME],
        output=buffers[OUTPUT_NAME],
        device=torch_device,
        logger=trt_logger,
    )


def _torch_dtype(module: Any, engine: Any, name: str) -> Any:
    import torch

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if name not in names:
        raise EngineError(f"the engine has no tensor {name!r} (tensors: {names}); rebuild it with polyp-export")
    dtype = engine.get_tensor_dtype(name)
    key = next((k for k, v in module.DataType.__members__.items() if v == dtype), str(dtype))
    if key not in _TORCH_DTYPES:
        raise EngineError(f"engine tensor {name!r} has dtype {key}; polyp-live engines use float32 or float16 I/O")
    return getattr(torch, _TORCH_DTYPES[key])
