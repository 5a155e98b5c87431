"""Static INT8 quantization of an FP32 ONNX model with ONNX Runtime: ranges once, Q/DQ per target.

1. :func:`prepare_model` runs ``quant_pre_process`` (shape inference + ORT graph optimisation). It
   is needed, not cosmetic: the raw export feeds LayerNorm weights through ``Identity`` nodes, which
   the quantizer would treat as activations without ranges.
2. :func:`compute_ranges` feeds the calibration frames (preprocessed with
   :func:`polyp_live.train.preprocess.preprocess_batch`, exactly as at runtime) through ORT's calibrator
   (``create_calibrator`` -> ``collect_data`` in chunks, so memory stays bounded -> ``compute_data``)
   and keeps one ``[min, max]`` per tensor (the histogram-derived range for entropy / percentile).
   The ranges are computed asymmetric; each target applies its own symmetry when it quantizes.
3. :func:`quantize_model` writes an explicitly quantized (QuantizeLinear / DequantizeLinear) model
   from those ranges for one target of :data:`TARGETS`, INT8 weights per channel, and keeps the
   model contract and polyp-live metadata in ``metadata_props``.

The same :class:`TensorRanges` serve both targets, so the report can compare them without a second
calibration pass. Verified in ``tests/test_calibration.py`` (Q/DQ structure, symmetric INT8 zero
points for TensorRT, agreement with FP32 on Kvasir-SEG frames).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyp_live.calibration.errors import CalibrationError
from polyp_live.engines.onnx_format import INPUT_NAME, META_INT8_TARGET, META_PRECISION, QDQ_OPS, write_props
from polyp_live.train.contract import ModelContract
from polyp_live.train.preprocess import normalize_batch
from polyp_live.train.progress import progress as progress_bar

logger = logging.getLogger(__name__)

CHUNK = 8  # frames per collect_data call: the calibrator holds every intermediate tensor of a chunk


# TensorRT's Q/DQ optimizer accepts quantized constants only as weights of these ops (a quantized scalar of
# GELU's Mul/Add fails the build), and its ONNX parser rejects INT32 bias DequantizeLinear: both found by
# building the Q/DQ model with tensorrt_rtx (tests/test_calibration.py).
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class TargetSpec:
    """How one deployment target wants its INT8 activations."""

    name: str
    activation_type: str  # onnxruntime.quantization.QuantType member name
    symmetric_activations: bool
    description: str
    quantize_bias: bool = True  # INT32 bias + DequantizeLinear; TensorRT's ONNX parser rejects INT32 DQ inputs
    op_types: tuple[str, ...] | None = None  # None: every op type ORT can quantize


TARGETS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec("tensorrt", "QInt8", True, "symmetric INT8 activations + weights on Conv/ConvTranspose/Gemm/"
                   "MatMul inputs, float biases (TensorRT explicit quantization)", quantize_bias=False,
                   op_types=TENSORRT_OP_TYPES),
        TargetSpec("cpu", "QUInt8", False, "asymmetric UINT8 activations, INT8 weights (ONNX Runtime x86 kernels)"),
    )
}
METHODS: dict[str, str] = {"entropy": "Entropy", "percentile": "Percentile", "minmax": "MinMax"}


@dataclass(frozen=True)
class TensorRanges:
    """Calibrated ``(min, max)`` of every tensor to quantize, and how they were obtained."""

    method: str
    samples: int
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantizedModel:
    """An INT8 Q/DQ ONNX file and what was quantized in it."""

    path: Path
    target: str
    quantized_ops: Mapping[str, int]  # op type -> number of nodes fed by DequantizeLinear
    excluded_nodes: tuple[str, ...]
    qdq_nodes: int


def spec_op_types(spec: TargetSpec) -> list[str] | None:
    return list(spec.op_types) if spec.op_types is not None else None


def get_target(name: str) -> TargetSpec:
    if name not in TARGETS:
        raise CalibrationError(f"unknown INT8 target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def check_method(name: str) -> str:
    if name not in METHODS:
        raise CalibrationError(f"unknown calibration method {name!r}; choose one of {', '.join(METHODS)}")
    return name


def default_target() -> str:
    """``tensorrt`` when a CUDA GPU is visible, else ``cpu``."""
    try:
        import torch

        return "tensorrt" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover - torch is a dependency
        return "cpu"


def _drop_ort_chatter(record: logging.LogRecord) -> bool:
    """Keep ORT's errors; its INFO lines and per-tensor warnings (e.g. per-channel axis fallbacks on
    LayerNorm scales) go to this module's debug log."""
    if record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname:
        return True
    logger.debug("onnxruntime: %s", record.getMessage())
    return False


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """ORT's quantization tools print progress and log on the root logger: send both to the debug log."""
    buffer = io.StringIO()
    loggers = (logging.getLogger(), logging.getLogger("onnxruntime"))  # ORT logs on both
    for each in loggers:
        each.addFilter(_drop_ort_chatter)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        for each in loggers:
            each.removeFilter(_drop_ort_chatter)
    text = buffer.getvalue().strip()
    if text:
        logger.debug("onnxruntime: %s", text.replace("\n", " | "))


def prepare_model(fp32_path: str | Path, out: str | Path) -> Path:
    """``quant_pre_process`` the FP32 model (symbolic shapes, ORT optimisation); returns ``out``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    try:
        with quiet_stdout():
            quant_pre_process(str(fp32_path), str(out), skip_symbolic_shape=False)
    except Exception as exc:  # ORT raises bare Exception types from its optimizer
        raise CalibrationError(f"cannot prepare {fp32_path} for quantization: {str(exc).splitlines()[0]}") from None
    return out


def quantizable_op_types() -> list[str]:
    """The op types ORT's static quantizer handles (what ``quantize_static`` uses by default)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


