"""Checkpoint -> ONNX (FP32 or FP16), with the model contract in the ONNX metadata and a parity check.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer). With torch 2.13 it
exports PEFNet at opset 17 in under a second, while ``dynamo=True`` (onnxscript) takes ~9 s for
the same graph and upgrades to opset 18; the tracer is kept as the default and the dynamo exporter
is the fallback if the tracer is unavailable. The positional embeddings are computed with NumPy
from Python ints, so they trace to constants: the export refuses a graph holding ``Sin``/``Cos``.

FP16 exports the ``.half()`` model traced on the CPU (weights and activations FP16; ONNX
``LayerNormalization`` keeps its default ``stash_type=1``, i.e. mean/variance in FP32). With
``io_dtype="float32"`` the graph keeps ``float32`` input and output and casts inside.

The file format (tensor names, ``metadata_props``) is :mod:`polyp_live.engines.onnx_format`. Verified after
export: ``onnx.checker.check_model`` and parity against PyTorch FP32 through ONNX Runtime on real frames
(see :mod:`polyp_live.engines.parity`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polyp_live.engines.errors import EngineError, ExportError
from polyp_live.engines.onnx_format import (
    INPUT_NAME,
    META_GRAPH_PASSES,
    OUTPUT_NAME,
    SINGLE_BATCH,
    BatchProfile,
    export_props,
    write_props,
)
from polyp_live.engines.parity import (
    ParityReport,
    parity_report,
    prepared_parity_batch,
    run_in_batches,
    torch_reference_logits,
)
from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import ContractError

if TYPE_CHECKING:
    from polyp_live.train.checkpoint import CheckpointInfo

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
IO_DTYPES = ("float32", "float16")
FORBIDDEN_OPS = ("Sin", "Cos")  # the positional embedding must be a constant
PARITY_FRAMES = 4


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
class ExportResult:
    path: Path
    contract: ModelContract
    precision: str
    parity: ParityReport | None
    batch: BatchProfile = SINGLE_BATCH
    io_dtype: str = "float32"


def export_onnx(
    checkpoint: str | Path | CheckpointInfo,
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
    """Export a checkpoint (path, bundled name, or a :class:`~polyp_live.train.checkpoint.CheckpointInfo` already read,
    so not read again) to ONNX and, with ``verify``, check it and its parity.

    Raises :class:`ExportError` for bad options, a failed export or failed parity, and
    :class:`~polyp_live.train.errors.ContractError` for an input size that is not a multiple of 32.
    """
    from polyp_live.train.checkpoint import CheckpointInfo, load_model, read_checkpoint
    from polyp_live.train.zoo import resolve_checkpoint

    if precision not in PRECISIONS:
        raise ExportError(f"ONNX precision {precision!r} is not one of {list(PRECISIONS)} (INT8: use polyp-calibrate)")
    if io_dtype not in IO_DTYPES:
        raise ExportError(f"io_dtype {io_dtype!r} is not one of {list(IO_DTYPES)}")
    if io_dtype == "float16" and precision != "fp16":
        raise ExportError("io_dtype float16 needs precision fp16")
    profile = make_batch_profile(batch, dynamic_batch)
    info = checkpoint if isinstance(checkpoint, CheckpointInfo) else read_checkpoint(resolve_checkpoint(checkpoint))
    model, contract = load_model(info), info.contract
    contract = _sized_contract(contract, size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    _trace_to_onnx(model, tmp, contract, precision, io_dtype, profile, opset)
    _finish_onnx(tmp, export_props(contract, precision, info.weights_sha256, profile, io_dtype))
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
    """Refuse a non-constant positional embedding, fold the encoder's pads into its convs
    (:mod:`polyp_live.engines.onnx_passes`), add the metadata, run the ONNX checker."""
    import onnx

    from polyp_live.engines.onnx_passes import GRAPH_PASSES, fold_pads_into_convs

    graph_model = onnx.load(str(path))
    forbidden = sorted({n.op_type for n in graph_model.graph.node if n.op_type in FORBIDDEN_OPS})
    if forbidden:
        raise ExportError(f"exported graph computes {forbidden}: the positional embedding was not folded to a constant")
    fold_pads_into_convs(graph_model)
    write_props(graph_model, {**metadata, META_GRAPH_PASSES: GRAPH_PASSES})
    graph_model.producer_name = "polyp-live"
    try:
        onnx.checker.check_model(graph_model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0]}") from None
    onnx.save(graph_model, str(path))


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
    """The export on ONNX Runtime's CPU provider, set up as the onnxruntime backend runs it."""
    from polyp_live.engines.onnxruntime_backend import ort_session

    if importlib.util.find_spec("onnxruntime") is None:
        raise ExportError("parity check needs onnxruntime (pip install onnxruntime), or pass verify=False")
    try:
        return ort_session(path)
    except EngineError as exc:
        raise ExportError(str(exc)) from None
