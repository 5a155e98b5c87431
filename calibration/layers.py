"""Which layers stay in float, and which quantized layers hurt accuracy most.

``--keep-float`` takes names from :data:`KEEP_FLOAT_GROUPS` (found by graph structure, so they
work whatever names the exporter gave the nodes), an op type present in the graph (``Resize``), or
a substring of node names (``/final_mpe/``). A name that matches nothing is an error.

:func:`worst_layers` is the cheap "error per quantized node" pass run when the accuracy gate fails:
the FP32 and the INT8 model are run on a few frames with every node output exposed; a node's own
contribution is the relative L2 error of its output minus the largest error among its inputs, and
the largest contributions are named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyp_live.calibration.errors import CalibrationError

logger = logging.getLogger(__name__)


def _topological(model: object) -> list[object]:
    return list(model.graph.node)  # type: ignore[attr-defined]  # ONNX requires nodes in topological order


def first_conv(model: object) -> list[str]:
    """The first Conv of the graph (the stem)."""
    convs = [n for n in _topological(model) if n.op_type == "Conv"]
    return [convs[0].name] if convs else []


def head(model: object) -> list[str]:
    """The last Conv (the 1-channel head) and every node after it (the final resize to logits)."""
    nodes = _topological(model)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return []
    last = nodes[convs[-1]]
    downstream = set(last.output)
    names = [last.name]
    for node in nodes[convs[-1] + 1 :]:
        if any(i in downstream for i in node.input):
            downstream.update(node.output)
            names.append(node.name)
    return names


def layernorm(model: object) -> list[str]:
    """LayerNormalization nodes (or, in a graph where LayerNorm was decomposed, nodes named ``*norm*``)."""
    nodes = _topological(model)
    fused = [n.name for n in nodes if n.op_type == "LayerNormalization"]
    return fused or [n.name for n in nodes if "norm" in n.name.lower()]


KEEP_FLOAT_GROUPS: dict[str, Callable[[object], list[str]]] = {
    "first-conv": first_conv,
    "head": head,
    "layernorm": layernorm,
}
DEFAULT_KEEP_FLOAT = "first-conv,head"


def parse_keep_float(text: str) -> tuple[str, ...]:
    """``"first-conv,head"`` -> ``("first-conv", "head")``; ``"none"`` or ``""`` -> ``()``."""
    tokens = tuple(t.strip() for t in text.split(",") if t.strip())
    return () if tokens in ((), ("none",)) else tokens


def select_keep_float(model: object, tokens: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each ``--keep-float`` token -> the node names it keeps in float (unnamed nodes are named first)."""
    nodes = _topological(model)
    for index, node in enumerate(nodes):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
    op_types = {n.op_type for n in nodes}
    selected: dict[str, tuple[str, ...]] = {}
    for token in tokens:
        if token in KEEP_FLOAT_GROUPS:
            names = KEEP_FLOAT_GROUPS[token](model)
        elif token in op_types:
            names = [n.name for n in nodes if n.op_type == token]
        else:
            names = [n.name for n in nodes if token in n.name]
        if not names:
            raise CalibrationError(
                f"--keep-float {token!r} matches no node; use {', '.join(KEEP_FLOAT_GROUPS)}, an op type of the "
                f"graph (e.g. {', '.join(sorted(op_types)[:4])}) or part of a node name"
            )
        selected[token] = tuple(names)
    return selected


@dataclass(frozen=True)
class LayerError:
    """One node's contribution to the INT8 error (relative L2 of its output minus that of its inputs)."""

    node: str
    op_type: str
    output_error: float
    added_error: float

    def describe(self) -> str:
        return f"{self.node} ({self.op_type}, +{self.added_error:.3f} relative error)"


def _expose_outputs(path: Path, names: Sequence[str]) -> bytes:
    import onnx

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString()


Feeds = Sequence[dict[str, np.ndarray]]


def _run_exposed(path: Path, names: Sequence[str], feeds: Feeds) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(_expose_outputs(path, names), options, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    return [dict(zip(wanted, session.run(wanted, feed), strict=True)) for feed in feeds]


def _float_node_outputs(path: Path) -> tuple[list[object], set[str]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    return nodes, {o for n in nodes for o in n.output if o}


def worst_layers(
    fp32_path: str | Path, int8_path: str | Path, feeds: Sequence[dict[str, np.ndarray]], top: int = 3
) -> list[LayerError]:
    """The ``top`` nodes adding the most relative error in the INT8 model (a few frames, CPU)."""
    fp32_nodes, fp32_outputs = _float_node_outputs(Path(fp32_path))
    _, int8_outputs = _float_node_outputs(Path(int8_path))
    shared = sorted(fp32_outputs & int8_outputs)
    if not shared or not feeds:
        return []
    reference = _run_exposed(Path(fp32_path), shared, feeds)
    quantized = _run_exposed(Path(int8_path), shared, feeds)
    errors: dict[str, float] = {}
    for name in shared:
        pairs = [(r[name], q[name]) for r, q in zip(reference, quantized, strict=True) if name in r and name in q]
        if pairs and all(r.shape == q.shape for r, q in pairs):
            num = sum(float(np.linalg.norm((r - q).ravel())) for r, q in pairs)
            den = sum(float(np.linalg.norm(r.ravel())) for r, _ in pairs)
            errors[name] = num / max(den, 1e-12)
    found = []
    for node in fp32_nodes:
        outs = [errors[o] for o in node.output if o in errors]
        if not outs:
            continue
        before = max((errors.get(i, 0.0) for i in node.input), default=0.0)
        found.append(LayerError(node.name, node.op_type, max(outs), max(outs) - before))
    found.sort(key=lambda e: e.added_error, reverse=True)
    return found[:top]
