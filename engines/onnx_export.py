"""Checkpoint -> ONNX (FP32 or FP16), with the model contract in the ONNX metadata and a parity check.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer). With torch 2.13 it
exports PEFNet at opset 17 in under a second, while ``dynamo=True`` (onnxscript) takes ~9 s for
the same graph and upgrades to opset 18; the tracer is kept as the default and the dynamo exporter
is the fallback if the tracer is unavailable. The positional embeddings are computed with NumPy
from Python ints, so they trace to constants: the export refuses a graph holding ``Sin``/``Cos``.

FP16 exports the ``.half()`` model traced on the CPU (weights and activations FP16; ONNX
``LayerNormalization`` keeps its default ``stash_type=1``, i.e. mean/variance in FP32). With
``io_dtype="float32"`` the graph keeps ``float32`` input and output and casts inside.

Input ``input`` ``(N, 3, H, W)``, output ``logits`` ``(N, 1, H, W)``. ``metadata_props`` hold
``polyp_live.contract`` (the contract JSON), ``polyp_live.precision``, ``polyp_live.source_sha256``
(the checkpoint weights' SHA-256), ``polyp_live.batch`` (``{"min", "opt", "max"}``) and
``polyp_live.io_dtype``. Verified after export: ``onnx.checker.check_model`` and parity against
PyTorch FP32 through ONNX Runtime on real frames (see :mod:`engines.parity`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EngineError, ExportError
from engines.parity import (
    ParityReport,
    parity_report,
    prepared_parity_batch,
    run_in_batches,
    torch_reference_logits,
)
from train.contract import ModelContract
from train.errors import ContractError
from train.jsonfile import MAX_JSON_BYTES

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
META_CONTRACT = "polyp_live.contract"
META_PRECISION = "polyp_live.precision"
META_SOURCE = "polyp_live.source_sha256"
META_BATCH = "polyp_live.batch"
META_IO_DTYPE = "polyp_live.io_dtype"
PRECISIONS = ("fp32", "fp16")
IO_DTYPES = ("float32", "float16")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FORBIDDEN_OPS = ("Sin", "Cos")  # the positional embedding must be a constant
PARITY_FRAMES = 4


@dataclass(frozen=True)
class BatchProfile:
    """Batch sizes an artifact accepts: static when ``min == opt == max``."""

    min: int
    opt: int
    max: int

    @property
    def dynamic(self) -> bool:
        return not self.min == self.opt == self.max

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    @classmethod
    def from_dict(cls, data: Any) -> BatchProfile:
        if not isinstance(data, dict) or set(data) != {"min", "opt", "max"}:
            raise EngineError(f"batch profile must be an object with keys min, opt, max; got {data!r}")
        values = [data[k] for k in ("min", "opt", "max")]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise EngineError(f"batch profile values must be integers, got {data!r}")
        if not 1 <= values[0] <= values[1] <= values[2]:
            raise EngineError(f"batch profile needs 1 <= min <= opt <= max, got {data!r}")
        return cls(*values)


def make_batch_profile(batch: int = 1, dynamic_batch: tuple[int, ...] | None = None) -> BatchProfile:
    """Validate a static batch or a ``(min, opt, max)`` dynamic one."""
    if dynamic_batch is not None:
        if len(dynamic_batch) != 3:
            raise ExportError(f"dynamic batch must be MIN:OPT:MAX, got {dynamic_batch!r}")
        low, opt, high = (int(v) for v in dynamic_batch)
        if not 1 <= low <= opt <= high:
            raise ExportError(f"dynamic batch needs 1 <= MIN <= OPT <= MAX, got {low}:{opt}:{high}")
        return BatchProfile(low, opt, high)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ExportError(f"batch must be a positive integer, got {batch!r}")
    return BatchProfile(batch, batch, batch)


@dataclass(frozen=True)
class OnnxMetadata:
    """What polyp-live wrote into an ONNX file's ``metadata_props``."""

    contract: ModelContract
    precision: str
    source_sha256: str
    batch: BatchProfile
    io_dtype: str