class FrameReader:
    """An ORT ``CalibrationDataReader`` over RGB frames, preprocessed one by one on demand."""

    def __init__(self, frames: Sequence[np.ndarray], contract: ModelContract) -> None:
        self._frames = list(frames)
        self._contract = contract
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._frames):
            return None
        frame = self._frames[self._next]
        self._next += 1
        return {INPUT_NAME: normalize_batch([frame], self._contract)}

    def __len__(self) -> int:
        return len(self._frames)


def compute_ranges(
    model_path: str | Path, frames: Sequence[np.ndarray], contract: ModelContract, method: str, *, progress: bool = True
) -> TensorRanges:
    """Run the calibration pass: every frame through the (prepared) FP32 model, ranges per tensor."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    check_method(method)
    if not frames:
        raise CalibrationError("no calibration frames")
    with tempfile.TemporaryDirectory(prefix="polyp-calib-") as tmp:
        calibrator = create_calibrator(
            Path(model_path),
            quantizable_op_types(),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            providers=["CPUExecutionProvider"],
            extra_options={"symmetric": False},
        )
        with progress_bar(total=len(frames), desc=f"calibrating ({method})", unit="frame", enabled=progress) as bar:
            for start in range(0, len(frames), CHUNK):
                chunk = frames[start : start + CHUNK]
                with quiet_stdout():
                    calibrator.collect_data(FrameReader(chunk, contract))
                bar.update(len(chunk))
        with quiet_stdout():
            data = calibrator.compute_data()
        del calibrator
    ranges = {name: _range_of(value) for name, value in data.data.items()}
    logger.info("calibrated %d tensors on %d frames (%s)", len(ranges), len(frames), method)
    return TensorRanges(method, len(frames), ranges)


def _range_of(value: object) -> tuple[float, float]:
    low, high = value.range_value  # type: ignore[attr-defined]
    return float(np.asarray(low).reshape(-1)[0]), float(np.asarray(high).reshape(-1)[0])


def _ort_tensors_data(ranges: TensorRanges) -> object:
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    return TensorsData(
        getattr(CalibrationMethod, METHODS[ranges.method]),
        {
            name: TensorData(lowest=np.float32(low), highest=np.float32(high))
            for name, (low, high) in ranges.ranges.items()
        },
    )


def quantize_model(
    prepared_path: str | Path,
    out: str | Path,
    ranges: TensorRanges,
    target: str,
    *,
    exclude: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    op_types: Sequence[str] | None = None,
) -> QuantizedModel:
    """Write a Q/DQ INT8 model for ``target`` from precomputed ``ranges`` (no calibration pass here)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    spec = get_target(target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="polyp-quant-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(_ort_tensors_data(ranges), cache)
        tmp_model = Path(tmp) / "int8.onnx"
        try:
            with quiet_stdout():
                quantize_static(
                    str(prepared_path),
                    str(tmp_model),
                    None,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(op_types) if op_types is not None else spec_op_types(spec),
                    per_channel=True,
                    activation_type=getattr(QuantType, spec.activation_type),
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=list(exclude),
                    calibrate_method=getattr(CalibrationMethod, METHODS[ranges.method]),
                    calibration_cache_path=str(cache),
                    extra_options={"ActivationSymmetric": spec.symmetric_activations, "WeightSymmetric": True,
                                   "QuantizeBias": spec.quantize_bias},
                )
        except ValueError as exc:
            raise CalibrationError(
                f"quantization failed: {str(exc).splitlines()[0]} (the calibration ranges do not fit this model; "
                "delete the calibration cache and rerun)"
            ) from None
        model = onnx.load(str(tmp_model))
        write_props(model, {**(metadata or {}), META_PRECISION: "int8", META_INT8_TARGET: target}, merge=True)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise CalibrationError(f"quantized model fails onnx.checker: {str(exc).splitlines()[0]}") from None
        partial = out.with_name(out.name + ".tmp")
        onnx.save(model, str(partial))
        os.replace(partial, out)
    summary = summarize_quantization(model, exclude, spec_op_types(spec) if op_types is None else op_types)
    logger.info("wrote %s (%s: %d Q/DQ nodes)", out, target, summary[1])
    return QuantizedModel(out, target, summary[0], tuple(exclude), summary[1])


def summarize_quantization(
    model: object, exclude: Sequence[str] = (), op_types: Sequence[str] | None = None
) -> tuple[dict[str, int], int]:
    """``({op type: quantized nodes}, number of Q/DQ nodes)`` of a Q/DQ model.

    A node counts as quantized when its op type was to be quantized, it reads a dequantized tensor
    and it was not excluded. Other nodes compute in float, but may read an activation rounded by the
    Q/DQ pair that another consumer of the same tensor needs (that is how QDQ graphs work).
    """
    allowed = set(op_types) if op_types is not None else None
    nodes = model.graph.node  # type: ignore[attr-defined]
    dequantized = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    skip = set(exclude)
    counts: Counter[str] = Counter()
    qdq = 0
    for node in nodes:
        if node.op_type in QDQ_OPS:
            qdq += 1
        elif (allowed is None or node.op_type in allowed) and node.name not in skip and any(
            i in dequantized for i in node.input
        ):
            counts[node.op_type] += 1
    return dict(sorted(counts.items())), qdq

