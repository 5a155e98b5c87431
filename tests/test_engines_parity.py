"""Every backend x precision gives the masks of PyTorch FP32 on the same real frames; the interface contract.

Backends that cannot run here skip with the reason from :func:`polyp_live.engines.registry.available_backends`.
Frames: Kvasir-SEG and CVC-ClinicDB images from ../shared/data (synthetic textured frames if absent).
The checkpoint is PEFNet-atto at 64x64 with its head bias set so half the pixels are polyp.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from polyp_live.engines.base import Engine
from polyp_live.engines.errors import EngineError
from polyp_live.engines.parity import PARITY_THRESHOLDS, compare_logits, parity_frames, torch_reference_logits
from polyp_live.engines.registry import available_backends, open_engine
from polyp_live.train.checkpoint import load_checkpoint
from polyp_live.train.preprocess import preprocess_batch
from tests.engines_helpers import (
    DYNAMIC_BATCH,
    balanced_checkpoint,
    built_engine,
    built_qdq_engine,
    exported,
    one_torch_thread,  # noqa: F401  (fixture)
    qdq_onnx,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (backend, precision, device the combination needs)
COMBINATIONS = [
    ("torch", "fp32", "cpu"),
    ("torch", "fp16", "cuda"),
    ("onnxruntime", "fp32", "cpu"),
    ("onnxruntime", "fp16", "cpu"),
    ("onnxruntime", "int8", "cpu"),
    ("tensorrt", "fp16", "cuda"),
    ("tensorrt", "int8", "cuda"),
]


def _param(backend: str, precision: str, device: str) -> object:
    marks = [pytest.mark.gpu] if device == "cuda" else []
    return pytest.param((backend, precision, device), id=f"{backend}-{precision}", marks=marks)


def _skip_unavailable(backend: str, device: str) -> None:
    reason = available_backends(device)[backend]
    if reason:
        pytest.skip(f"{backend} on {device} unavailable: {reason}")


def _open(factory: pytest.TempPathFactory, backend: str, precision: str, device: str) -> Engine:
    checkpoint = balanced_checkpoint(factory)
    sources = {
        ("torch", "fp32"): lambda: checkpoint,
        ("torch", "fp16"): lambda: checkpoint,
        ("onnxruntime", "fp32"): lambda: exported(factory, checkpoint, "fp32", dynamic_batch=DYNAMIC_BATCH),
        ("onnxruntime", "fp16"): lambda: exported(factory, checkpoint, "fp16", dynamic_batch=DYNAMIC_BATCH),
        ("onnxruntime", "int8"): lambda: qdq_onnx(factory, checkpoint),
        ("tensorrt", "fp16"): lambda: built_engine(factory, checkpoint),
        ("tensorrt", "int8"): lambda: built_qdq_engine(factory, checkpoint),
    }
    return open_engine(sources[backend, precision](), backend=backend, device=device, precision=precision, batch=4)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return parity_frames(6)[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, frames: list[np.ndarray]) -> np.ndarray:
    model, contract, _ = load_checkpoint(balanced_checkpoint(tmp_path_factory))
    return torch_reference_logits(model, preprocess_batch(frames, contract))


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    backend, precision, device = request.param
    _skip_unavailable(backend, device)
    opened = _open(tmp_path_factory, backend, precision, device)
    yield opened
    opened.close()


def test_reference_mask_is_balanced(reference: np.ndarray) -> None:
    positive = float(np.mean(reference >= 0.0))
    assert 0.3 < positive < 0.7  # the agreement test below is not trivially satisfied


@pytest.mark.parametrize("engine", [_param(*c) for c in COMBINATIONS], indirect=True)
def test_masks_match_pytorch_fp32(engine: Engine, frames: list[np.ndarray], reference: np.ndarray) -> None:
    logits = engine.infer_frames(frames)
    rel_l2, agreement = compare_logits(reference, logits, engine.contract.threshold)
    min_agreement, max_rel_l2 = PARITY_THRESHOLDS[engine.info.precision]
    print(f"{engine.describe()}: agreement {agreement * 100:.3f}%, rel-L2 {rel_l2:.2e}")
    assert agreement >= min_agreement
    assert rel_l2 <= max_rel_l2


@pytest.mark.parametrize("engine", [_param(*c) for c in COMBINATIONS], indirect=True)
def test_engine_interface_contract(engine: Engine, frames: list[np.ndarray]) -> None:
    h, w = engine.contract.input_size
    info = engine.info
    assert info.max_batch >= 3 and 1 <= info.preferred_batch <= info.max_batch
    assert info.backend in engine.describe() and f"{h}x{w}" in engine.describe()
    batch = preprocess_batch(frames[:3], engine.contract)
    together = engine.infer(batch)
    assert together.shape == (3, 1, h, w) and together.dtype == np.float32
    singles = np.concatenate([engine.infer(batch[i : i + 1]) for i in range(3)])
    scale = float(np.abs(singles).max())
    tolerance = {"fp32": 1e-4, "fp16": 2e-2, "int8": 5e-2}[info.precision]
    np.testing.assert_allclose(together, singles, atol=tolerance * scale)
    with pytest.raises(EngineError, match="outside this engine"):
        engine.infer(np.zeros((info.max_batch + 1, 3, h, w), np.float32))
    with pytest.raises(EngineError, match="engine input must be"):
        engine.infer(np.zeros((1, 3, h + 32, w), np.float32))
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.infer(batch[:1])


def test_available_backends_reports_reasons() -> None:
    status = available_backends("cpu")
    assert set(status) == {"torch", "onnxruntime", "tensorrt"}
    assert status["torch"] is None and status["onnxruntime"] is None
    assert isinstance(status["tensorrt"], str) and "GPU" in status["tensorrt"]


def test_source_path_is_reported(tmp_path_factory: pytest.TempPathFactory) -> None:
    checkpoint: Path = balanced_checkpoint(tmp_path_factory)
    with open_engine(checkpoint, backend="torch", device="cpu") as engine:
        assert engine.info.source == str(checkpoint) and engine.info.device == "cpu"