@dataclass(frozen=True)
class ExportResult:
    path: Path
    contract: ModelContract
    precision: str
    parity: ParityReport | None
    batch: BatchProfile = BatchProfile(1, 1, 1)
    io_dtype: str = "float32"


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    *,
    precision: str = "fp32",
    size: int | tuple[int, int] | None = None,
    batch: int = 1,
    dynamic_batch: tuple[int, int, int] | None = None,
    io_dtype: str = "float32",
    opset: int = 17,
    verify: bool = True,
) -> ExportResult:
    """Export a checkpoint (path or bundled name) to ONNX and, with ``verify``, check it and its parity.

    Raises :class:`ExportError` for bad options, a failed export or failed parity, and
    :class:`~train.errors.ContractError` for an input size that is not a multiple of 32.
    """
    from train.checkpoint import load_checkpoint
    from train.zoo import resolve_checkpoint

    if precision not in PRECISIONS:
        raise ExportError(f"ONNX precision {precision!r} is not one of {list(PRECISIONS)} (INT8: use polyp-calibrate)")
    if io_dtype not in IO_DTYPES:
        raise ExportError(f"io_dtype {io_dtype!r} is not one of {list(IO_DTYPES)}")
    if io_dtype == "float16" and precision != "fp16":
        raise ExportError("io_dtype float16 needs precision fp16")
    profile = make_batch_profile(batch, dynamic_batch)
    model, contract, info = load_checkpoint(resolve_checkpoint(checkpoint))
    contract = _sized_contract(contract, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    _trace_to_onnx(model, tmp, contract, precision, io_dtype, profile, opset)
    metadata = {
        META_CONTRACT: contract.to_json(),
        META_PRECISION: precision,
        META_SOURCE: info.weights_sha256,
        META_BATCH: json.dumps(profile.to_dict(), sort_keys=True),
        META_IO_DTYPE: io_dtype,
    }
    _finish_onnx(tmp, metadata)
    os.replace(tmp, out)
    logger.info("exported %s (%s, %dx%d, batch %s) to %s", info.weights_path.name, precision, *contract.input_size,
                _batch_text(profile), out)
    parity = None
    if verify:
        parity = verify_onnx_parity(model, out, contract, precision, profile)
    return ExportResult(out, contract, precision, parity, profile, io_dtype)


def _batch_text(profile: BatchProfile) -> str:
    return f"{profile.min}:{profile.opt}:{profile.max}" if profile.dynamic else str(profile.max)


def _sized_contract(contract: ModelContract, size: int | tuple[int, int] | None) -> ModelContract:
    if size is None:
        return contract
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ContractError(f"size must be S or (height, width), got {size!r}")
        return contract.with_size(int(size[0]), int(size[1]))
    return contract.with_size(int(size))


class _CastWrapper:
    """Wraps the FP16 model so the graph keeps float32 I/O (Cast nodes inside)."""

    @staticmethod
    def build(model: Any) -> Any:
        import torch

        class CastIO(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.inner(x.half()).float()

        return CastIO(model)


def _trace_to_onnx(
    model: Any, path: Path, contract: ModelContract, precision: str, io_dtype: str, profile: BatchProfile, opset: int
) -> None:
    import copy

    import torch

    module = model
    dtype = torch.float32
    if precision == "fp16":
        module = copy.deepcopy(model).half()
        if io_dtype == "float32":
            module = _CastWrapper.build(module)
        else:
            dtype = torch.float16
    module.eval()
    example = torch.zeros((profile.opt, 3, *contract.input_size), dtype=dtype)
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if profile.dynamic else None
    kwargs = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), dynamo=False, dynamic_axes=axes, **kwargs)
    except Exception as exc:  # the tracer failed or is gone: try the dynamo exporter once
        logger.warning("TorchScript ONNX exporter failed (%s); trying the dynamo exporter", str(exc).splitlines()[0])
        _dynamo_export(module, example, path, profile, kwargs)


def _dynamo_export(module: Any, example: Any, path: Path, profile: BatchProfile, kwargs: dict[str, Any]) -> None:
    import torch

    shapes = None
    if profile.dynamic:
        shapes = ({0: torch.export.Dim("batch", min=profile.min, max=max(profile.max, 2))},)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), dynamo=True, dynamic_shapes=shapes, **kwargs)
    except Exception as exc:
        raise ExportError(f"ONNX export failed: {str(exc).splitlines()[0]}") from None


