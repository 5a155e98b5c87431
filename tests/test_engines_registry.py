"""open_engine: which backend it picks and why, the ONNX cache, and one-line errors for bad input."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from polyp_live.engines import registry
from polyp_live.engines.errors import BackendUnavailableError, EngineError
from polyp_live.engines.onnxruntime_backend import OnnxRuntimeEngine
from polyp_live.engines.registry import SUFFIX_BACKENDS, open_engine, plan_engine, resolve_engine_path
from polyp_live.train.errors import CheckpointError
from tests.engines_helpers import (
    exported,
    one_torch_thread,  # noqa: F401  (fixture)
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


def test_every_suffix_maps_to_a_registered_backend() -> None:
    assert set(SUFFIX_BACKENDS.values()) <= set(registry.BACKENDS)
    for name in registry.BACKENDS:
        assert registry.backend_class(name).name == name


def test_checkpoint_on_cpu_machine_goes_through_the_onnx_cache(
    atto_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("POLYP_LIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "cuda_available", lambda: False)
    caplog.set_level(logging.INFO)
    with open_engine(atto_checkpoint, device="auto") as engine:
        assert engine.info.backend == "onnxruntime" and engine.info.device == "cpu"
        cached = Path(engine.info.source)
        assert cached.parent == tmp_path / "cache" / "onnx" and cached.suffix == ".onnx"
        first = engine.infer(np.zeros((2, 3, 64, 64), np.float32))
    assert "because a checkpoint on a CPU machine" in caplog.text and "no CUDA GPU" in caplog.text
    caplog.clear()
    mtime = cached.stat().st_mtime_ns
    with open_engine(atto_checkpoint) as again:  # reuses the export
        assert again.info.source == str(cached)
        np.testing.assert_allclose(again.infer(np.zeros((2, 3, 64, 64), np.float32)), first, atol=1e-5)
    assert cached.stat().st_mtime_ns == mtime and "using cached ONNX export" in caplog.text


def test_opening_a_checkpoint_hashes_its_weights_once(
    atto_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polyp_live.train.checkpoint

    monkeypatch.setenv("POLYP_LIVE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "cuda_available", lambda: False)
    hashed: list[Path] = []

    def counting(path: Path, chunk: int = 1 << 20) -> str:
        hashed.append(Path(path))
        return real(path, chunk)

    real = polyp_live.train.checkpoint.sha256_file
    monkeypatch.setattr(polyp_live.train.checkpoint, "sha256_file", counting)
    with open_engine(atto_checkpoint, device="cpu", backend="onnxruntime"):  # companion check, cache miss, export
        pass
    assert hashed == [atto_checkpoint.with_suffix(".safetensors")]


def test_checkpoint_without_onnxruntime_falls_back_to_torch_cpu(
    atto_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(registry, "cuda_available", lambda: False)
    monkeypatch.setattr(OnnxRuntimeEngine, "unavailable_reason", classmethod(lambda cls, device="auto": "no ort"))
    caplog.set_level(logging.INFO)
    with open_engine(atto_checkpoint, warmup=False) as engine:
        assert (engine.info.backend, engine.info.precision, engine.info.device) == ("torch", "fp32", "cpu")
    assert "not onnxruntime: no ort" in caplog.text


def test_checkpoint_on_cuda_machine_plans_torch(atto_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "cuda_available", lambda: True)
    plan = plan_engine(atto_checkpoint)
    assert plan.backend == "torch" and not plan.via_onnx_cache and "CUDA" in plan.reason


def test_explicit_backends_and_conversions(atto_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    assert plan_engine(atto_checkpoint, "onnxruntime").via_onnx_cache
    onnx_path = exported(tmp_path_factory, atto_checkpoint)
    assert plan_engine(onnx_path).backend == "onnxruntime"
    with pytest.raises(EngineError, match="polyp-export --checkpoint CHECKPOINT --format engine") as info:
        plan_engine(atto_checkpoint, "tensorrt")
    _one_line(info.value)
    with pytest.raises(EngineError, match="unknown backend"):
        plan_engine(atto_checkpoint, "tflite")


def test_default_resolves_to_the_bundled_checkpoint() -> None:
    from polyp_live.train.zoo import WEIGHTS_DIR

    if not (WEIGHTS_DIR / "default.safetensors").is_file():
        with pytest.raises(CheckpointError, match="bundled model 'default' is missing"):
            resolve_engine_path("default")
    else:
        assert resolve_engine_path("default") == WEIGHTS_DIR / "default.safetensors"


@pytest.mark.parametrize("name", ["model.tflite", "model", "weights.pt"])
def test_unknown_suffix_is_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(EngineError, match="unknown model file type") as info:
        open_engine(path)
    _one_line(info.value)


def test_missing_file_and_bad_options(tmp_path: Path, atto_checkpoint: Path) -> None:
    with pytest.raises(EngineError, match="not found"):
        open_engine(tmp_path / "absent.onnx")
    with pytest.raises(EngineError, match="unknown engine options"):
        open_engine(atto_checkpoint, fast=True)
    with pytest.raises(EngineError, match="bad device"):
        open_engine(atto_checkpoint, backend="torch", device="tpu")
    with pytest.raises(BackendUnavailableError, match="fp16 needs a CUDA GPU"):
        open_engine(atto_checkpoint, backend="torch", device="cpu", precision="fp16")


@pytest.mark.parametrize("content", [b"\x08\x07garbage\xff\x00" * 64, b"not an onnx model, just text\n"])
def test_corrupt_onnx_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(EngineError) as info:
        open_engine(path)
    assert "broken.onnx" in _one_line(info.value)


def test_onnx_without_polyp_metadata_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["logits"])],
        "plain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 64, 64])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(EngineError, match=r"no polyp_live\.contract metadata"):
        open_engine(path)


def test_precision_mismatch_for_onnx(atto_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with pytest.raises(EngineError, match="is a fp32 model but precision fp16"):
        open_engine(exported(tmp_path_factory, atto_checkpoint), precision="fp16")


def test_missing_onnxruntime_names_the_pip_package(atto_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    onnx_path = exported(tmp_path_factory, atto_checkpoint)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(BackendUnavailableError, match="pip install onnxruntime"):
        open_engine(onnx_path)


def test_static_batch_onnx_pads_short_batches(atto_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    static = exported(tmp_path_factory, atto_checkpoint, batch=2)
    batch = np.random.default_rng(3).uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    with open_engine(static, threads=1) as engine:
        assert (engine.info.max_batch, engine.info.preferred_batch) == (2, 2)
        assert "1 threads" in engine.info.detail
        both = engine.infer(batch)
        first = engine.infer(batch[:1])
    assert first.shape == (1, 1, 64, 64)
    np.testing.assert_allclose(first, both[:1], atol=1e-4 * float(np.abs(both).max()))
