"""ONNX -> TensorRT plan + sidecar, with ``tensorrt`` or ``tensorrt_rtx`` (see :mod:`polyp_live.engines.trt_flavours`).

The network is STRONGLY_TYPED: precision comes from the ONNX (FP16 export -> FP16 engine, Q/DQ
export from ``polyp-calibrate`` -> INT8 engine); no precision builder flags are set (TensorRT 11
has no ``BuilderFlag.FP16``). Dynamic-batch ONNX files get one optimization profile
``(min, opt, max)`` from their metadata. The workspace is limited, a timing cache file is reused
across builds where the flavour has one, and the builder's progress is shown (tqdm on the
top-level phase, log lines for nested ones).

TensorRT-RTX builds without a GPU: the targets are compute capabilities (default: the current
GPU, or sm86/sm89/sm120 with no GPU). Verified here: a real FP16 build for RTX targets on a
CPU-only machine. A plan cannot be deserialized or inspected without a GPU (the runtime checks
only the header's magic before it needs CUDA), so loading is verified on a GPU machine.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

from polyp_live.engines.errors import BackendUnavailableError, EngineError, ExportError
from polyp_live.engines.onnx_format import INPUT_NAME, OnnxMetadata, read_onnx_metadata
from polyp_live.engines.sidecar import EngineSidecar, write_sidecar
from polyp_live.engines.trt_flavours import (
    TrtFlavour,
    compute_capability_enum,
    make_logger,
    parse_targets,
    resolve_flavour,
)
from polyp_live.train.devices import gpu_info
from polyp_live.train.hashing import sha256_bytes

logger = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024


@dataclass(frozen=True)
class BuildResult:
    path: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    seconds: float
    plan_bytes: int


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    *,
    flavour: str = "auto",
    targets: Sequence[str] | str | None = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    timing_cache: str | Path | None = None,
    source: str = "",
    progress: bool = True,
) -> BuildResult:
    """Build ``out`` (a plan) and ``out.json`` (its sidecar) from a polyp-live ONNX file.

    ``source`` is the checkpoint the ONNX came from, quoted in the sidecar's rebuild hint.
    Raises :class:`ExportError` when parsing or building fails, :class:`BackendUnavailableError`
    when no TensorRT is installed or a non-RTX TensorRT has no GPU to build for.
    """
    onnx_path, out = Path(onnx_path), Path(out)
    meta = read_onnx_metadata(onnx_path)  # precision is int8 when the graph holds Q/DQ nodes
    onnx_bytes = onnx_path.read_bytes()
    spec, module = resolve_flavour(flavour)
    chosen = _targets(spec, targets)
    logger.info("building a %s %s engine for %s (workspace %d MiB)", spec.name, meta.precision, ", ".join(chosen),
                workspace_mb)
    plan_bytes, seconds = _build_plan(
        spec, module, onnx_path, onnx_bytes, meta, chosen, workspace_mb=workspace_mb, timing_cache=timing_cache,
        progress=progress,
    )
    _write_atomic(out, plan_bytes)
    gpu = gpu_info(0)
    sidecar = EngineSidecar(
        contract=meta.contract,
        precision=meta.precision,
        batch=meta.batch,
        io_dtype=meta.io_dtype,
        flavour=spec.name,
        trt_version=module.__version__,
        targets=chosen,
        builder_gpu=gpu.name if gpu else "none",
        onnx_sha256=sha256_bytes(onnx_bytes),
        plan_sha256=sha256_bytes(plan_bytes),
        source_sha256=meta.source_sha256,
        source=source or str(onnx_path),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    side = write_sidecar(out, sidecar)
    logger.info("built %s (%.1f MB) in %.1f s", out, len(plan_bytes) / 1e6, seconds)
    return BuildResult(out, side, sidecar, seconds, len(plan_bytes))


def _build_plan(
    spec: TrtFlavour,
    module: ModuleType,
    onnx_path: Path,
    onnx_bytes: bytes,
    meta: OnnxMetadata,
    targets: tuple[str, ...],
    *,
    workspace_mb: int,
    timing_cache: str | Path | None,
    progress: bool,
) -> tuple[bytes, float]:
    """``(serialized plan, build seconds)``: parse the ONNX, configure the builder, build; saves the timing cache."""
    builder_logger = make_logger(module)
    builder = module.Builder(builder_logger)
    network, _parser = _parse(module, builder, builder_logger, onnx_path, onnx_bytes)  # parser owns the weights
    config = builder.create_builder_config()
    config.set_memory_pool_limit(module.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    _set_targets(spec, module, config, targets)
    _add_profile(builder, config, meta)
    cache = _attach_timing_cache(spec, config, timing_cache)
    monitor = _progress_monitor(module, progress)
    config.progress_monitor = monitor
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    monitor.close()
    if plan is None:
        raise ExportError(f"{onnx_path}: the TensorRT build failed (see the TensorRT errors above)")
    if cache is not None:
        _save_timing_cache(config, Path(cache))
    return bytes(plan), seconds


def _parse(
    module: ModuleType, builder: Any, builder_logger: Any, onnx_path: Path, onnx_bytes: bytes
) -> tuple[Any, Any]:
    """``(network, parser)``: a STRONGLY_TYPED network, so the ONNX's dtypes (FP16, Q/DQ INT8) decide precision.
    Keep the parser alive until the build ends: it owns the weights the network points to."""
    network = builder.create_network(1 << int(module.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = module.OnnxParser(network, builder_logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0] if errors else "unknown error"
        raise ExportError(f"{onnx_path}: TensorRT cannot parse the ONNX ({first})")
    return network, parser


def _targets(spec: TrtFlavour, requested: Sequence[str] | str | None) -> tuple[str, ...]:
    text = requested if requested is None or isinstance(requested, str) else ",".join(requested)
    wanted = parse_targets(text)
    gpu = gpu_info(0)
    if spec.builds_without_gpu:
        if wanted:
            return wanted
        return (gpu.target,) if gpu else spec.default_targets
    if gpu is None:
        raise BackendUnavailableError(
            f"{spec.name} builds engines for the GPU it runs on and there is none here; "
            "build on the target machine, or install tensorrt-rtx-cu13 to build for chosen compute capabilities"
        )
    if wanted and wanted != (gpu.target,):
        raise EngineError(
            f"{spec.name} builds only for this GPU ({gpu.target}), not {', '.join(wanted)}; "
            "use the tensorrt_rtx flavour to build for other compute capabilities"
        )
    return (gpu.target,)


def _set_targets(spec: TrtFlavour, module: ModuleType, config: Any, targets: tuple[str, ...]) -> None:
    if not spec.builds_without_gpu:
        return
    config.num_compute_capabilities = len(targets)
    for index, target in enumerate(targets):
        if not config.set_compute_capability(compute_capability_enum(module, target), index):
            raise ExportError(f"{spec.name} refused compute capability {target}")


def _add_profile(builder: Any, config: Any, meta: OnnxMetadata) -> None:
    if not meta.batch.dynamic:
        return
    h, w = meta.contract.input_size
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, (meta.batch.min, 3, h, w), (meta.batch.opt, 3, h, w), (meta.batch.max, 3, h, w))
    config.add_optimization_profile(profile)


def _attach_timing_cache(spec: TrtFlavour, config: Any, path: str | Path | None) -> Path | None:
    if path is None:
        return None
    if not spec.has_timing_cache:
        logger.info("%s has no timing cache (its kernels are compiled on the target); ignoring %s", spec.name, path)
        return None
    path = Path(path)
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        logger.warning("timing cache %s does not match this GPU/TensorRT; starting a fresh one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    logger.info("%s timing cache %s", "reusing" if data else "creating", path)
    return path


def _save_timing_cache(config: Any, path: Path) -> None:
    data = bytes(config.get_timing_cache().serialize())
    _write_atomic(path, data)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _progress_monitor(module: ModuleType, show: bool) -> Any:
    """A ``module.IProgressMonitor``: a tqdm bar over the top-level phase, nested phases as DEBUG lines."""
    from polyp_live.train.progress import progress as progress_bar

    class Progress(module.IProgressMonitor):  # type: ignore[name-defined, misc]
        def __init__(self) -> None:
            module.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._bar: Any = None
            self._top = ""

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                if parent_phase is None and self._bar is None:
                    self._top = phase_name
                    self._bar = progress_bar(total=num_steps, desc=f"TensorRT: {phase_name}", enabled=show,
                                             leave=False)
            logger.debug("TensorRT phase %s (%d steps) started", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self._lock:
                if self._bar is not None and phase_name == self._top:
                    self._bar.update(1)
            return True  # never cancel the build

        def phase_finish(self, phase_name: str) -> None:
            logger.debug("TensorRT phase %s finished", phase_name)

        def close(self) -> None:
            with self._lock:
                if self._bar is not None:
                    self._bar.close()
                    self._bar = None

    return Progress()