def _finish_onnx(path: Path, metadata: dict[str, str]) -> None:
    """Add the metadata, refuse a non-constant positional embedding, run the ONNX checker."""
    import onnx

    graph_model = onnx.load(str(path))
    forbidden = sorted({n.op_type for n in graph_model.graph.node if n.op_type in FORBIDDEN_OPS})
    if forbidden:
        raise ExportError(f"exported graph computes {forbidden}: the positional embedding was not folded to a constant")
    del graph_model.metadata_props[:]
    for key, value in metadata.items():
        graph_model.metadata_props.add(key=key, value=value)
    graph_model.producer_name = "polyp-live"
    try:
        onnx.checker.check_model(graph_model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from None
    onnx.save(graph_model, str(path))


def read_onnx_metadata(path: str | Path) -> OnnxMetadata:
    """Read and validate polyp-live's ``metadata_props`` of an ONNX file (one-line errors), and check that
    the graph's input and output are the ones the contract describes (names, ``(N, 3, h, w)`` / ``(N, 1, h, w)``).

    The precision is ``int8`` whenever the graph holds QuantizeLinear/DequantizeLinear nodes (a
    ``polyp-calibrate`` model), else the exported ``polyp_live.precision``.
    """
    graph_model = _load_model(Path(path))
    props, has_qdq = _props(graph_model), _has_qdq(graph_model)
    if META_CONTRACT not in props:
        raise EngineError(
            f"{path}: ONNX file has no {META_CONTRACT} metadata; export it with polyp-export --format onnx"
        )
    try:
        contract = ModelContract.from_json(props[META_CONTRACT])
    except ContractError as exc:
        raise ContractError(f"{path}: {exc}") from None
    _check_io(path, graph_model, contract)
    precision = "int8" if has_qdq else props.get(META_PRECISION, "fp32")
    batch_text = props.get(META_BATCH, '{"min": 1, "opt": 1, "max": 1}')
    try:
        batch = BatchProfile.from_dict(json.loads(batch_text))
    except (json.JSONDecodeError, ExportError, RecursionError) as exc:
        raise EngineError(f"{path}: bad {META_BATCH} metadata ({type(exc).__name__}: {exc})") from None
    return OnnxMetadata(contract, precision, props.get(META_SOURCE, ""), batch, props.get(META_IO_DTYPE, "float32"))


def read_onnx_props(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (one-line errors for a file that is not ONNX)."""
    return _props(_load_model(Path(path)))


def read_onnx_contract(path: str | Path) -> ModelContract:
    """The model contract stored in an ONNX file's metadata."""
    return read_onnx_metadata(path).contract


def _load_model(path: Path) -> Any:
    """The ONNX graph (weights not loaded from external files); a file that is not an ONNX model, or whose
    metadata is over :data:`~train.jsonfile.MAX_JSON_BYTES`, is one EngineError line."""
    import onnx
    from google.protobuf.message import DecodeError

    if not path.is_file():
        raise EngineError(f"ONNX file not found: {path}")
    try:
        graph_model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "corrupt"
        raise EngineError(f"{path}: not a readable ONNX model ({reason})") from None
    if not graph_model.graph.node:
        raise EngineError(f"{path}: not a readable ONNX model (no graph nodes); re-export it with polyp-export")
    size = sum(len(p.key) + len(p.value) for p in graph_model.metadata_props)
    if size > MAX_JSON_BYTES:
        raise EngineError(f"{path}: ONNX metadata is {size} bytes, larger than {MAX_JSON_BYTES}; "
                          "not a polyp-live export (re-export it with polyp-export)")
    return graph_model


def _props(graph_model: Any) -> dict[str, str]:
    return {p.key: p.value for p in graph_model.metadata_props}


def _has_qdq(graph_model: Any) -> bool:
    return any(n.op_type in QDQ_OPS for n in graph_model.graph.node)


def _dims(value_info: Any) -> tuple[int | None, ...]:
    """A graph input's / output's shape; ``None`` for a symbolic (dynamic) dimension."""
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _check_io(path: str | Path, graph_model: Any, contract: ModelContract) -> None:
    """The graph takes ``INPUT_NAME`` ``(N, 3, h, w)`` and gives ``OUTPUT_NAME`` ``(N, 1, h, w)`` at the
    contract's ``(h, w)``; anything else is one line (not an ONNX Runtime error at the first frame)."""
    weights = {init.name for init in graph_model.graph.initializer}
    ends = (("input", INPUT_NAME, [i for i in graph_model.graph.input if i.name not in weights], 3),
            ("output", OUTPUT_NAME, list(graph_model.graph.output), 1))
    for what, name, found, channels in ends:
        named = [v for v in found if v.name == name]
        if not named:
            raise EngineError(f"{path}: the graph's {what} is {[v.name for v in found]}, polyp-live needs one named "
                              f"{name!r}; export it with polyp-export --format onnx")
        dims, want = _dims(named[0]), (channels, *contract.input_size)
        if len(dims) != 4 or any(d is not None and d != w for d, w in zip(dims[1:], want, strict=True)):
            shown = tuple("N" if d is None else d for d in dims)
            raise EngineError(f"{path}: the graph's {what} {name!r} is {shown} but its contract says "
                              f"(N, {want[0]}, {want[1]}, {want[2]}); the metadata does not belong to this graph")


def verify_onnx_parity(
    model: Any, path: Path, contract: ModelContract, precision: str, profile: BatchProfile, frames: int = PARITY_FRAMES
) -> ParityReport:
    """Run the ONNX file with ONNX Runtime (CPU) and compare with PyTorch FP32; raise on failure."""
    batch, source = prepared_parity_batch(contract, frames)
    reference = torch_reference_logits(model, batch)
    session = _cpu_session(path)
    input_dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32

    def infer(chunk: np.ndarray) -> np.ndarray:
        return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: chunk.astype(input_dtype)})[0], dtype=np.float32)

    sizes = [profile.opt, profile.max, profile.min] if profile.dynamic else [profile.max]
    candidate = run_in_batches(infer, batch, sizes)
    report = parity_report(precision, reference, candidate, contract, source)
    logger.info("%s", report.summary())
    if not report.passed:
        raise ExportError(f"{path}: {report.summary()}")
    return report


def _cpu_session(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("parity check needs onnxruntime (pip install onnxruntime), or pass verify=False") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = min(2, os.cpu_count() or 1)
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: ONNX Runtime cannot load the export ({str(exc).splitlines()[0]})") from None
