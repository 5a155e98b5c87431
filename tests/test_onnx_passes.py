"""polyp_live.engines.onnx_passes: the encoder's TensorFlow "same" Pads fold into their Convs, exactly, and nothing else
does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from polyp_live.engines.onnx_export import export_onnx
from polyp_live.engines.onnx_format import META_GRAPH_PASSES, read_onnx_props
from polyp_live.engines.onnx_passes import GRAPH_PASSES, fold_pads_into_convs
from tests.engines_helpers import one_torch_thread  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _pad_conv_model(pads: list[int], fill: float = 0.0, extra_consumer: bool = False) -> onnx.ModelProto:
    """x (1,4,8,8) -> Pad(pads, fill) -> Conv 3x3 stride 2 [-> also Relu of the padded tensor, summed]."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    inits = [weight, numpy_helper.from_array(np.array(pads, np.int64), "pads"),
             numpy_helper.from_array(np.array(fill, np.float32), "fill")]
    nodes = [helper.make_node("Pad", ["x", "pads", "fill"], ["padded"], mode="constant"),
             helper.make_node("Conv", ["padded", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2])]
    out = "y"
    if extra_consumer:
        nodes += [helper.make_node("MaxPool", ["padded"], ["p"], kernel_shape=[3, 3], strides=[2, 2]),
                  helper.make_node("Add", ["y", "p"], ["z"])]
        out = "z"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_asymmetric_zero_pad_folds_into_the_conv_exactly() -> None:
    model = _pad_conv_model([0, 0, 0, 0, 0, 0, 1, 1])  # TF "same", stride 2: one row/column at the end
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert fold_pads_into_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    pads = next(a for a in model.graph.node[0].attribute if a.name == "pads")
    assert list(pads.ints) == [0, 0, 1, 1]
    np.testing.assert_array_equal(_run(model, x), before)


@pytest.mark.parametrize(
    ("pads", "fill", "extra"),
    [([0, 1, 0, 0, 0, 1, 1, 1], 0.0, False),  # pads the channel axis too
     ([0, 0, 0, 0, 0, 0, 1, 1], 2.0, False),  # not zero
     ([0, 0, 0, 0, 0, 0, 1, 1], 0.0, True)],  # the padded tensor also feeds a MaxPool
)
def test_pads_a_conv_cannot_absorb_stay(pads: list[int], fill: float, extra: bool) -> None:
    model = _pad_conv_model(pads, fill, extra)
    assert fold_pads_into_convs(model) == 0
    assert "Pad" in {n.op_type for n in model.graph.node}


def test_lite_export_has_no_pad_left_and_keeps_parity(tmp_path: Path) -> None:
    import torch

    from polyp_live.train.checkpoint import save_checkpoint
    from polyp_live.train.contract import ModelContract
    from polyp_live.train.variants import create_model

    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "lite0", create_model("lite0").eval(), ModelContract("lite0", (64, 64)))
    result = export_onnx(checkpoint, tmp_path / "lite0.onnx")
    graph = onnx.load(str(result.path)).graph
    assert "Pad" not in {n.op_type for n in graph.node}
    asymmetric = [n for n in graph.node if n.op_type == "Conv"
                  for a in n.attribute if a.name == "pads" and a.ints[:2] != a.ints[2:]]
    assert asymmetric  # the stride-2 convs kept their TensorFlow "same" padding, now inside the Conv
    assert result.parity is not None and result.parity.passed and result.parity.agreement >= 0.999
    assert read_onnx_props(result.path)[META_GRAPH_PASSES] == GRAPH_PASSES


def test_cached_export_from_before_the_passes_is_exported_again(
    atto_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyp_live.engines.cache import cached_onnx

    monkeypatch.setenv("POLYP_LIVE_CACHE", str(tmp_path / "cache"))
    path = cached_onnx(atto_checkpoint)
    model = onnx.load(str(path))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != META_GRAPH_PASSES]
    del model.metadata_props[:]
    for key, value in kept:  # what an older polyp-live wrote: same weights and contract, no passes recorded
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    assert META_GRAPH_PASSES not in read_onnx_props(path)
    assert cached_onnx(atto_checkpoint) == path
    assert read_onnx_props(path)[META_GRAPH_PASSES] == GRAPH_PASSES
