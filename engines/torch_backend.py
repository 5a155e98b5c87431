"""PyTorch backend: a ``.safetensors`` checkpoint run eagerly.

CPU: FP32. CUDA: FP16 (or FP32) in ``channels_last``, optionally ``torch.compile`` (``compile=
"max-autotune"`` / ``"reduce-overhead"``) or a manual ``torch.cuda.CUDAGraph`` per batch size
(``cuda_graphs=True``); on CUDA :meth:`TorchEngine.prepare` uploads ``uint8`` frames and runs
:func:`train.preprocess.preprocess_torch` on the GPU. The engine warms up at load so the first
frame is not slow. Verified on the CPU by the engines' tests; the CUDA paths are checked by
``python -m engines.gpu_check`` on a GPU machine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, EngineInfo
from engines.devices import engine_device, gpu_prepare
from engines.errors import BackendUnavailableError, EngineError
from train.errors import CheckpointError

logger = logging.getLogger(__name__)

COMPILE_MODES = ("max-autotune", "reduce-overhead", "default", "max-autotune-no-cudagraphs")
_COMPILE_WITH_GRAPHS = ("max-autotune", "reduce-overhead")  # inductor wraps these in CUDA graphs
DEFAULT_MAX_BATCH = 8


class _CudaGraph:
    """One captured forward pass at a fixed input shape (static input/output buffers)."""

    def __init__(self, model: Any, example: Any) -> None:
        import torch

        self.static_in = example.clone()
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):  # settle cuDNN algorithms and fill the positional-embedding cache
                model(self.static_in)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = model(self.static_in)

    def run(self, x: Any) -> Any:
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, info: EngineInfo, model: Any, device: Any, dtype: Any, cuda_graphs: bool) -> None:
        super().__init__(info)
        self._model = model
        self._device = device
        self._dtype = dtype
        self._use_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], _CudaGraph] = {}

    @classmethod
    def unavailable_reason(cls, device: str = "auto") -> str | None:
        try:
            import torch
        except ImportError:
            return "torch is not installed (pip install torch)"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            return "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
        return None

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> TorchEngine:
        """Options: ``precision`` (fp32 | fp16; default fp16 on CUDA, fp32 on CPU), ``batch`` (max batch),
        ``compile`` (False | True | a torch.compile mode), ``cuda_graphs`` (bool), ``threads`` (CPU)."""
        reason = cls.unavailable_reason(device)
        if reason:
            raise BackendUnavailableError(reason)
        import torch

        from train.checkpoint import load_checkpoint

        target = engine_device(device)
        on_cuda = target.startswith("cuda")
        precision = options.get("precision") or ("fp16" if on_cuda else "fp32")
        if precision not in ("fp32", "fp16"):
            raise EngineError(f"the torch backend runs fp32 or fp16, not {precision!r} (int8: use TensorRT)")
        if precision == "fp16" and not on_cuda:
            raise BackendUnavailableError("torch fp16 needs a CUDA GPU; use precision fp32 on the CPU")
        compile_mode = _compile_mode(options.get("compile"))
        cuda_graphs = bool(options.get("cuda_graphs"))
        if cuda_graphs and not on_cuda:
            raise BackendUnavailableError("CUDA graphs need a CUDA GPU; drop cuda_graphs on the CPU")
        if cuda_graphs and compile_mode in _COMPILE_WITH_GRAPHS:
            logger.info("torch.compile mode %s captures CUDA graphs itself; no manual capture", compile_mode)
            cuda_graphs = False
        if options.get("threads") and not on_cuda:
            torch.set_num_threads(int(options["threads"]))
        try:
            model, contract, ckpt = load_checkpoint(Path(path))
        except CheckpointError as exc:
            raise EngineError(str(exc)) from None
        dtype = torch.float16 if precision == "fp16" else torch.float32
        model = model.to(device=target, dtype=dtype)
        if on_cuda:
            torch.cuda.set_device(torch.device(target))
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        if compile_mode:
            model = torch.compile(model, mode=compile_mode)
        max_batch = int(options.get("batch") or DEFAULT_MAX_BATCH)
        detail = _detail(torch.__version__, compile_mode, cuda_graphs, ckpt.weights_sha256)
        info = EngineInfo(
            backend=cls.name,
            device=target,
            precision=precision,
            source=str(path),
            contract=contract,
            max_batch=max_batch,
            preferred_batch=1,
            gpu_preprocess=on_cuda,
            detail=detail,
        )
        engine = cls(info, model, torch.device(target), dtype, cuda_graphs)
        if options.get("warmup", True):
            engine.warmup(3 if compile_mode else 2)
        return engine

    @property
    def on_cuda(self) -> bool:
        return self._device.type == "cuda"

    def prepare(self, frames: Sequence[np.ndarray]) -> Any:
        """CPU: the NumPy preprocessing. CUDA: upload ``uint8`` frames, resize and normalize on the GPU."""
        if not self.on_cuda:
            return super().prepare(frames)
        return gpu_prepare(frames, self.contract, self._device, self._dtype)

    def _to_input(self, x: Any) -> Any:
        import torch

        x = x.to(device=self._device, dtype=self._dtype, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.on_cuda else x.contiguous()

    def infer(self, batch: Any) -> np.ndarray:
        import torch

        if self._closed:
            raise EngineError("engine is closed")
        x = torch.from_numpy(np.ascontiguousarray(batch)) if isinstance(batch, np.ndarray) else batch
        self.check_input_shape(tuple(x.shape))
        x = self._to_input(x)
        with torch.inference_mode():
            if self._use_graphs:
                out = self._graph_for(x).run(x)
            else:
                out = self._model(x)
            return out.float().cpu().numpy()

    def _graph_for(self, x: Any) -> _CudaGraph:
        key = tuple(x.shape)
        graph = self._graphs.get(key)
        if graph is None:
            logger.info("capturing a CUDA graph for input %s", key)
            graph = _CudaGraph(self._model, x)
            self._graphs[key] = graph
        return graph

    def close(self) -> None:
        self._graphs.clear()
        self._model = None
        super().close()


def _compile_mode(value: Any) -> str | None:
    if value in (None, False, "", "none", "off"):
        return None
    mode = "max-autotune" if value is True or value == "on" else str(value)
    if mode not in COMPILE_MODES:
        raise EngineError(f"compile mode {mode!r} is not one of {list(COMPILE_MODES)}")
    return mode


def _detail(version: str, compile_mode: str | None, cuda_graphs: bool, sha: str) -> str:
    parts = [f"torch {version}"]
    if compile_mode:
        parts.append(f"compile={compile_mode}")
    if cuda_graphs:
        parts.append("CUDA graphs")
    parts.append(f"weights {sha[:12]}")
    return ", ".join(parts)
