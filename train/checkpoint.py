"""Checkpoints: safetensors weights plus a JSON sidecar holding the model contract.

``NAME.safetensors`` holds the tensors (and the contract again in its header metadata, so the file
alone is self-describing); ``NAME.json`` beside it holds the format tag, the contract, the
architecture arguments, the weights' SHA-256 and free-form training and licence information.
Loading validates the sidecar against a schema, checks the hash, and never unpickles: a
``torch.save`` / pickle file is refused with a message that says so.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from polyp_live.train.contract import ModelContract
from polyp_live.train.errors import CheckpointError, ContractError, UnknownVariantError
from polyp_live.train.hashing import sha256_file
from polyp_live.train.jsonfile import read_json_file
from polyp_live.train.pefnet import PEFNet
from polyp_live.train.variants import create_model, get_variant

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "polyp-live.checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
SIDECAR_SUFFIX = ".json"
_SIDECAR_KEYS = {"format", "contract", "model", "weights", "training", "license"}
_REQUIRED_KEYS = {"format", "contract", "model", "weights"}
_MODEL_KEYS = {"variant", "drop_path_rate"}
_WEIGHTS_KEYS = {"file", "sha256", "dtype", "num_tensors"}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
CHECKPOINT_DTYPES = tuple(_DTYPES)  # the storage dtypes a checkpoint may hold (polyp-train --save-dtype)
_PICKLE_MAGICS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


@dataclass(frozen=True)
class CheckpointInfo:
    """A validated checkpoint on disk (weights not yet loaded)."""

    weights_path: Path
    sidecar_path: Path
    contract: ModelContract
    variant: str
    weights_sha256: str
    weights_dtype: str
    training: dict[str, Any] = field(default_factory=dict)
    license: str | None = None


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """``(weights, sidecar)`` for a path given as ``NAME``, ``NAME.safetensors`` or ``NAME.json``."""
    path = Path(path)
    if path.suffix in (WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        stem = path.with_suffix("")
    else:
        stem = path
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + SIDECAR_SUFFIX)


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    contract: ModelContract,
    *,
    training: dict[str, Any] | None = None,
    license: str | None = None,
    dtype: str = "float32",
) -> Path:
    """Write ``NAME.safetensors`` and ``NAME.json``; returns the weights path.

    Files are written to temporary names and renamed, so an interrupted save never leaves a
    half-written checkpoint under the final name.
    """
    if dtype not in _DTYPES:
        raise CheckpointError(f"checkpoint dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    weights_path, sidecar_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        name: tensor.detach().to("cpu", _DTYPES[dtype] if tensor.is_floating_point() else tensor.dtype).contiguous()
        for name, tensor in model.state_dict().items()
    }
    tmp_weights = weights_path.with_name(weights_path.name + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"format": CHECKPOINT_FORMAT, "contract": contract.to_json()})
    sidecar = {
        "format": CHECKPOINT_FORMAT,
        "contract": contract.to_dict(),
        "model": {"variant": contract.variant},
        "weights": {
            "file": weights_path.name,
            "sha256": sha256_file(tmp_weights),
            "dtype": dtype,
            "num_tensors": len(tensors),
        },
        "training": _jsonable(training or {}),
        "license": license,
    }
    tmp_sidecar = sidecar_path.with_name(sidecar_path.name + ".tmp")
    tmp_sidecar.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_weights, weights_path)
    os.replace(tmp_sidecar, sidecar_path)
    return weights_path


def read_checkpoint(path: str | Path, *, verify_hash: bool = True) -> CheckpointInfo:
    """Validate a checkpoint's sidecar and weights file without loading tensors."""
    weights_path, sidecar_path = checkpoint_paths(path)
    _refuse_pickle(Path(path))
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights_path}")
    _refuse_pickle(weights_path)
    if not sidecar_path.is_file():
        raise CheckpointError(
            f"checkpoint sidecar not found: {sidecar_path} (a polyp-live checkpoint is NAME.safetensors + NAME.json)"
        )
    sidecar = _read_sidecar(sidecar_path)
    try:
        contract = ModelContract.from_dict(sidecar["contract"])
    except ContractError as exc:
        raise CheckpointError(f"{sidecar_path}: {exc}") from None
    variant = sidecar["model"]["variant"]
    try:
        get_variant(variant)
    except UnknownVariantError as exc:
        raise CheckpointError(f"{sidecar_path}: {exc}") from None
    if variant != contract.variant:
        raise CheckpointError(f"{sidecar_path}: model variant {variant!r} differs from contract {contract.variant!r}")
    weights = sidecar["weights"]
    if verify_hash:
        actual = sha256_file(weights_path)
        if actual != weights["sha256"]:
            raise CheckpointError(
                f"{weights_path}: SHA-256 {actual[:12]}... does not match its sidecar "
                f"({weights['sha256'][:12]}...); the file was modified or truncated"
            )
    return CheckpointInfo(
        weights_path=weights_path,
        sidecar_path=sidecar_path,
        contract=contract,
        variant=variant,
        weights_sha256=weights["sha256"],
        weights_dtype=weights["dtype"],
        training=sidecar.get("training") or {},
        license=sidecar.get("license"),
    )


