"""ONNX Runtime backend: the CPU default, and CUDA / TensorRT execution providers with onnxruntime-gpu.

The model contract, precision and batch profile come from the ONNX ``metadata_props``
(:mod:`polyp_live.engines.onnx_format`) written by :func:`polyp_live.engines.onnx_export.export_onnx` (or by
``polyp-calibrate`` for Q/DQ INT8 models). A static batch-B model takes 1..B frames (short batches are padded); a
dynamic one takes 1..max (the ``batch`` option, else the exported maximum). Verified on the CPU by the engines' test
suite.

:func:`default_threads` and :func:`ort_session` are the one home of how polyp-live runs an ONNX model
on ONNX Runtime: the export's parity check and the calibration report's latency rows use them too, so
the latency ``polyp-calibrate`` reports is the latency ``polyp-live`` gets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polyp_live.engines.base import Engine, EngineInfo
from polyp_live.engines.errors import BackendUnavailableError, EngineError
from polyp_live.engines.onnx_format import INPUT_NAME, OUTPUT_NAME, OnnxMetadata, read_onnx_metadata

logger = logging.getLogger(__name__)

_PROVIDER_DEVICE = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda:0",
    "TensorrtExecutionProvider": "cuda:0",
}


CPU_PROVIDERS = ("CPUExecutionProvider",)


def default_threads() -> int:
    """Intra-op threads: every core up to 4 (2 on a 2-core machine); the pipeline's other threads mostly wait."""
    return max(1, min(os.cpu_count() or 1, 4))


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, info: EngineInfo, session: Any, meta: OnnxMetadata, input_dtype: type) -> None:
        super().__init__(info)
        self._session = session
        self._meta = meta
        self._input_dtype = input_dtype
        self._static_batch = None if meta.batch.dynamic else meta.batch.max

    @classmethod
    def unavailable_reason(cls, device: str = "auto") -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime, or onnxruntime-gpu for CUDA)"
        if str(device).startswith("cuda") and "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"
        return None

    @classmethod
    def load(cls, path: Path, *, device: str = "auto", **options: Any) -> OnnxRuntimeEngine:
        """Options: ``threads`` (intra-op threads), ``batch`` (max batch of a dynamic model),
        ``providers`` (explicit ONNX Runtime provider list), ``precision`` (checked against the file)."""
        reason = cls.unavailable_reason(device)
        if reason:
            raise BackendUnavailableError(reason)
        import onnxruntime as ort

        path = Path(path)
        meta = read_onnx_metadata(path)
        wanted = options.get("precision")
        if wanted and wanted != meta.precision:
            raise EngineError(
                f"{path} is a {meta.precision} model but precision {wanted} was asked for; "
                f"export one with polyp-export --format {'onnx-fp16' if wanted == 'fp16' else 'onnx'}"
            )
        threads = int(options.get("threads") or default_threads())
        providers = list(options.get("providers") or _providers(device, ort.get_available_providers()))
        session = ort_session(path, threads, providers)
        used = session.get_providers()[0]
        input_dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
        max_batch = meta.batch.max
        if meta.batch.dynamic and options.get("batch"):
            max_batch = int(options["batch"])
        info = EngineInfo(
            backend=cls.name,
            device=_PROVIDER_DEVICE.get(used, "cpu"),
            precision=meta.precision,
            source=str(path),
            contract=meta.contract,
            max_batch=max_batch,
            preferred_batch=meta.batch.opt,
            detail=f"onnxruntime {ort.__version__}, {used}, {threads} threads",
        )
        engine = cls(info, session, meta, input_dtype)
        if options.get("warmup", True):
            engine.warmup(2)
        return engine

    def infer(self, batch: Any) -> np.ndarray:
        if self._closed:
            raise EngineError("engine is closed")
        x = np.asarray(batch)
        self.check_input_shape(x.shape)
        count = x.shape[0]
        if self._static_batch is not None and count < self._static_batch:
            x = np.concatenate([x, np.repeat(x[-1:], self._static_batch - count, axis=0)], axis=0)
        x = np.ascontiguousarray(x, dtype=self._input_dtype)
        out = self._session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return np.asarray(out[:count], dtype=np.float32)

    def close(self) -> None:
        self._session = None
        super().close()


def _providers(device: str, available: list[str]) -> list[str]:
    text = str(device).lower()
    if text == "cpu":
        return list(CPU_PROVIDERS)
    # TensorRT EP only when asked for with providers=[...]: it builds engines at session start (minutes)
    gpu = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return [*gpu, "CPUExecutionProvider"]


def ort_session(path: str | Path, threads: int | None = None, providers: Sequence[str] = CPU_PROVIDERS) -> Any:
    """An ONNX Runtime session as polyp-live runs every model (``threads`` None: :func:`default_threads`);
    a file ONNX Runtime cannot load is one :class:`EngineError` line."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # no busy-waiting worker threads: on a few cores they starve the pipeline's decode/overlay threads
    # (measured on 2 shared cores: atto 256x256 with 2 spinning threads 180-280 ms, not spinning 110-140 ms)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as exc:  # ORT raises its own exception types for corrupt or unsupported graphs
        text = str(exc).strip().splitlines()
        raise EngineError(f"{path}: ONNX Runtime cannot load it ({text[0] if text else type(exc).__name__})") from None
