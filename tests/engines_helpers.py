"""Shared artifacts of the engines' tests, made once per session (exports are the slow part)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

_MADE: dict[tuple[str, ...], Path] = {}
DYNAMIC_BATCH = (1, 2, 4)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread during a test: on 2 shared cores two spinning threads run 3-5x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _workdir(factory: pytest.TempPathFactory) -> Path:
    path = factory.getbasetemp() / "engines-artifacts"
    path.mkdir(exist_ok=True)
    return path


def balanced_checkpoint(factory: pytest.TempPathFactory) -> Path:
    """PEFNet-atto at 64x64 with random weights, its head bias moved so half the pixels of the parity
    frames are polyp: many pixels lie near the threshold, which makes mask agreement a strict test."""
    key = ("balanced",)
    if key not in _MADE:
        import torch

        from polyp_live.engines.parity import prepared_parity_batch, torch_reference_logits
        from polyp_live.train.checkpoint import save_checkpoint
        from polyp_live.train.contract import ModelContract
        from polyp_live.train.variants import create_model

        torch.manual_seed(1)
        model = create_model("atto").eval()
        contract = ModelContract("atto", (64, 64))
        batch, _ = prepared_parity_batch(contract, 4)
        median = float(np.median(torch_reference_logits(model, batch)))
        with torch.no_grad():
            model.head.bias -= median
        _MADE[key] = save_checkpoint(_workdir(factory) / "balanced64", model, contract)
    return _MADE[key]


def exported(factory: pytest.TempPathFactory, checkpoint: Path, precision: str = "fp32", **kwargs: object) -> Path:
    """``checkpoint`` exported to ONNX once (no parity here: the parity tests measure it on the engines)."""
    from polyp_live.engines.onnx_export import export_onnx

    key = (str(checkpoint), precision, repr(sorted(kwargs.items())))
    if key not in _MADE:
        name = f"{checkpoint.stem}-{precision}-{len(_MADE)}.onnx"
        _MADE[key] = export_onnx(checkpoint, _workdir(factory) / name, precision=precision, verify=False, **kwargs).path
    return _MADE[key]


def built_engine(factory: pytest.TempPathFactory, checkpoint: Path, **kwargs: object) -> Path:
    """An FP16 TensorRT(-RTX) engine of ``checkpoint`` (64 MiB workspace), built once."""
    from polyp_live.engines.tensorrt_build import build_engine

    key = ("engine", str(checkpoint), repr(sorted(kwargs.items())))
    if key not in _MADE:
        onnx_path = exported(factory, checkpoint, "fp16", dynamic_batch=DYNAMIC_BATCH)
        out = _workdir(factory) / f"{checkpoint.stem}-{len(_MADE)}.engine"
        build_engine(onnx_path, out, workspace_mb=64, source=str(checkpoint), progress=False, **kwargs)
        _MADE[key] = out
    return _MADE[key]


def qdq_onnx(factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    """A Q/DQ INT8 model of ``checkpoint`` (dynamic batch), quantized here with ONNX Runtime's static
    quantizer on the parity frames: symmetric INT8, per-channel weights, only Conv/ConvTranspose/MatMul/Gemm
    quantized and biases kept float (what TensorRT's Q/DQ path accepts). polyp-calibrate is the real tool;
    this keeps the engines' INT8 path testable on its own."""
    key = ("qdq", str(checkpoint))
    if key not in _MADE:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from polyp_live.engines.parity import prepared_parity_batch
        from polyp_live.train.checkpoint import read_checkpoint

        fp32 = exported(factory, checkpoint, "fp32", dynamic_batch=DYNAMIC_BATCH)
        batch, _ = prepared_parity_batch(read_checkpoint(checkpoint).contract, 4)

        class Frames(CalibrationDataReader):
            def __init__(self) -> None:
                self._items = iter([{"input": batch[i : i + 1]} for i in range(len(batch))])

            def get_next(self) -> dict | None:
                return next(self._items, None)

        work = _workdir(factory)
        prepared, out = work / f"{checkpoint.stem}-pre.onnx", work / f"{checkpoint.stem}-qdq.onnx"
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv", "ConvTranspose", "MatMul", "Gemm"],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        model = onnx.load(str(out))
        model.metadata_props.extend(onnx.load(str(fp32)).metadata_props)  # the contract travels along
        onnx.save(model, str(out))
        _MADE[key] = out
    return _MADE[key]


def built_qdq_engine(factory: pytest.TempPathFactory, checkpoint: Path) -> Path:
    """An INT8 TensorRT(-RTX) engine from :func:`qdq_onnx`, built once."""
    from polyp_live.engines.tensorrt_build import build_engine

    key = ("qdq-engine", str(checkpoint))
    if key not in _MADE:
        out = _workdir(factory) / f"{checkpoint.stem}-int8.engine"
        build_engine(qdq_onnx(factory, checkpoint), out, workspace_mb=64, source=str(checkpoint), progress=False)
        _MADE[key] = out
    return _MADE[key]