def load_state_dict(info: CheckpointInfo) -> dict[str, torch.Tensor]:
    """Load the tensors of a validated checkpoint (safetensors: no code runs)."""
    try:
        return load_file(str(info.weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{info.weights_path}: not a readable safetensors file ({exc})") from None


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[PEFNet, ModelContract, CheckpointInfo]:
    """Build the model of a checkpoint, load its weights (as float32) and put it in eval mode."""
    info = read_checkpoint(path)
    return load_model(info, device=device), info.contract, info


def load_model(info: CheckpointInfo, *, device: str | torch.device = "cpu") -> PEFNet:
    """The model of a checkpoint already validated by :func:`read_checkpoint` (its weights not hashed again)."""
    state = load_state_dict(info)
    model = create_model(info.variant)
    expected = model.state_dict()
    _check_state_dict(state, expected, info)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    model.eval().to(device)
    return model


def _check_state_dict(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], info: CheckpointInfo) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{info.weights_path}: tensors do not match PEFNet-{info.variant} "
            f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{info.weights_path}: tensor {name} has shape {tuple(tensor.shape)} but PEFNet-{info.variant} "
                f"needs {tuple(expected[name].shape)}; the sidecar names the wrong variant "
                "or the file is from another model"
            )
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{info.weights_path}: tensor {name} holds NaN or infinite values")


def _refuse_pickle(path: Path) -> None:
    if path.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
        raise CheckpointError(
            f"{path}: {path.suffix} files are pickles; polyp-live never unpickles. "
            "Convert the weights to safetensors (safetensors.torch.save_file) in a trusted environment"
        )
    if not path.is_file():
        return
    with open(path, "rb") as handle:
        head = handle.read(4)
    if any(head.startswith(magic) for magic in _PICKLE_MAGICS):
        raise CheckpointError(
            f"{path}: holds a pickle / torch.save payload; polyp-live never unpickles. "
            "Convert the weights to safetensors in a trusted environment"
        )


def _read_sidecar(path: Path) -> dict[str, Any]:
    data = read_json_file(path, what="checkpoint sidecar", error=CheckpointError)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: sidecar must be a JSON object")
    problems = _sidecar_problems(data)
    if problems:
        raise CheckpointError(f"{path}: invalid checkpoint sidecar: {problems[0]}")
    return data


def _sidecar_problems(data: dict[str, Any]) -> list[str]:
    problems = [f"unknown key {k!r}" for k in sorted(set(data) - _SIDECAR_KEYS)]
    problems += [f"missing key {k!r}" for k in sorted(_REQUIRED_KEYS - set(data))]
    if problems:
        return problems
    if data["format"] != CHECKPOINT_FORMAT:
        return [f"format {data['format']!r} is not {CHECKPOINT_FORMAT!r}"]
    model, weights = data["model"], data["weights"]
    if not isinstance(model, dict) or set(model) - _MODEL_KEYS or not isinstance(model.get("variant"), str):
        return [f"'model' must be an object with a string 'variant' and keys from {sorted(_MODEL_KEYS)}"]
    if not isinstance(weights, dict) or set(weights) != _WEIGHTS_KEYS:
        return [f"'weights' must have exactly the keys {sorted(_WEIGHTS_KEYS)}"]
    sha = weights["sha256"]
    if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        problems.append("'weights.sha256' must be 64 lowercase hex digits")
    if weights["dtype"] not in _DTYPES:
        problems.append(f"'weights.dtype' must be one of {sorted(_DTYPES)}")
    if not isinstance(weights["num_tensors"], int) or weights["num_tensors"] <= 0:
        problems.append("'weights.num_tensors' must be a positive integer")
    if not isinstance(data.get("training", {}), dict):
        problems.append("'training' must be an object")
    if data.get("license") is not None and not isinstance(data["license"], str):
        problems.append("'license' must be a string or null")
    return problems


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)


def set_contract(path: str | Path, contract: ModelContract, note: dict[str, Any]) -> Path:
    """Replace a checkpoint's contract in its JSON (the weights and their hash stay as they are) and record why
    under ``training.contract_updates``; written to a temporary file and renamed, so it is never half-written."""
    info = read_checkpoint(path)
    if contract.variant != info.variant:
        raise CheckpointError(f"{info.sidecar_path}: a contract for {contract.variant} cannot go on {info.variant}")
    sidecar = _read_sidecar(info.sidecar_path)
    sidecar["contract"] = contract.to_dict()
    training = sidecar.setdefault("training", {})
    training.setdefault("contract_updates", []).append(_jsonable(note))
    tmp = info.sidecar_path.with_name(f".{info.sidecar_path.name}.tmp")
    tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, info.sidecar_path)
    return info.sidecar_path


def model_terms(path: str | Path) -> str:
    """The data terms stored with a model (its checkpoint JSON's licence text), for reports; ``""`` when the file
    (an ONNX or engine file away from its checkpoint) has none beside it."""
    for candidate in (Path(path).with_suffix(".json"), Path(str(path).split(".")[0] + ".json")):
        try:
            data = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("license"), str):
            return data["license"]
    return ""
