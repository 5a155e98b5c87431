"""PyTorch backend: a ``.safetensors`` checkpoint run eagerly.

CPU: FP32. CUDA: FP16 (or FP32) in ``channels_last``, optionally a ``torch.cuda.CUDAGraph`` per batch
size (``cuda_graphs=True``) and/or ``torch.compile`` (``compile="max-autotune"`` / ``"reduce-overhead"`` /
``"default"`` / ``"max-autotune-no-cudagraphs"``); on CUDA :meth:`TorchEngine.prepare` uploads ``uint8``
frames and runs :func:`polyp_live.train.preprocess.preprocess_torch` on the GPU.

``torch.compile`` here: inductor (``compile_backend`` picks another dynamo backend, e.g. ``"eager"`` to
check the tracing alone), static shapes (``dynamic=False``: one compiled graph per batch size, the
recompile limit raised to cover ``1..max_batch``). On CUDA the modes ``max-autotune`` and
``reduce-overhead`` mean inductor's kernels (autotuned, resp. default) replayed from a CUDA graph that
this engine captures per batch size, the same :class:`_CudaGraph` as ``cuda_graphs=True`` (inductor's
own cudagraph trees are per thread and the pipeline infers on its own thread). The engine warms up at
load -- with ``compile`` that is the compile (and capture) of batch 1, timed and logged in one line --
so the first frame is not slow; another batch size compiles on its first call (logged likewise).
Verified on the CPU by the engines' tests; the CUDA paths are checked by ``python -m polyp_live.engines.gpu_check``
and ``benchmarks/gpu_bench.py`` on a GPU machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.engines.base import Engine, EngineInfo
from polyp_live.engines.devices import engine_device, gpu_prepare
from polyp_live.engines.errors import BackendUnavailableError, EngineError
from polyp_live.train.errors import CheckpointError
from polyp_live.train.preprocess import InputPlan

logger = logging.getLogger(__name__)

COMPILE_MODES = ("max-autotune", "reduce-overhead", "default", "max-autotune-no-cudagraphs")
# the modes that mean CUDA graphs -> the inductor mode compiled without its own graphs (this engine captures them)
_INDUCTOR_MODE = {"max-autotune": "max-autotune-no-cudagraphs", "reduce-overhead": "default"}
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

    def __init__(self, info: EngineInfo, model: Any, device: Any, dtype: Any, cuda_graphs: bool,
                 compile_mode: str | None = None) -> None:
        super().__init__(info)
        self._model = model
        self._device = device
        self._dtype = dtype
        self._use_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], _CudaGraph] = {}
        self.compile_mode = compile_mode
        self.compile_seconds: dict[int, float] = {}  # batch size -> seconds of its compile (+ capture), first call
        self._warming_up = False

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
        ``compile`` (False | True | a torch.compile mode), ``compile_backend`` (a dynamo backend; inductor),
        ``cuda_graphs`` (bool), ``threads`` (CPU), ``warmup`` (bool)."""
        reason = cls.unavailable_reason(device)
        if reason:
            raise BackendUnavailableError(reason)
        import torch

        from polyp_live.train.checkpoint import load_checkpoint

        target = engine_device(device)
        on_cuda = target.startswith("cuda")
        precision = options.get("precision") or ("fp16" if on_cuda else "fp32")
        if precision not in ("fp32", "fp16"):
            raise EngineError(f"the torch backend runs fp32 or fp16, not {precision!r} (int8: use TensorRT)")
        if precision == "fp16" and not on_cuda:
            raise BackendUnavailableError("torch fp16 needs a CUDA GPU; use precision fp32 on the CPU")
        compile_mode, cuda_graphs = _graph_options(options, on_cuda)
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
        max_batch = int(options.get("batch") or DEFAULT_MAX_BATCH)
        if compile_mode:
            try:
                model = compile_model(model, compile_mode, max_batch, options.get("compile_backend"))
            except Exception as exc:  # an unknown dynamo backend, a torch without dynamo
                raise EngineError(_compile_failure(compile_mode, "load", exc)) from None
        detail = _detail(torch.__version__, compile_mode, cuda_graphs, ckpt.weights_sha256,
                         options.get("compile_backend"))
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
        engine = cls(info, model, torch.device(target), dtype, cuda_graphs, compile_mode)
        if options.get("warmup", True):
            engine.warmup(3 if compile_mode else 2)
        return engine

    def warmup(self, iterations: int = 2) -> None:
        """A few inferences at batch 1; with ``compile`` the first is the compile, logged with its time."""
        first = self.compile_mode is not None and 1 not in self.compile_seconds
        self._warming_up = True
        try:
            super().warmup(iterations)
        finally:
            self._warming_up = False
        if first:
            logger.info("torch.compile %s: %s compiled%s in %.1f s at load (static shapes, %s%s); other batch "
                        "sizes compile on first use", self.compile_mode, self.describe(),
                        " and captured in a CUDA graph" if self._use_graphs else "", self.compile_seconds[1],
                        "FP16" if self.info.precision == "fp16" else "FP32",
                        ", channels_last" if self.on_cuda else "")

    @property
    def on_cuda(self) -> bool:
        return self._device.type == "cuda"

    def prepare(self, frames: Sequence[np.ndarray], plans: Sequence[InputPlan] | None = None) -> Any:
        """CPU: the NumPy preprocessing. CUDA: upload ``uint8`` frames, resize and normalize on the GPU."""
        if not self.on_cuda:
            return super().prepare(frames, plans)
        return gpu_prepare(frames, self.contract, self._device, self._dtype, plans)

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
            elif self.compile_mode and int(x.shape[0]) not in self.compile_seconds:
                out = self._first_compiled_call(x)
            else:
                out = self._model(x)
            return out.float().cpu().numpy()

    def _first_compiled_call(self, x: Any) -> Any:
        """The first call at a batch size compiles it (static shapes): timed, and an error says what failed."""
        start = time.perf_counter()
        try:
            out = self._model(x)
        except Exception as exc:  # inductor / a missing C++ compiler / a graph dynamo cannot trace
            raise EngineError(_compile_failure(self.compile_mode, tuple(x.shape), exc)) from exc
        self._record_compile(int(x.shape[0]), time.perf_counter() - start)
        return out

    def _graph_for(self, x: Any) -> _CudaGraph:
        key = tuple(x.shape)
        graph = self._graphs.get(key)
        if graph is None:
            logger.info("capturing a CUDA graph for input %s%s", key, " (compiling first)" if self.compile_mode else "")
            start = time.perf_counter()
            try:
                graph = _CudaGraph(self._model, x)
            except Exception as exc:
                if not self.compile_mode:
                    raise
                raise EngineError(_compile_failure(self.compile_mode, key, exc)) from exc
            self._graphs[key] = graph
            if self.compile_mode:
                self._record_compile(key[0], time.perf_counter() - start)
        return graph

    def _record_compile(self, batch: int, seconds: float) -> None:
        self.compile_seconds[batch] = round(seconds, 2)
        if not self._warming_up:  # the load's warm-up logs its own line
            logger.info("torch.compile %s: batch %d compiled%s in %.1f s (its first call)", self.compile_mode, batch,
                        " and captured in a CUDA graph" if self._use_graphs else "", seconds)

    def close(self) -> None:
        self._graphs.clear()
        self._model = None
        super().close()


