"""The JSON sidecar of a TensorRT engine: ``PLAN`` + ``.json`` (``model.engine`` -> ``model.engine.json``).

The sidecar carries the model contract, the precision, the batch profile, the TensorRT flavour
and version, the target compute capabilities, the builder GPU's name (``"none"`` when built
without one) and the SHA-256 of the source ONNX and of the plan. A plan is only handed to
TensorRT after :func:`read_sidecar` validated the schema (known keys, types) and
:func:`check_loadable` found the same flavour and version, a matching GPU architecture and the
recorded plan hash; each mismatch is one line saying how to rebuild.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp_live.engines.errors import EngineError, EngineMismatchError
from polyp_live.engines.onnx_format import BatchProfile
from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import ContractError
from polyp_live.train.jsonfile import read_json_file

ENGINE_FORMAT = "polyp-live.engine/1"
SIDECAR_SUFFIX = ".json"
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_TARGET_RE = re.compile(r"^sm[0-9]{2,3}$")
# key -> expected JSON type(s)
_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "contract": dict,
    "precision": str,
    "batch": dict,
    "io_dtype": str,
    "tensorrt": dict,
    "targets": list,
    "builder_gpu": str,
    "onnx_sha256": str,
    "plan_sha256": str,
    "source_sha256": str,
    "source": str,
    "created": str,
}


@dataclass(frozen=True)
class EngineSidecar:
    contract: ModelContract
    precision: str
    batch: BatchProfile
    io_dtype: str
    flavour: str  # "tensorrt" | "tensorrt_rtx"
    trt_version: str
    targets: tuple[str, ...]  # ("sm86", "sm89", ...)
    builder_gpu: str  # "none" when built without a GPU
    onnx_sha256: str
    plan_sha256: str
    source_sha256: str  # the checkpoint weights' SHA-256 ("" when unknown)
    source: str  # the checkpoint (or ONNX) the engine was built from, for the rebuild hint
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ENGINE_FORMAT,
            "contract": self.contract.to_dict(),
            "precision": self.precision,
            "batch": self.batch.to_dict(),
            "io_dtype": self.io_dtype,
            "tensorrt": {"flavour": self.flavour, "version": self.trt_version},
            "targets": list(self.targets),
            "builder_gpu": self.builder_gpu,
            "onnx_sha256": self.onnx_sha256,
            "plan_sha256": self.plan_sha256,
            "source_sha256": self.source_sha256,
            "source": self.source,
            "created": self.created,
        }

    def rebuild_hint(self, plan: Path) -> str:
        h, w = self.contract.input_size
        size = str(h) if h == w else f"{h}x{w}"
        batch = (
            f" --dynamic-batch {self.batch.min}:{self.batch.opt}:{self.batch.max}"
            if self.batch.dynamic
            else (f" --batch {self.batch.max}" if self.batch.max != 1 else "")
        )
        source = self.source or "CHECKPOINT"
        return (
            f"rebuild it on this machine: polyp-export --checkpoint {source} --format engine "
            f"--precision {self.precision} --size {size}{batch} --out {plan}"
        )


def sidecar_path(plan: str | Path) -> Path:
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def write_sidecar(plan: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(plan)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_sidecar(plan: str | Path) -> EngineSidecar:
    """Read and validate ``PLAN.json``; every problem is one :class:`EngineError` line."""
    plan = Path(plan)
    path = sidecar_path(plan)
    if not path.is_file():
        raise EngineError(
            f"{plan}: engine sidecar {path.name} is missing; polyp-live only loads engines built by "
            "polyp-export --format engine (rebuild it)"
        )
    data = read_json_file(path, what="engine sidecar", error=EngineError)
    problem = sidecar_problem(data)
    if problem:
        raise EngineError(f"{path}: invalid engine sidecar: {problem}")
    try:
        contract = ModelContract.from_dict(data["contract"])
    except ContractError as exc:
        raise EngineError(f"{path}: {exc}") from None
    return EngineSidecar(
        contract=contract,
        precision=data["precision"],
        batch=BatchProfile.from_dict(data["batch"]),
        io_dtype=data["io_dtype"],
        flavour=data["tensorrt"]["flavour"],
        trt_version=data["tensorrt"]["version"],
        targets=tuple(data["targets"]),
        builder_gpu=data["builder_gpu"],
        onnx_sha256=data["onnx_sha256"],
        plan_sha256=data["plan_sha256"],
        source_sha256=data["source_sha256"],
        source=data["source"],
        created=data["created"],
    )


def sidecar_problem(data: Any) -> str | None:
    """The first schema problem of a decoded sidecar, or None."""
    if not isinstance(data, dict):
        return "must be a JSON object"
    unknown = sorted(set(data) - set(_SCHEMA))
    if unknown:
        return f"unknown keys {unknown}"
    missing = sorted(set(_SCHEMA) - set(data))
    if missing:
        return f"missing keys {missing}"
    for key, kind in _SCHEMA.items():
        if not isinstance(data[key], kind):
            return f"{key!r} must be a {kind.__name__ if isinstance(kind, type) else kind}"
    if data["format"] != ENGINE_FORMAT:
        return f"format {data['format']!r} is not {ENGINE_FORMAT!r}"
    if data["precision"] not in ENGINE_PRECISIONS:
        return f"precision {data['precision']!r} is not one of {list(ENGINE_PRECISIONS)}"
    trt_info = data["tensorrt"]
    if set(trt_info) != {"flavour", "version"} or not all(isinstance(v, str) for v in trt_info.values()):
        return "'tensorrt' must be {'flavour': str, 'version': str}"
    if not data["targets"] or not all(isinstance(t, str) and _TARGET_RE.match(t) for t in data["targets"]):
        return "'targets' must be a non-empty list like ['sm86', 'sm89']"
    for key in ("onnx_sha256", "plan_sha256"):
        if not _SHA_RE.match(data[key]):
            return f"{key!r} must be 64 lowercase hex digits"
    if data["source_sha256"] and not _SHA_RE.match(data["source_sha256"]):
        return "'source_sha256' must be 64 lowercase hex digits or empty"
    try:
        BatchProfile.from_dict(data["batch"])
    except EngineError as exc:
        return str(exc)
    return None


def check_loadable(
    plan: Path, sidecar: EngineSidecar, *, plan_sha256: str, flavour: str, version: str, gpu_target: str | None
) -> None:
    """Refuse, before TensorRT sees it, a plan that is modified or built for another runtime or GPU."""
    hint = sidecar.rebuild_hint(plan)
    if plan_sha256 != sidecar.plan_sha256:
        raise EngineMismatchError(
            f"{plan}: plan SHA-256 {plan_sha256[:12]}... differs from its sidecar ({sidecar.plan_sha256[:12]}...): "
            f"the file is truncated or modified; {hint}"
        )
    if (flavour, version) != (sidecar.flavour, sidecar.trt_version):
        raise EngineMismatchError(
            f"{plan}: built with {sidecar.flavour} {sidecar.trt_version} but this machine runs {flavour} {version}; "
            f"{hint}"
        )
    if gpu_target is not None and gpu_target not in sidecar.targets:
        raise EngineMismatchError(
            f"{plan}: built for {', '.join(sidecar.targets)} (on {sidecar.builder_gpu}) but this GPU is "
            f"{gpu_target}; {hint}"
        )
