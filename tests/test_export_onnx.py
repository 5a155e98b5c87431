"""ONNX export: graph shape, metadata contract, constant positional embedding, parity, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from polyp_live.engines.errors import EngineError, ExportError
from polyp_live.engines.onnx_export import export_onnx
from polyp_live.engines.onnx_format import read_onnx_contract, read_onnx_metadata
from polyp_live.train.checkpoint import load_checkpoint
from polyp_live.train.errors import ContractError
from tests.engines_helpers import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32
    return session.run(["logits"], {"input": batch.astype(dtype)})[0]


def test_fp32_export_has_contract_io_names_and_no_trig_ops(atto_checkpoint: Path, tmp_path: Path) -> None:
    result = export_onnx(atto_checkpoint, tmp_path / "m.onnx")
    model = onnx.load(str(result.path))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"Sin", "Cos"}
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    _, contract, info = load_checkpoint(atto_checkpoint)
    assert read_onnx_contract(result.path) == contract == result.contract
    meta = read_onnx_metadata(result.path)
    assert meta.precision == "fp32" and meta.source_sha256 == info.weights_sha256
    assert result.parity is not None and result.parity.passed
    assert result.parity.agreement >= 0.999 and result.parity.rel_l2 < 1e-3
    out = _run(result.path, np.zeros((1, 3, 64, 64), np.float32))
    assert out.shape == (1, 1, 64, 64) and out.dtype == np.float32


def test_fp16_export_keeps_float32_io_and_fp16_weights(atto_checkpoint: Path, tmp_path: Path) -> None:
    result = export_onnx(atto_checkpoint, tmp_path / "m16.onnx", precision="fp16", verify=False)
    model = onnx.load(str(result.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    dtypes = {i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    assert result.parity is None  # FP16 parity: test_export_cli.py and test_engines_parity.py
    half_io = export_onnx(atto_checkpoint, tmp_path / "h.onnx", precision="fp16", io_dtype="float16", verify=False)
    assert onnx.load(str(half_io.path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


def test_dynamic_batch_and_size(atto_checkpoint: Path, tmp_path: Path) -> None:
    result = export_onnx(atto_checkpoint, tmp_path / "d.onnx", size=96, dynamic_batch=(1, 2, 4), verify=False)
    assert result.contract.input_size == (96, 96)
    meta = read_onnx_metadata(result.path)
    assert (meta.batch.min, meta.batch.opt, meta.batch.max) == (1, 2, 4)
    rng = np.random.default_rng(1)
    batch = rng.uniform(-1, 1, (3, 3, 96, 96)).astype(np.float32)
    together = _run(result.path, batch)
    single = np.concatenate([_run(result.path, batch[i : i + 1]) for i in range(3)])
    assert together.shape == (3, 1, 96, 96)
    np.testing.assert_allclose(together, single, atol=1e-4)


def test_bad_size_and_options(atto_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="multiple of 32"):
        export_onnx(atto_checkpoint, tmp_path / "x.onnx", size=100, verify=False)
    with pytest.raises(ExportError, match="precision"):
        export_onnx(atto_checkpoint, tmp_path / "x.onnx", precision="int4")
    with pytest.raises(ExportError, match="MIN <= OPT <= MAX"):
        export_onnx(atto_checkpoint, tmp_path / "x.onnx", dynamic_batch=(4, 2, 1))


@pytest.mark.parametrize("content", [b"\x00\xff" * 500, b"this is not an onnx model\n"])
def test_corrupt_onnx_is_one_line_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(EngineError) as info:
        read_onnx_contract(bad)
    assert "\n" not in str(info.value) and "bad.onnx" in str(info.value)


def _insert_input_qdq(src: Path, dst: Path) -> None:
    """A minimal Q/DQ model: INT8 quantize-dequantize of the input (range [-1, 1]) in front of the graph."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    for node in model.graph.node:
        node.input[:] = ["input_dq" if name == "input" else name for name in node.input]
    scale = numpy_helper.from_array(np.array(1.0 / 127.0, np.float32), "qdq_scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "qdq_zero")
    model.graph.initializer.extend([scale, zero])
    qdq = [
        helper.make_node("QuantizeLinear", ["input", "qdq_scale", "qdq_zero"], ["input_q"]),
        helper.make_node("DequantizeLinear", ["input_q", "qdq_scale", "qdq_zero"], ["input_dq"]),
    ]
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(qdq + nodes)
    onnx.save(model, str(dst))


def test_qdq_onnx_reads_as_int8_and_runs(atto_checkpoint: Path, tmp_path: Path) -> None:
    from polyp_live.engines.registry import open_engine

    fp32 = export_onnx(atto_checkpoint, tmp_path / "f.onnx", verify=False).path
    qdq = tmp_path / "q.onnx"
    _insert_input_qdq(fp32, qdq)
    assert read_onnx_metadata(qdq).precision == "int8"
    batch = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    with open_engine(qdq, precision="int8") as engine:
        assert engine.info.precision == "int8"
        quantized = engine.infer(batch)
    reference = _run(fp32, batch)
    assert np.linalg.norm(quantized - reference) / np.linalg.norm(reference) < 0.1


# One variant per encoder family, and the no-MPE ablation: every graph the factory can build exports.
FAMILY_VARIANTS = ["atto", "lite0", "lite0-nompe"]


@pytest.mark.parametrize("variant", FAMILY_VARIANTS)
def test_every_encoder_family_exports_with_parity(variant: str, tmp_path: Path) -> None:
    import torch

    from polyp_live.train.checkpoint import save_checkpoint
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.variants import VARIANTS, create_model

    assert {VARIANTS[v].family for v in FAMILY_VARIANTS} == {s.family for s in VARIANTS.values()}
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / variant, create_model(variant).eval(), ModelContract(variant, (64, 96)))
    result = export_onnx(checkpoint, tmp_path / f"{variant}.onnx")
    assert result.parity is not None and result.parity.passed and result.parity.agreement >= 0.999
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert not ops & {"Sin", "Cos"}
    assert _run(result.path, np.zeros((1, 3, 64, 96), np.float32)).shape == (1, 1, 64, 96)
