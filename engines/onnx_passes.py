"""Exact rewrites of an exported ONNX graph that ONNX Runtime's own optimizer cannot do on a Q/DQ model.

``fold_pads_into_convs``: the EfficientNet-Lite encoder pads as TensorFlow's ``"same"`` (asymmetric at
stride 2), which the exporter writes as ``Pad -> Conv``. ONNX Runtime fuses that pair in a float graph,
but once the INT8 quantizer has put ``QuantizeLinear/DequantizeLinear`` between them the ``Pad`` runs on
its own, in float, on the widest (expanded) tensors of the encoder, followed by one more quantize. ONNX's
``Conv`` takes begin/end ``pads`` per axis, asymmetric included, so the ``Pad`` folds into the ``Conv``
before quantization and both go away. Zero padding only; everything else is left as it is.

Measured on 2 CPU cores (lite0 256x256, ONNX Runtime, same outputs bit for bit): about a third less time
per frame for INT8 and FP32 alike (``benchmarks/results/bench_engines-cpu-2core-lite0.md``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

GRAPH_PASSES = "fold-pads/1"  # recorded in every export; the ONNX cache and the INT8 calibration cache key on it


def _constant_values(graph: Any) -> dict[str, np.ndarray]:
    """The tensors a ``Pad`` may read that do not depend on a graph input, evaluated: initializers,
    ``Constant`` nodes and what is computed from them only (e.g. the exporter's
    ``ConstantOfShape/Concat/Reshape/Slice`` chain that builds a ``Pad``'s pads). The weights are not read."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = {init.name: init for init in graph.initializer}
    constant_nodes = []
    known = set(inits)
    for node in graph.node:  # ONNX nodes are topologically sorted
        if node.op_type == "Constant" or (node.input and all(not n or n in known for n in node.input)):
            constant_nodes.append(node)
            known.update(node.output)
    wanted = {n for node in graph.node if node.op_type == "Pad" for n in node.input[1:]}
    wanted |= {n for node in constant_nodes for n in node.input}
    values = {name: numpy_helper.to_array(inits[name]) for name in wanted if name in inits}
    if not constant_nodes:
        return values
    outputs = [helper.make_tensor_value_info(name, 0, None) for node in constant_nodes for name in node.output]
    used = [inits[name] for name in sorted(wanted) if name in inits]
    sub = helper.make_graph(constant_nodes, "constants", [], outputs, used)
    opset = [helper.make_opsetid("", 17)]
    try:
        results = ReferenceEvaluator(helper.make_model(sub, opset_imports=opset)).run(None, {})
    except Exception as exc:  # an op the reference evaluator lacks: fold nothing, the graph stays valid
        logger.debug("constant evaluation skipped: %s", exc)
        return values
    values.update({o.name: np.asarray(r) for o, r in zip(outputs, results, strict=True)})
    return values


def _spatial_pads(node: Any, values: dict[str, np.ndarray]) -> list[int] | None:
    """A zero-padding ``Pad`` of an NCHW tensor as ``[top, left, bottom, right]``; None for any other Pad."""
    from onnx import helper

    mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"constant")
    if mode not in (b"constant", "constant") or len(node.input) < 2 or node.input[1] not in values:
        return None
    if len(node.input) > 2 and node.input[2]:
        fill = values.get(node.input[2])
        if fill is None or np.any(fill != 0):
            return None
    if len(node.input) > 3 and node.input[3]:
        return None  # explicit axes: not written by the exporter, not folded
    pads = [int(v) for v in values[node.input[1]].reshape(-1)]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        return None
    return [pads[2], pads[3], pads[6], pads[7]]


def _conv_pads(conv: Any) -> list[int] | None:
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if auto_pad not in (b"NOTSET", "NOTSET"):
        return None
    return [int(v) for v in attrs.get("pads", [0, 0, 0, 0])]


def fold_pads_into_convs(graph_model: Any) -> int:
    """Fold every zero ``Pad`` whose only consumers are 2-D ``Conv`` nodes into their ``pads``; returns the count."""
    from onnx import helper

    graph = graph_model.graph
    values = _constant_values(graph)
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded: list[Any] = []
    for node in graph.node:
        if node.op_type != "Pad" or node.output[0] in outputs:
            continue
        extra = _spatial_pads(node, values)
        users = consumers.get(node.output[0], [])
        if extra is None or not users or any(u.op_type != "Conv" or u.input[0] != node.output[0] for u in users):
            continue
        current = [_conv_pads(u) for u in users]
        if any(c is None or len(c) != 4 for c in current):
            continue
        for conv, pads in zip(users, current, strict=True):
            merged = [a + b for a, b in zip(pads, extra, strict=True)]
            kept = [a for a in conv.attribute if a.name != "pads"]
            del conv.attribute[:]
            conv.attribute.extend([*kept, helper.make_attribute("pads", merged)])
            conv.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    if folded:
        removed = remove_dead_nodes(graph_model)
        logger.debug("folded %d Pad nodes into their Conv (%d nodes that computed their pads removed)",
                     len(folded), removed)
    return len(folded)


def remove_dead_nodes(graph_model: Any) -> int:
    """Drop nodes none of whose outputs is used (ONNX ops have no side effects); returns the count."""
    graph = graph_model.graph
    removed = 0
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(name in used for name in node.output)]
        if not dead:
            return removed
        for node in dead:
            graph.node.remove(node)
        removed += len(dead)
