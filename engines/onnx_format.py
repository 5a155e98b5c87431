"""polyp-live's ONNX file format: tensor names, ``metadata_props`` keys, and reading and writing them.

The one home of these facts for the exporter (:mod:`polyp_live.engines.onnx_export`), every backend, the ONNX
cache (:mod:`polyp_live.engines.cache`) and ``polyp-calibrate`` (:mod:`calibration`).

Input ``input`` ``(N, 3, H, W)``, output ``logits`` ``(N, 1, H, W)``. ``metadata_props`` hold
``polyp_live.contract`` (the contract JSON), ``polyp_live.precision``, ``polyp_live.source_sha256``
(the checkpoint weights' SHA-256), ``polyp_live.batch`` (``{"min", "opt", "max"}``) and
``polyp_live.io_dtype``; a calibrated INT8 model adds ``polyp_live.int8_target`` (``cpu`` or
``tensorrt``) and ``polyp_live.calibration`` (how its ranges were obtained).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp_live.engines.errors import EngineError
from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import ContractError
from polyp_live.train.jsonfile import MAX_JSON_BYTES

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
META_CONTRACT = "polyp_live.contract"
META_PRECISION = "polyp_live.precision"
META_SOURCE = "polyp_live.source_sha256"
META_BATCH = "polyp_live.batch"
META_IO_DTYPE = "polyp_live.io_dtype"
META_INT8_TARGET = "polyp_live.int8_target"  # written by polyp-calibrate
META_CALIBRATION = "polyp_live.calibration"  # written by polyp-calibrate
META_GRAPH_PASSES = "polyp_live.graph_passes"  # polyp_live.engines.onnx_passes.GRAPH_PASSES of the export
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


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


SINGLE_BATCH = BatchProfile(1, 1, 1)  # what a file without polyp_live.batch accepts


@dataclass(frozen=True)
class OnnxMetadata:
    """What polyp-live wrote into an ONNX file's ``metadata_props``."""

    contract: ModelContract
    precision: str
    source_sha256: str
    batch: BatchProfile
    io_dtype: str
    graph_passes: str = ""  # META_GRAPH_PASSES; "" for a file exported before the passes
    int8_target: str | None = None  # META_INT8_TARGET of a polyp-calibrate model


def export_props(
    contract: ModelContract, precision: str, source_sha256: str, batch: BatchProfile, io_dtype: str
) -> dict[str, str]:
    """The ``metadata_props`` an export writes (what :func:`read_onnx_metadata` reads back)."""
    return {
        META_CONTRACT: contract.to_json(),
        META_PRECISION: precision,
        META_SOURCE: source_sha256,
        META_BATCH: json.dumps(batch.to_dict(), sort_keys=True),
        META_IO_DTYPE: io_dtype,
    }


def write_props(model: Any, props: Mapping[str, str], *, merge: bool = False) -> None:
    """Set an in-memory ``onnx.ModelProto``'s ``metadata_props`` to ``props``; with ``merge``, over the
    props it has (the result sorted by key)."""
    merged = dict(props)
    if merge:
        merged = dict(sorted(({p.key: p.value for p in model.metadata_props} | merged).items()))
    del model.metadata_props[:]
    for key, value in merged.items():
        model.metadata_props.add(key=key, value=value)


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
    try:
        batch = BatchProfile.from_dict(json.loads(props[META_BATCH])) if META_BATCH in props else SINGLE_BATCH
    except (json.JSONDecodeError, EngineError, RecursionError) as exc:
        raise EngineError(f"{path}: bad {META_BATCH} metadata ({type(exc).__name__}: {exc})") from None
    return OnnxMetadata(contract, precision, props.get(META_SOURCE, ""), batch, props.get(META_IO_DTYPE, "float32"),
                        props.get(META_GRAPH_PASSES, ""), props.get(META_INT8_TARGET))


def read_onnx_props(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file (one-line errors for a file that is not ONNX)."""
    return _props(_load_model(Path(path)))


def read_onnx_contract(path: str | Path) -> ModelContract:
    """The model contract stored in an ONNX file's metadata."""
    return read_onnx_metadata(path).contract


def _load_model(path: Path) -> Any:
    """The ONNX graph (weights not loaded from external files); a file that is not an ONNX model, or whose
    metadata is over :data:`~polyp_live.train.jsonfile.MAX_JSON_BYTES`, is one EngineError line."""
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