def _graph_options(options: dict[str, Any], on_cuda: bool) -> tuple[str | None, bool]:
    """``(compile mode or None, capture CUDA graphs)`` from the load options, or a one-line error."""
    compile_mode = _compile_mode(options.get("compile"))
    if options.get("compile_backend") and not compile_mode:
        raise EngineError("compile_backend is an option of compile; give compile=MODE too")
    cuda_graphs = bool(options.get("cuda_graphs"))
    if cuda_graphs and not on_cuda:
        raise BackendUnavailableError("CUDA graphs need a CUDA GPU; drop cuda_graphs on the CPU")
    if on_cuda and compile_mode in _INDUCTOR_MODE:
        cuda_graphs = True  # captured by this engine around the compiled model, one graph per batch size
    return compile_mode, cuda_graphs


def _compile_mode(value: Any) -> str | None:
    if value in (None, False, "", "none", "off"):
        return None
    mode = "max-autotune" if value is True or value == "on" else str(value)
    if mode not in COMPILE_MODES:
        raise EngineError(f"compile mode {mode!r} is not one of {list(COMPILE_MODES)}")
    return mode


def _compile_failure(mode: str | None, where: object, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    at = "at load" if where == "load" else f"at input {where}"
    return (f"torch.compile (mode {mode}) failed {at}: {type(exc).__name__}: {first[:300]}; "
            "open the engine without compile (or compile_backend='eager' to check the tracing alone)")


def compile_model(model: Any, mode: str, max_batch: int, backend: str | None = None) -> Any:
    """``torch.compile`` with static shapes: one graph per batch size (the recompile limit covers
    ``1..max_batch``). The CUDA-graph modes compile without inductor's own graphs (see the module doc)."""
    import torch
    import torch._dynamo

    config = torch._dynamo.config
    limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, limit, max(int(getattr(config, limit)), max_batch + 2))
    if hasattr(config, "fail_on_recompile_limit_hit"):  # past the limit dynamo would run eagerly, silently
        config.fail_on_recompile_limit_hit = True
    backend = backend or "inductor"
    if backend == "inductor":
        return torch.compile(model, mode=_INDUCTOR_MODE.get(mode, mode), dynamic=False)
    return torch.compile(model, backend=backend, dynamic=False)


def _detail(version: str, compile_mode: str | None, cuda_graphs: bool, sha: str, backend: str | None = None) -> str:
    parts = [f"torch {version}"]
    if compile_mode:
        parts.append(f"compile={compile_mode}" + (f" ({backend})" if backend and backend != "inductor" else ""))
    if cuda_graphs:
        parts.append("CUDA graphs")
    parts.append(f"weights {sha[:12]}")
    return ", ".join(parts)
